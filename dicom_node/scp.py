"""The C-ECHO / C-STORE SCP: pynetdicom event handlers that return DICOM statuses; the AE is a thin layer.

Statuses: 0x0000 only after the inbox made the instance durable; 0xA700 when the free-space floor is reached
or the disk fails; 0xC210 (quarantined: cannot understand) for a dataset whose encoding is broken or whose
SOP Instance UID differs from the request's. Unknown calling AE titles are rejected at association with
"calling AE title not recognised"; unknown hosts with "no reason given"; low disk with a transient rejection.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification

from dicom_node.db import Database
from dicom_node.inbox import Inbox, Segment
from dicom_node.parse import Undecodable, inspect
from dicom_node.sop_classes import NEEDS_PIXELS, STORAGE, TRANSFER_SYNTAXES

log = logging.getLogger(__name__)

REJECT_PERMANENT, REJECT_TRANSIENT = 0x01, 0x02
SOURCE_USER, SOURCE_PRESENTATION = 0x01, 0x03
REASON_NONE, REASON_CALLING_AET, REASON_CONGESTION = 0x01, 0x03, 0x01


def set_nodelay(sock) -> None:
    """Disable Nagle: DIMSE is request/response; with Nagle on, every small PDU waits ~40 ms (FACTS)."""
    raw = getattr(sock, "socket", sock)
    if raw is not None:
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


DUL_IDLE_DELAY_S = 0.0002  # pynetdicom's default 0.001 adds up to 1 ms of idle wait per PDU exchange


def fast_reactor(assoc) -> None:
    """pynetdicom's DUL sleeps 1 ms whenever its queue was empty; a shorter nap raised throughput ~20 % here."""
    dul = getattr(assoc, "dul", None)
    if dul is not None:
        dul._run_loop_delay = DUL_IDLE_DELAY_S


@dataclass
class AssocState:
    id: str
    calling_ae: str
    peer: str
    segment: Segment | None = None
    stored: int = 0
    duplicates: int = 0
    failed: int = 0
    started: float = field(default_factory=time.time)


