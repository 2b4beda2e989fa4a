"""The C-ECHO / C-STORE SCP: who may associate and what a C-STORE does, behind dicom_node.upper_layer.

Statuses: 0x0000 only after the inbox journalled the instance durably (its file and index row come later);
0xA700 when the free-space floor is reached or the disk fails; 0xC210 (quarantined: cannot understand) for a
dataset whose encoding is broken or whose SOP Instance UID differs from the request's. Unknown calling AE titles
are rejected at association with "calling AE title not recognised"; unknown hosts with "no reason given"; low
disk with a transient rejection.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
import uuid
from dataclasses import dataclass, field

from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.sop_class import Verification

from dicom_node.db import Database
from dicom_node.dimse import Command
from dicom_node.inbox import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION, Inbox, Segment
from dicom_node.parse import Undecodable, inspect
from dicom_node.sop_classes import NEEDS_PIXELS, STORAGE, TRANSFER_SYNTAXES
from dicom_node.upper_layer import AcceptorConfig, AssociationServer

log = logging.getLogger(__name__)

REJECT_PERMANENT, REJECT_TRANSIENT = 0x01, 0x02
SOURCE_USER, SOURCE_PRESENTATION = 0x01, 0x03
REASON_NONE, REASON_CALLING_AET, REASON_CONGESTION = 0x01, 0x03, 0x01


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
    """The application behind the upper layer (dicom_node.upper_layer.Service): who may associate, and what a
    C-STORE does to the inbox. Thread-safe: one AssocState per association."""

    def __init__(self, inbox: Inbox, db: Database, allowed_hosts: list[str] | None = None,
                 allowed_aets: list[str] | None = None):
        self.inbox = inbox
        self.db = db
        self.allowed_hosts = set(allowed_hosts or [])
        self.allowed_aets = set(allowed_aets or [])

    # ---------------------------------------------------------------- association
    def admit(self, host: str, calling_ae: str) -> tuple[int, int, int] | None:
        if self.allowed_aets and calling_ae not in self.allowed_aets:
            log.warning("association refused: calling AE title not allowed", extra={"peer": host,
                                                                                    "calling_ae": calling_ae})
            return REJECT_PERMANENT, SOURCE_USER, REASON_CALLING_AET
        if self.allowed_hosts and host not in self.allowed_hosts:
            log.warning("association refused: host not allowed", extra={"peer": host, "calling_ae": calling_ae})
            return REJECT_PERMANENT, SOURCE_USER, REASON_NONE
        if not self.inbox.has_space():
            log.error("association refused: free space below the floor", extra={"peer": host,
                                                                               "calling_ae": calling_ae})
            return REJECT_TRANSIENT, SOURCE_PRESENTATION, REASON_CONGESTION
        return None

    def open(self, calling_ae: str, peer: str) -> AssocState:
        state = AssocState(id=uuid.uuid4().hex, calling_ae=calling_ae, peer=peer)
        with self.db.tx() as con:
            con.execute("INSERT INTO associations (id, calling_ae, peer, pid, started) VALUES (?,?,?,?,?)",
                        (state.id, state.calling_ae, state.peer, os.getpid(), state.started))
        return state

    def close(self, state: AssocState, outcome: str) -> None:
        if state.segment is not None:
            self._retire(state.segment)
        with self.db.tx() as con:
            con.execute("UPDATE associations SET ended = ?, outcome = ? WHERE id = ?", (time.time(), outcome, state.id))
        log.info("association ended", extra={"assoc": state.id[:8], "calling_ae": state.calling_ae,
                                             "outcome": outcome, "stored": state.stored,
                                             "duplicates": state.duplicates, "failed": state.failed,
                                             "seconds": round(time.time() - state.started, 3)})

    # ---------------------------------------------------------------- DIMSE
    def store(self, state: AssocState, context: PresentationContext, command: Command,
              dataset: bytes | memoryview) -> tuple[int, str]:
        """The C-STORE status (and error comment) for one received data set."""
        if not self.inbox.has_space():
            state.failed += 1
            return 0xA700, "free space below the configured floor"
        syntax = str(context.transfer_syntax[0])
        sop_class = command.sop_class
        try:
            header = inspect(dataset, syntax, needs_pixels=sop_class in NEEDS_PIXELS)
            if header.sop_instance_uid != command.sop_instance:
                raise Undecodable("SOP Instance UID in the dataset differs from the C-STORE request's")
        except Undecodable as exc:
            state.failed += 1
            self.inbox.quarantine(dataset, str(exc), {
                "calling_ae": state.calling_ae, "peer": state.peer, "transfer_syntax": syntax,
                "sop_class": sop_class, "sop_instance": command.sop_instance})
            return 0xC210, f"cannot understand: {exc}"
        try:
            if state.segment is None:
                state.segment = self.inbox.open_segment()
            fresh = self.inbox.journal(state.segment, header, dataset, syntax, state.calling_ae, state.id)
        except OSError as exc:
            state.failed += 1
            log.error("could not store instance", extra={"error": str(exc), "sop": header.sop_instance_uid})
            return 0xA700, "could not write to disk"
        if fresh:
            state.stored += 1
        else:
            state.duplicates += 1
        return 0x0000, ""

    def releasing(self, state: AssocState) -> None:
        """Before the A-RELEASE-RP: every instance of the association is a file and indexed once the peer
        sees the release confirmed (the syncfs that makes the files durable follows in :meth:`close`)."""
        if state.segment is not None:
            try:
                self.inbox.settle(state.segment)
            except OSError:
                log.exception("could not write received instances as files (the journal keeps them)")

    def responded(self, state: AssocState) -> None:
        """A full journal segment is retired (its instances become files) between two instances, not during one."""
        if state.segment is not None and self.inbox.full(state.segment):
            segment, state.segment = state.segment, None
            self._retire(segment)

    def _retire(self, segment: Segment) -> None:
        try:
            self.inbox.retire(segment)
        except OSError:
            log.exception("could not retire journal segment (kept for recovery)")


def supported_contexts() -> list[PresentationContext]:
    return [build_context(uid, TRANSFER_SYNTAXES) for uid in (Verification, *STORAGE)]


def make_server(settings, scp: StoreSCP, port: int, *, reuse_port: bool) -> AssociationServer:
    """Bind the C-STORE SCP described by the settings (max PDU, TLS, association limit)."""
    s = settings
    config = AcceptorConfig(contexts=supported_contexts(), max_pdu=s.node_max_pdu,
                            implementation_class_uid=IMPLEMENTATION_CLASS_UID,
                            implementation_version=IMPLEMENTATION_VERSION)
    ssl_context = tls_context(s.node_tls_cert, s.node_tls_key, s.node_tls_ca) if s.node_tls_cert else None
    return AssociationServer((s.node_host, port), config, scp, max_associations=s.node_max_associations,
                             ssl_context=ssl_context, reuse_port=reuse_port)


def tls_context(cert, key, ca=None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile=str(cert), keyfile=str(key))
    if ca:
        context.load_verify_locations(cafile=str(ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context
