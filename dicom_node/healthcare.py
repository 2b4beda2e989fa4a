"""The Cloud Healthcare receiver: a DICOM store's Pub/Sub notifications in, its instances into the durable inbox.

Streaming pull (flow control set) → parse the instance name (:mod:`healthcare_notice`) → debounce per study
(:mod:`healthcare_debounce`, the node's quiet period) → WADO-RS retrieval (:mod:`healthcare_dicomweb`) → one
:class:`~dicom_node.intake.Intake` pseudo-association per study batch (calling AE ``GCP-HEALTHCARE``, peer = the
store) → only once the batch is durable are its messages acked. A crash before that leaves them un-acked, so
Pub/Sub delivers them again: never a loss. Redelivered or duplicate notifications are acked at once when their
instance (the full study/series/instance triplet) is already in the inbox, so nothing is fetched or analysed
twice. Our own results, which the exporter STOWs back into the same store and the store announces like any
instance, are recognised by their SOP Instance UID in the outbox (it is written before anything is sent) and
skipped. A retrieval that fails transiently (5xx, 429, timeouts) is retried with backoff; after
``LDH_HEALTHCARE_FETCH_ATTEMPTS`` (or at once for other 4xx) the instance is dead-lettered: an ALERT log line, a
``receive_dead`` row that ``ldh status`` shows, and its messages acked so they do not loop.
"""

from __future__ import annotations

import logging
import threading
import time

from dicom_node.db import Database
from dicom_node.exporter import StowDestination, backoff_delay
from dicom_node.healthcare_debounce import Batch, Debouncer, Item
from dicom_node.healthcare_dicomweb import FetchError, Retriever
from dicom_node.healthcare_notice import HEALTHCARE_API, BadNotice, Notice, parse_notice, store_dicomweb_url
from dicom_node.inbox import Inbox
from dicom_node.intake import Intake
from dicom_node.journalling import OUT_OF_RESOURCES

log = logging.getLogger(__name__)

DOOR = "GCP-HEALTHCARE"
# held messages: a study's notifications must all be leased at once to be debounced into one batch
MAX_MESSAGES = 5000
MAX_BYTES = 64 << 20
MAX_LEASE_S = 3600  # the subscriber extends each lease until acked, for at most this long
LEASE_EXTENSION_S = 20  # each extension's length: a crashed node's messages are redelivered within about this


