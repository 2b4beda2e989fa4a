"""The node: receiver + assembler/router + worker + exporter, wired on one data directory.

The node knows nothing of neural networks: it hands each routed series folder to an *analyzer*, any callable
``analyzer(series_dir, out_dir) -> [DICOM files to export]`` with a ``model_version`` attribute (the job key).
Start-up order is recovery first (journal replay, lost associations closed, interrupted jobs re-queued), then
receiving, so everything acknowledged before a crash is analysed and exported after it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable, Protocol

from dicom_node.assembly import Assembler, CompleteSeries
from dicom_node.db import Database
from dicom_node.exporter import Exporter, StowDestination, parse_destinations, quiet_pynetdicom
from dicom_node.inbox import Inbox
from dicom_node.jobs import JobQueue
from dicom_node.receiver import ReceiverPool, start_scp
from dicom_node.routing import Router
from dicom_node.scp import StoreSCP

log = logging.getLogger(__name__)


class Analyzer(Protocol):
    model_version: str

    def __call__(self, series_dir: Path, out_dir: Path) -> list[Path]: ...


def db_path(data_dir: Path) -> Path:
    return Path(data_dir) / "node.db"


def export_destinations(settings) -> list:
    """The configured destinations; with the Cloud Healthcare receiver, results also go back to its store."""
    out = parse_destinations(settings.node_export_dimse, settings.node_export_stow_url)
    url = settings.healthcare_dicomweb_url
    if settings.healthcare_subscription and url and all(d.name != StowDestination(url.rstrip("/")).name for d in out):
        out.append(StowDestination(url.rstrip("/")))
    return out


class Node:
    def __init__(self, settings, analyzer: Analyzer | Callable | None, *, poll_s: float = 0.05):
        self.settings = settings
        self.analyzer = analyzer
        self.poll_s = poll_s
        self.data_dir = settings.local_dir
        self.db = Database(db_path(self.data_dir))
        self.inbox = Inbox(self.data_dir, self.db, settings.node_min_free_mb)
        debounced: frozenset[str] = frozenset()
        if settings.healthcare_subscription:
            from dicom_node.healthcare import DOOR

            debounced = frozenset({DOOR})  # its batches come after a quiet period already
        self.assembler = Assembler(self.db, settings.node_quiet_seconds, debounced)
        self.router = Router.from_file(settings.node_routing_file)
        self.jobs = JobQueue(self.db)
        self.exporter = Exporter(
            self.db, export_destinations(settings),
            settings.node_ae_title, max_attempts=settings.node_export_max_attempts,
            backoff_s=settings.node_export_backoff_s, backoff_max_s=settings.node_export_backoff_max_s)
        self.scp = StoreSCP(self.inbox, self.db, settings.node_allowed_host_list, settings.node_allowed_aet_list)
        self.healthcare = None
        if settings.healthcare_subscription:
            from dicom_node.healthcare import HealthcareReceiver

            self.healthcare = HealthcareReceiver(settings, self.inbox, self.db, self.exporter)
        self._stop = threading.Event()
        self._work_wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server = None
        self._pool: ReceiverPool | None = None
        self.port: int | None = None

    # ------------------------------------------------------------------ lifecycle
    def recover(self) -> None:
        replayed = self.inbox.recover()
        lost = self.assembler.close_dead_associations()  # nothing receives yet: all open ones are lost
        requeued = self.jobs.recover()
        log.info("recovered", extra={"replayed": replayed, "lost_associations": lost, "requeued_jobs": requeued})

    def start(self, receive: bool = True) -> "Node":
        quiet_pynetdicom()
        self.recover()
        if receive:
            self._start_receiver()
            if self.healthcare is not None:
                self.healthcare.start()
        for name, target in (("assembler", self._assemble_loop), ("worker", self._work_loop),
                             ("exporter", self._export_loop)):
            if name == "worker" and self.analyzer is None:
                continue
            t = threading.Thread(target=target, name=f"ldh-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _start_receiver(self) -> None:
        s = self.settings
        if s.node_receivers == 0:
            self._server = start_scp(s, self.scp, s.node_port, reuse_port=False)
            self.port = self._server.server_address[1]
        else:
            self._pool = ReceiverPool(s, s.node_receivers)
            self.port = self._pool.start()
        log.info("DICOM node listening", extra={"ae_title": s.node_ae_title, "host": s.node_host, "port": self.port,
                                                "receivers": s.node_receivers or "in-process",
                                                "tls": bool(s.node_tls_cert)})

    def stop(self) -> None:
        self._stop.set()
        if self.healthcare is not None:
            self.healthcare.stop()
        self.exporter.wake.set()
        self._work_wake.set()
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        if self._pool is not None:
            self._pool.stop()
            self._pool = None
        for t in self._threads:
            t.join(timeout=30)
        self._threads.clear()

    def request_stop(self) -> None:
        """Ask serve_forever to return (safe from a signal handler)."""
        self._stop.set()

    def serve_forever(self) -> None:
        try:
            while not self._stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> "Node":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ loops
    def _loop(self, step: Callable[[], int], idle_s: float, wake: threading.Event | None = None) -> None:
        while not self._stop.is_set():
            try:
                busy = step()
            except Exception:
                log.exception("background step failed", extra={"thread": threading.current_thread().name})
                busy = 0
            if not busy:
                if wake is not None:
                    wake.wait(idle_s)
                    wake.clear()
                else:
                    self._stop.wait(idle_s)

    def _assemble_loop(self) -> None:
        self._loop(self.assemble_once, self.poll_s)

    def _work_loop(self) -> None:
        self._loop(self.work_once, self.poll_s, self._work_wake)

    def _export_loop(self) -> None:
        self._loop(self.exporter.run_once, 0.5, self.exporter.wake)

    # ------------------------------------------------------------------ steps (also used by tests)
    def supervise(self) -> None:
        """Restart dead receiver processes; what they acknowledged is replayed and their associations closed."""
        if self._pool is None:
            return
        dead = self._pool.replace_dead()
        if dead:
            self.inbox.recover(set(dead))
            # this process stores too (e.g. API uploads as pseudo-associations): its associations are alive
            self.assembler.close_dead_associations(self._pool.live_pids() | {os.getpid()})

    def assemble_once(self) -> int:
        self.supervise()
        complete = self.assembler.due()
        for series in complete:
            self._route(series)
        return len(complete)

    def _route(self, series: CompleteSeries) -> None:
        decision = self.router.decide(series.files)
        version = getattr(self.analyzer, "model_version", "none")
        state = "queued" if decision.analyse and self.analyzer is not None else "skipped"
        reason = decision.reason
        if decision.analyse and self.analyzer is None:
            reason = "no analyzer running"
        with self.db.tx() as con:
            before = con.execute("SELECT instances FROM series WHERE series_uid = ?", (series.series_uid,)).fetchone()
            con.execute(
                "INSERT INTO series (series_uid, study_uid, instances, state, rule, reason, updated)"
                " VALUES (?,?,?,?,?,?,?) ON CONFLICT(series_uid) DO UPDATE SET instances = excluded.instances,"
                " state = CASE WHEN series.state = 'skipped' OR excluded.state = 'queued' THEN excluded.state"
                " ELSE series.state END, rule = excluded.rule, reason = excluded.reason, updated = excluded.updated",
                (series.series_uid, series.study_uid, len(series.files), state, decision.rule, reason, time.time()))
        extra = {"study": series.study_uid, "series": series.series_uid, "instances": len(series.files),
                 "rule": decision.rule}
        if state == "queued":
            created = self.jobs.enqueue(series.study_uid, series.series_uid, version, series.directory)
            grown = before is not None and len(series.files) > before[0]
            if created:
                log.info("series routed to analysis", extra={**extra, "model_version": version})
            elif grown and self.jobs.requeue(series.study_uid, series.series_uid, version):
                log.info("series grew after its analysis; analysing it again",
                         extra={**extra, "model_version": version, "before": before[0]})
            else:
                log.info("series complete again; its job already covers it", extra={**extra, "model_version": version})
            self._work_wake.set()
        else:
            log.info("series kept, not analysed", extra={**extra, "reason": reason})

    def work_once(self) -> int:
        job = self.jobs.claim()
        if job is None:
            return 0
        out_dir = self.data_dir / "results" / job.study_uid / job.model_version / job.series_uid
        t0 = time.perf_counter()
        try:
            files = [Path(p) for p in self.analyzer(job.series_dir, out_dir)]
            exports = self.exporter.exports_for([(p, _sop_uid(p)) for p in files])
        except Exception as exc:
            # a ValueError (the analyzer's "this input cannot be analysed") fails the same way every time: retries
            # are for what may pass next time (a full disk, a model being swapped)
            retry = self.jobs.fail(job, f"{type(exc).__name__}: {exc}", retryable=not isinstance(exc, ValueError))
            log.error("analysis failed", extra={"study": job.study_uid, "series": job.series_uid,
                                                "error": str(exc)[:300], "retry": retry}, exc_info=not retry)
            return 1
        self.jobs.complete(job, out_dir, exports)
        self.exporter.wake.set()
        log.info("analysed", extra={"study": job.study_uid, "series": job.series_uid, "files": len(files),
                                    "seconds": round(time.perf_counter() - t0, 3)})
        return 1


def _sop_uid(path: Path) -> str:
    from pydicom.filereader import read_file_meta_info

    return str(read_file_meta_info(path).MediaStorageSOPInstanceUID)