class StoreSCP:
    """Event handlers bound to one inbox/index; ``handlers()`` gives pynetdicom's (event, callable) list."""

    def __init__(self, inbox: Inbox, db: Database, allowed_hosts: list[str] | None = None):
        self.inbox = inbox
        self.db = db
        self.allowed_hosts = set(allowed_hosts or [])
        self._states: dict[int, AssocState] = {}
        self._lock = threading.Lock()

    def handlers(self) -> list:
        return [
            (evt.EVT_CONN_OPEN, self.on_conn_open),
            (evt.EVT_REQUESTED, self.on_requested),
            (evt.EVT_ESTABLISHED, self.on_established),
            (evt.EVT_C_ECHO, self.on_c_echo),
            (evt.EVT_C_STORE, self.on_c_store),
            (evt.EVT_RELEASED, self.on_ended),
            (evt.EVT_ABORTED, self.on_ended),
            (evt.EVT_CONN_CLOSE, self.on_ended),
        ]

    # ---------------------------------------------------------------- association
    def on_conn_open(self, event) -> None:
        set_nodelay(event.assoc.dul.socket.socket if event.assoc.dul.socket else None)
        fast_reactor(event.assoc)

    def on_requested(self, event) -> None:
        assoc = event.assoc
        host = assoc.requestor.address
        calling = assoc.requestor.primitive.calling_ae_title
        if self.allowed_hosts and host not in self.allowed_hosts:
            log.warning("association refused: host not allowed", extra={"peer": host, "calling_ae": calling})
            _reject(assoc, REJECT_PERMANENT, SOURCE_USER, REASON_NONE)
            return
        if not self.inbox.has_space():
            log.error("association refused: free space below the floor", extra={"peer": host, "calling_ae": calling})
            _reject(assoc, REJECT_TRANSIENT, SOURCE_PRESENTATION, REASON_CONGESTION)

    def on_established(self, event) -> None:
        assoc = event.assoc
        state = AssocState(id=uuid.uuid4().hex, calling_ae=assoc.requestor.ae_title.strip(),
                           peer=f"{assoc.requestor.address}:{assoc.requestor.port}")
        with self._lock:
            self._states[id(assoc)] = state
        with self.db.tx() as con:
            con.execute("INSERT INTO associations (id, calling_ae, peer, pid, started) VALUES (?,?,?,?,?)",
                        (state.id, state.calling_ae, state.peer, os.getpid(), state.started))

    def on_ended(self, event) -> None:
        with self._lock:
            state = self._states.pop(id(event.assoc), None)
        if state is None:
            return
        outcome = {evt.EVT_RELEASED: "released", evt.EVT_ABORTED: "aborted"}.get(event.event, "closed")
        if state.segment is not None:
            try:
                self.inbox.retire(state.segment)
            except OSError:
                log.exception("could not retire journal segment (kept for recovery)")
        with self.db.tx() as con:
            con.execute("UPDATE associations SET ended = ?, outcome = ? WHERE id = ?", (time.time(), outcome, state.id))
        log.info("association ended", extra={"assoc": state.id[:8], "calling_ae": state.calling_ae,
                                             "outcome": outcome, "stored": state.stored,
                                             "duplicates": state.duplicates, "failed": state.failed,
                                             "seconds": round(time.time() - state.started, 3)})

    # ---------------------------------------------------------------- DIMSE
    def on_c_echo(self, event) -> int:
        return 0x0000

    def on_c_store(self, event):
        state = self._states.get(id(event.assoc))
        if state is None:  # cannot happen after EVT_ESTABLISHED; be safe
            return 0xC001
        if not self.inbox.has_space():
            state.failed += 1
            return _status(0xA700, "free space below the configured floor")
        request = event.request
        dataset = request.DataSet.getvalue()
        syntax = str(event.context.transfer_syntax)
        sop_class = str(request.AffectedSOPClassUID)
        try:
            header = inspect(dataset, syntax, needs_pixels=sop_class in NEEDS_PIXELS)
            if header.sop_instance_uid != str(request.AffectedSOPInstanceUID).strip("\0 "):
                raise Undecodable("SOP Instance UID in the dataset differs from the C-STORE request's")
        except Undecodable as exc:
            state.failed += 1
            self.inbox.quarantine(dataset, str(exc), {
                "calling_ae": state.calling_ae, "peer": state.peer, "transfer_syntax": syntax,
                "sop_class": sop_class, "sop_instance": str(request.AffectedSOPInstanceUID)})
            return _status(0xC210, f"cannot understand: {exc}"[:64])
        try:
            if state.segment is None:
                state.segment = self.inbox.open_segment()
            stored = self.inbox.store(state.segment, header, dataset, syntax, state.calling_ae, state.id)
        except OSError as exc:
            state.failed += 1
            log.error("could not store instance", extra={"error": str(exc), "sop": header.sop_instance_uid})
            return _status(0xA700, "could not write to disk")
        if stored.duplicate:
            state.duplicates += 1
        else:
            state.stored += 1
        return 0x0000


def _reject(assoc, result: int, source: int, reason: int) -> None:
    assoc.acse.send_reject(result, source, reason)
    assoc.is_rejected = True
    evt.trigger(assoc, evt.EVT_REJECTED, {})
    assoc.kill()


def _status(code: int, comment: str) -> Dataset:
    ds = Dataset()
    ds.Status = code
    ds.ErrorComment = comment
    return ds


def quiet_pynetdicom() -> None:
    """pynetdicom logs every DIMSE message at INFO; our handlers log per association instead."""
    if logging.getLogger("pynetdicom").getEffectiveLevel() < logging.WARNING:
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)


def build_ae(ae_title: str, *, max_associations: int = 10, max_pdu: int = 262144,
             allowed_aets: list[str] | None = None) -> AE:
    ae = AE(ae_title=ae_title)
    ae.maximum_associations = max_associations
    ae.maximum_pdu_size = max_pdu
    ae.require_calling_aet = list(allowed_aets or [])
    ae.network_timeout = 60
    ae.acse_timeout = 30
    ae.dimse_timeout = 60
    ae.add_supported_context(Verification)
    for uid in STORAGE:
        ae.add_supported_context(uid, TRANSFER_SYNTAXES)
    return ae


def tls_context(cert, key, ca=None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile=str(cert), keyfile=str(key))
    if ca:
        context.load_verify_locations(cafile=str(ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context
