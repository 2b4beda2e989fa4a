"""The C-ECHO / C-STORE SCP: who may associate and what a C-STORE does, behind dicom_node.upper_layer.

A C-STORE goes through the same check-and-journal step as every other door (dicom_node.journalling); the SCP's own
framing is DIMSE: the data set's transfer syntax is the presentation context's, its UIDs are the request's.
Statuses: 0x0000 only after the inbox journalled the instance durably (its file and index row come later);
0xA700 when the free-space floor is reached or the disk fails; 0xC210 (quarantined: cannot understand) for a
dataset whose encoding is broken or whose SOP Class/Instance UIDs differ from the request's; 0x0122 for a SOP class
that is no storage class (a C-STORE on the Verification context). Unknown calling AE titles
are rejected at association with "calling AE title not recognised"; unknown hosts with "no reason given"; low
disk with a transient rejection.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
import uuid

from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.sop_class import Verification

from dicom_node.db import Database
from dicom_node.dimse import Command
from dicom_node.inbox import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION, Inbox
from dicom_node.journalling import CANNOT_UNDERSTAND, Journaller, Offer
from dicom_node.sop_classes import STORAGE, TRANSFER_SYNTAXES
from dicom_node.upper_layer import AcceptorConfig, AssociationServer

log = logging.getLogger(__name__)

REJECT_PERMANENT, REJECT_TRANSIENT = 0x01, 0x02
SOURCE_USER, SOURCE_PRESENTATION = 0x01, 0x03
REASON_NONE, REASON_CALLING_AET, REASON_CONGESTION = 0x01, 0x03, 0x01
C_STORE_CANNOT_UNDERSTAND = 0xC210  # the SCP's code in the C-STORE "Cxxx: cannot understand" range
C_STORE_REQUEST = "the C-STORE request"


class AssocState(Journaller):
    """One association: its way into the inbox, and when it began."""

    def __init__(self, inbox: Inbox, calling_ae: str, peer: str):
        super().__init__(inbox, calling_ae, uuid.uuid4().hex, peer)
        self.started = time.time()


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
        state = AssocState(self.inbox, calling_ae, peer)
        with self.db.tx() as con:
            con.execute("INSERT INTO associations (id, calling_ae, peer, pid, started) VALUES (?,?,?,?,?)",
                        (state.id, state.calling_ae, state.peer, os.getpid(), state.started))
        return state

    def close(self, state: AssocState, outcome: str) -> None:
        state.retire()
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
        outcome = state.check_and_journal(Offer(dataset, str(context.transfer_syntax[0]), command.sop_class,
                                                command.sop_instance, C_STORE_REQUEST))
        status = C_STORE_CANNOT_UNDERSTAND if outcome.status == CANNOT_UNDERSTAND else outcome.status
        return status, outcome.reason

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
        state.rotate()


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
