"""The exporter: results go from the persistent outbox to C-STORE destinations and/or a DICOMweb STOW-RS URL.

Every outbox row is one (destination, SOP instance): ``pending`` until the destination confirms it, then
``sent``; a failure schedules the next attempt with exponential backoff and jitter; after ``max_attempts`` (or a
failure status that retrying cannot fix) the row is ``dead`` (dead-letter, shown by ``ldh status``).
A destination that rejects the association permanently (e.g. "calling AE title not recognised") fails fast: all
its pending rows are dead-lettered at once, the destination is marked ``rejected`` and an ALERT is logged.
Re-sending after a crash cannot duplicate: the row is keyed by SOP Instance UID and a PACS stores an instance
once per UID.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from dicom_node.db import Database
from dicom_node.upper_layer import set_nodelay

log = logging.getLogger(__name__)

SENT, RETRY, DEAD = "sent", "retry", "dead"


def quiet_pynetdicom() -> None:
    """pynetdicom logs every DIMSE message at INFO; the exporter logs per destination instead."""
    if logging.getLogger("pynetdicom").getEffectiveLevel() < logging.WARNING:
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)


@dataclass(frozen=True)
class DimseDestination:
    ae_title: str
    host: str
    port: int

    @property
    def name(self) -> str:
        return f"dimse:{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True)
class StowDestination:
    url: str

    @property
    def name(self) -> str:
        return f"stow:{self.url}"


class Rejected(Exception):
    """The destination refused our association permanently: retrying will not help."""


def parse_destinations(dimse: str = "", stow_url: str | None = None) -> list:
    out: list = []
    for item in (d.strip() for d in dimse.split(",") if d.strip()):
        try:
            ae_title, address = item.split("@", 1)
            host, port = address.rsplit(":", 1)
            out.append(DimseDestination(ae_title.strip(), host.strip(), int(port)))
        except ValueError:
            raise ValueError(f"export destination {item!r} is not AE@host:port") from None
    if stow_url:
        out.append(StowDestination(stow_url.rstrip("/")))
    return out


def backoff_delay(attempts: int, base: float, cap: float, rng: random.Random = random) -> float:
    """Exponential backoff with jitter: between half and all of min(cap, base * 2^(attempts-1))."""
    delay = min(cap, base * (2 ** max(0, attempts - 1)))
    return delay * rng.uniform(0.5, 1.0)


def send_dimse(dest: DimseDestination, calling_ae: str, paths: list[Path]) -> dict[Path, tuple[str, str]]:
    """C-STORE the files in one association; returns {path: (SENT|RETRY|DEAD, detail)}."""
    from pydicom.filereader import read_file_meta_info
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
    from pynetdicom import AE, evt

    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    syntaxes: dict[str, set[str]] = defaultdict(set)
    classes = {}
    for path in paths:
        meta = read_file_meta_info(path)
        classes[path] = str(meta.MediaStorageSOPClassUID)
        syntaxes[classes[path]].add(str(meta.TransferSyntaxUID))
    for uid, found in syntaxes.items():
        ae.add_requested_context(uid, sorted(found | {ExplicitVRLittleEndian, ImplicitVRLittleEndian}))

    def on_open(event):
        set_nodelay(event.assoc.dul.socket.socket if event.assoc.dul.socket else None)

    assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title, evt_handlers=[(evt.EVT_CONN_OPEN, on_open)])
    if assoc.is_rejected:
        rj = assoc.acceptor.primitive
        detail = f"association rejected (result {rj.result}, source {rj.result_source}, reason {rj.diagnostic})"
        if rj.result == 0x01:
            raise Rejected(detail)
        return {p: (RETRY, detail) for p in paths}
    if not assoc.is_established:
        return {p: (RETRY, "could not associate (peer down or aborted)") for p in paths}
    out: dict[Path, tuple[str, str]] = {}
    try:
        for path in paths:
            if not assoc.is_established:
                out[path] = (RETRY, "association lost")
                continue
            status = assoc.send_c_store(path)
            code = int(getattr(status, "Status", -1)) if status else -1
            if code == 0x0000 or 0xB000 <= code <= 0xBFFF:
                out[path] = (SENT, f"0x{code:04X}")
            elif code == -1 or 0xA700 <= code <= 0xA7FF:
                out[path] = (RETRY, "no response" if code == -1 else f"out of resources 0x{code:04X}")
            else:
                comment = str(getattr(status, "ErrorComment", "")) if status else ""
                out[path] = (DEAD, f"refused 0x{code:04X} {comment}".strip())
    finally:
        if assoc.is_established:
            assoc.release()
    return out


def send_stow(dest: StowDestination, paths: list[Path]) -> dict[Path, tuple[str, str]]:
    import pydicom
    import requests
    from dicomweb_client.api import DICOMwebClient

    from dicom_node.healthcare_dicomweb import dicomweb_session  # Google OAuth for a Cloud Healthcare store

    client = DICOMwebClient(url=dest.url, session=dicomweb_session(dest.url))
    datasets = {p: pydicom.dcmread(p) for p in paths}
    try:
        client.store_instances(list(datasets.values()))
    except requests.HTTPError as exc:
        code = exc.response.status_code if exc.response is not None else 0
        if code == 409:
            return stow_conflict(exc.response, {p: str(ds.SOPInstanceUID) for p, ds in datasets.items()})
        verdict = RETRY if code in (0, 408, 429) or code >= 500 else DEAD
        return {p: (verdict, f"HTTP {code}") for p in paths}
    except (requests.ConnectionError, requests.Timeout, OSError) as exc:
        return {p: (RETRY, f"{type(exc).__name__}") for p in paths}
    return {p: (SENT, "stored") for p in paths}


DUPLICATE_SOP_INSTANCE = 0x0111  # PS3.7 C.4.2: the failure reason of an instance the store already holds


def stow_conflict(response, sops: dict[Path, str]) -> dict[Path, tuple[str, str]]:
    """HTTP 409: an instance the store already holds (a re-send after a crash, a redelivery) counts as sent;
    other failures the body lists are refusals; an instance it does not account for is tried again."""
    failed = _failed_sops(response)
    if failed is None:  # no Store Instances Response Module: only the error text can say why
        verdict = (SENT, "already stored (HTTP 409)") if "already exists" in response.text.lower() else \
            (DEAD, f"HTTP 409: {response.text[:200]}")
        return {p: verdict for p in sops}
    out = {}
    for path, sop in sops.items():
        reason = failed.get(sop)
        if reason == DUPLICATE_SOP_INSTANCE:
            out[path] = (SENT, "already stored (HTTP 409, 0x0111)")
        elif reason is not None:
            out[path] = (DEAD, f"HTTP 409, failure reason 0x{reason:04X}")
        else:
            out[path] = (RETRY, "HTTP 409 without a status for this instance")
    return out


def _failed_sops(response) -> dict[str, int] | None:
    """{SOP Instance UID: Failure Reason} of the FailedSOPSequence in a DICOM JSON or XML STOW response body."""
    import json
    import xml.etree.ElementTree as ET

    kind = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    try:
        if kind.endswith("json"):
            body = json.loads(response.content)
            items = (body.get("00081198") or {}).get("Value") if isinstance(body, dict) else None
            if items is None:
                return None
            return {i["00081155"]["Value"][0]: int(i.get("00081197", {}).get("Value", [0])[0]) for i in items}
        if kind.endswith("xml"):
            root = ET.fromstring(response.content)
            seq = root.find("DicomAttribute[@tag='00081198']")
            if seq is None:
                return None
            return {item.findtext("DicomAttribute[@tag='00081155']/Value", ""):
                    int(item.findtext("DicomAttribute[@tag='00081197']/Value", "0")) for item in seq.findall("Item")}
    except (ValueError, KeyError, IndexError, TypeError, ET.ParseError):
        return None
    return None


class Exporter:
    def __init__(self, db: Database, destinations: list, calling_ae: str, *, max_attempts: int = 8,
                 backoff_s: float = 1.0, backoff_max_s: float = 300.0, batch: int = 64):
        self.db = db
        self.destinations = {d.name: d for d in destinations}
        self.calling_ae = calling_ae
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.batch = batch
        self.wake = threading.Event()

    def exports_for(self, paths_and_uids: list[tuple[Path, str]]) -> list[tuple[str, Path, str]]:
        return [(name, path, uid) for name in self.destinations for path, uid in paths_and_uids]

    def run_once(self) -> int:
        """Send every due item, one association (or one STOW request) per destination. Returns items handled."""
        now = time.time()
        rows = self.db.query(
            "SELECT id, destination, path, attempts FROM outbox WHERE state = 'pending' AND next_at <= ?"
            " ORDER BY id LIMIT ?", (now, self.batch * max(1, len(self.destinations))))
        by_dest: dict[str, list] = defaultdict(list)
        for row in rows:
            by_dest[row["destination"]].append(row)
        handled = 0
        for name, items in by_dest.items():
            dest = self.destinations.get(name)
            if dest is None:  # destination removed from the configuration
                self._finish([(r, DEAD, "destination no longer configured") for r in items])
                continue
            paths = [Path(r["path"]) for r in items]
            try:
                if isinstance(dest, DimseDestination):
                    results = send_dimse(dest, self.calling_ae, paths)
                else:
                    results = send_stow(dest, paths)
            except Rejected as exc:
                self._reject(name, str(exc))
                handled += len(items)
                continue
            except Exception as exc:  # a bug or an unreadable result file must not stop the exporter
                log.exception("export attempt failed", extra={"destination": name})
                results = {p: (RETRY, f"{type(exc).__name__}: {exc}") for p in paths}
            self._finish([(r, *results.get(Path(r["path"]), (RETRY, "not attempted"))) for r in items])
            handled += len(items)
        return handled

    def _finish(self, outcomes: list) -> None:
        now = time.time()
        with self.db.tx() as con:
            for row, verdict, detail in outcomes:
                attempts = row["attempts"] + 1
                if verdict == RETRY and attempts >= self.max_attempts:
                    verdict, detail = DEAD, f"gave up after {attempts} attempts: {detail}"
                if verdict == RETRY:
                    delay = backoff_delay(attempts, self.backoff_s, self.backoff_max_s)
                    con.execute("UPDATE outbox SET attempts = ?, next_at = ?, error = ?, updated = ? WHERE id = ?",
                                (attempts, now + delay, detail, now, row["id"]))
                else:
                    con.execute("UPDATE outbox SET state = ?, attempts = ?, error = ?, updated = ? WHERE id = ?",
                                (verdict, attempts, None if verdict == SENT else detail, now, row["id"]))
                    if verdict == DEAD:
                        log.error("export dead-lettered", extra={"destination": row["destination"], "error": detail})
            dests = {row["destination"] for row, verdict, _ in outcomes if verdict == SENT}
            for name in dests:
                con.execute("INSERT INTO destinations (name, state, message, updated) VALUES (?, 'ok', NULL, ?)"
                            " ON CONFLICT(name) DO UPDATE SET state = 'ok', message = NULL, updated = ?",
                            (name, now, now))
        sent = sum(1 for _, verdict, _ in outcomes if verdict == SENT)
        if sent:
            log.info("exported", extra={"instances": sent})

    def _reject(self, name: str, detail: str) -> None:
        now = time.time()
        with self.db.tx() as con:
            n = con.execute("UPDATE outbox SET state = 'dead', error = ?, attempts = attempts + 1, updated = ?"
                            " WHERE destination = ? AND state = 'pending'", (detail, now, name)).rowcount
            con.execute("INSERT INTO destinations (name, state, message, updated) VALUES (?, 'rejected', ?, ?)"
                        " ON CONFLICT(name) DO UPDATE SET state = 'rejected', message = ?, updated = ?",
                        (name, detail, now, detail, now))
        log.error("ALERT: export destination rejects us; items dead-lettered, not retried",
                  extra={"destination": name, "detail": detail, "items": n})