class HealthcareReceiver:
    def __init__(self, settings, inbox: Inbox, db: Database, exporter=None):
        self.subscription = settings.healthcare_subscription
        self.fixed_url = settings.healthcare_dicomweb_url
        self.max_attempts = settings.healthcare_fetch_attempts
        self.backoff_s = settings.healthcare_fetch_backoff_s
        self.inbox, self.db, self.exporter = inbox, db, exporter
        self.debouncer = Debouncer(settings.node_quiet_seconds)
        self._retrievers: dict[str, Retriever] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._future = self._subscriber = None
        if exporter is not None and not self.fixed_url:
            # results still waiting for a store derived from earlier notifications go there after a restart
            for row in db.query("SELECT DISTINCT destination FROM outbox WHERE state = 'pending' AND destination"
                                " LIKE ?", (f"stow:{HEALTHCARE_API}%",)):
                self._export_to(row["destination"][len("stow:"):])

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "HealthcareReceiver":
        from google.cloud import pubsub_v1

        if logging.getLogger("dicomweb_client").getEffectiveLevel() < logging.WARNING:
            logging.getLogger("dicomweb_client").setLevel(logging.WARNING)  # it logs each retrieval at INFO
        self._subscriber = pubsub_v1.SubscriberClient()  # PUBSUB_EMULATOR_HOST is honoured by the client
        self._subscribe()
        self._thread = threading.Thread(target=self._loop, name="ldh-healthcare", daemon=True)
        self._thread.start()
        log.info("Cloud Healthcare receiver subscribed", extra={"subscription": self.subscription,
                                                                 "dicomweb": self.fixed_url or "(from notifications)"})
        return self

    def stop(self) -> None:
        """Finish the batch in hand, nack what is held (redelivered promptly elsewhere), close the stream."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)
            self._thread = None
        for message in self.debouncer.drain():
            message.nack()
        if self._future is not None:
            self._future.cancel()
            try:
                self._future.result(timeout=30)
            except Exception:  # cancelled, or the stream had already failed (logged by the client)
                pass
            self._future = None
        if self._subscriber is not None:
            self._subscriber.close()
            self._subscriber = None

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            if self._future is not None and self._future.done():
                log.error("Cloud Healthcare subscription stream ended; resubscribing",
                          extra={"subscription": self.subscription, "error": str(self._future.exception())[:300]})
                self._stop.wait(5.0)
                self._subscribe()
            for batch in self.debouncer.due():
                try:
                    self.fetch(batch)
                except Exception:  # a bug or a disk error: the messages come back, nothing is lost
                    log.exception("Cloud Healthcare batch failed; its notifications will be redelivered",
                                  extra={"study": batch.study})
                    for item in batch.items:
                        for message in item.messages:
                            message.nack()

    def _subscribe(self) -> None:
        from google.cloud import pubsub_v1

        flow = pubsub_v1.types.FlowControl(max_messages=MAX_MESSAGES, max_bytes=MAX_BYTES,
                                           max_lease_duration=MAX_LEASE_S,
                                           max_duration_per_lease_extension=LEASE_EXTENSION_S)
        self._future = self._subscriber.subscribe(self.subscription, self.on_message, flow_control=flow)

    # ------------------------------------------------------------------ notifications (subscriber threads)
    def on_message(self, message) -> None:
        try:
            notice = parse_notice(message.data)
        except BadNotice as exc:
            self._dead(message.data.decode("ascii", "replace")[:500], None, str(exc), 1)
            message.ack()
            return
        if self._ours(notice.instance):
            log.debug("own result announced by the store; skipped", extra={"sop": notice.instance})
            message.ack()
        elif self._have(notice):
            log.debug("instance already in the inbox; notification acked", extra={"sop": notice.instance})
            message.ack()
        else:
            self.debouncer.add(notice, message)

    def _ours(self, sop_uid: str) -> bool:
        return bool(self.db.query("SELECT 1 FROM outbox WHERE sop_uid = ? LIMIT 1", (sop_uid,)))

    def _have(self, notice: Notice) -> bool:
        return bool(self.db.query("SELECT 1 FROM instances WHERE sop_uid = ? AND series_uid = ? AND study_uid = ?",
                                  (notice.instance, notice.series, notice.study)))

    # ------------------------------------------------------------------ one study batch
    def fetch(self, batch: Batch) -> None:
        url = self.fixed_url or store_dicomweb_url(batch.store)
        retriever = self._retrievers.get(url) or self._retrievers.setdefault(url, Retriever(url))
        done: list[Item] = []
        retry: list[Item] = []
        dead: list[Item] = []
        with Intake(self.inbox, self.db, DOOR, batch.store) as intake:
            for item in batch.items:
                if self._stop.is_set():
                    retry.append(item)  # nacked below: redelivered to whoever receives next
                    continue
                if self._have(item.notice):
                    done.append(item)
                    continue
                try:
                    raw = retriever.part10(item.notice)
                except FetchError as exc:
                    item.attempts += 1
                    item.error = str(exc)
                    (retry if exc.transient and item.attempts < self.max_attempts else dead).append(item)
                    continue
                outcome = intake.store(raw)
                if outcome.ok or outcome.status != OUT_OF_RESOURCES:
                    done.append(item)  # stored, or refused for good (unsupported class: logged by the intake)
                else:
                    item.attempts += 1
                    item.error = outcome.reason
                    retry.append(item)
        # the batch is durable now (files written and synced): only now may its messages go
        for item in dead:
            self._dead(self._name(item.notice), item.notice, f"gave up after {item.attempts} attempt(s): "
                       f"{item.error}", item.attempts)
        self._forget([i.notice for i in done])
        for item in done + dead:
            for message in item.messages:
                message.ack()
        if retry and self._stop.is_set():
            for item in retry:
                for message in item.messages:
                    message.nack()
        elif retry:
            delay = backoff_delay(max(i.attempts for i in retry), self.backoff_s, 300.0)
            log.warning("Cloud Healthcare retrieval failed; retrying", extra={
                "study": batch.study, "instances": len(retry), "error": retry[0].error, "retry_in_s": round(delay, 2)})
            self.debouncer.retry(batch.store, batch.study, retry, delay)
        if done and not self.fixed_url:
            self._export_to(url)
        log.info("Cloud Healthcare study batch received", extra={
            "study": batch.study, "stored": intake.stored, "duplicates": intake.duplicates, "refused": intake.failed,
            "retrying": len(retry), "dead_lettered": len(dead)})

    def _export_to(self, url: str) -> None:
        """Results go back to the store the study came from (when no fixed DICOMweb URL is configured)."""
        if self.exporter is not None:
            dest = StowDestination(url.rstrip("/"))
            if dest.name not in self.exporter.destinations:  # a new dict: the worker may be iterating the old one
                self.exporter.destinations = {**self.exporter.destinations, dest.name: dest}

    @staticmethod
    def _name(notice: Notice) -> str:
        return f"{notice.store}/dicomWeb/studies/{notice.study}/series/{notice.series}/instances/{notice.instance}"

    # ------------------------------------------------------------------ dead letters (ldh status)
    def _dead(self, source: str, notice: Notice | None, error: str, attempts: int) -> None:
        uids = notice.key if notice is not None else ("", "", "")
        with self.db.tx() as con:
            con.execute("INSERT INTO receive_dead (door, source, study_uid, series_uid, sop_uid, error, attempts,"
                        " updated) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(door, source) DO UPDATE SET"
                        " error = excluded.error, attempts = receive_dead.attempts + excluded.attempts,"
                        " updated = excluded.updated", (DOOR, source, *uids, error, attempts, time.time()))
        log.error("ALERT: Cloud Healthcare notification dead-lettered (not retried; see ldh status)", extra={
            "study": uids[0], "series": uids[1], "sop": uids[2], "error": error[:300]})

    def _forget(self, notices: list[Notice]) -> None:
        """An instance received after all (e.g. the operator re-published it) is no longer a dead letter."""
        if notices:
            with self.db.tx() as con:
                con.executemany("DELETE FROM receive_dead WHERE door = ? AND source = ?",
                                [(DOOR, self._name(n)) for n in notices])
