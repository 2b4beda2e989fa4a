"""Check one received data set and journal it durably: the one step beneath the C-STORE SCP and the Part 10 intake
(upload, STOW-RS, Cloud Healthcare), so that every door checks the same things and answers the same fault with the
same status. The doors keep their framing: the SCP reads the data set out of DIMSE, the intake out of a Part 10
file, and each turns an :class:`Outcome` into its own answer.

Checks, in order, with the PS3.4 / PS3.18 failure reason of each: free space below the floor 0xA700; no data set
the door could find (:attr:`Offer.problem`) 0xC000, quarantined; transfer syntax not supported 0xC122; SOP class
not a storage class here 0x0122; element structure, UIDs or pixel data broken, or SOP Class/Instance UIDs other
than the framing's, 0xC000, quarantined; another study than the request named 0xA900. Then the journal: success
once its fdatasync returned, 0xA700 when the disk fails.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from dicom_node.inbox import Inbox, Segment
from dicom_node.parse import Header, Undecodable, inspect
from dicom_node.sop_classes import NEEDS_PIXELS, STORAGE, TRANSFER_SYNTAXES

log = logging.getLogger(__name__)

SUCCESS = 0x0000
SOP_CLASS_NOT_SUPPORTED = 0x0122
TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122
DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
OUT_OF_RESOURCES = 0xA700

_STORAGE = frozenset(str(uid) for uid in STORAGE)
_SYNTAXES = frozenset(str(uid) for uid in TRANSFER_SYNTAXES)


@dataclass(frozen=True)
class Offer:
    """A data set as a door received it, with the UIDs its framing states (``stated_by``: "the C-STORE request",
    "its file meta information", named when the data set disagrees). ``problem``: why the door found no data set
    at all in what arrived (then ``dataset`` is what arrived, kept in quarantine)."""

    dataset: bytes | memoryview
    transfer_syntax: str
    sop_class_uid: str
    sop_instance_uid: str
    stated_by: str
    problem: str = ""


@dataclass(frozen=True)
class Outcome:
    """What became of one offered instance. ``status`` 0x0000 means durable in the inbox (``duplicate``: it
    already was); any other status is a failure with ``reason`` saying why in words."""

    status: int
    reason: str = ""
    header: Header | None = None
    sop_class_uid: str = ""  # as the framing stated them (the data set may not be readable)
    sop_instance_uid: str = ""
    duplicate: bool = False

    @property
    def ok(self) -> bool:
        return self.status == SUCCESS


class Journaller:
    """One association's way into the inbox (a real one or a pseudo-association): its journal segment and its
    counts. One per association; not shared between threads."""

    def __init__(self, inbox: Inbox, calling_ae: str, assoc_id: str, peer: str):
        self.inbox = inbox
        self.calling_ae = calling_ae
        self.id = assoc_id
        self.peer = peer
        self.segment: Segment | None = None
        self.stored = self.duplicates = self.failed = 0

    def check_and_journal(self, offer: Offer, study_uid: str | None = None) -> Outcome:
        """The checks of the module docstring, then the journal. ``study_uid``: the study the request named."""
        outcome = self._check_and_journal(offer, study_uid)
        if not outcome.ok:
            self.failed += 1
        elif outcome.duplicate:
            self.duplicates += 1
        else:
            self.stored += 1
        return outcome

    def _check_and_journal(self, offer: Offer, study_uid: str | None) -> Outcome:
        ids = {"sop_class_uid": offer.sop_class_uid, "sop_instance_uid": offer.sop_instance_uid}
        if not self.inbox.has_space():
            return Outcome(OUT_OF_RESOURCES, "free space below the configured floor", **ids)
        if offer.problem:
            self.quarantine(offer, offer.problem)
            return Outcome(CANNOT_UNDERSTAND, f"cannot understand: {offer.problem}", **ids)
        if offer.transfer_syntax not in _SYNTAXES:
            return Outcome(TRANSFER_SYNTAX_NOT_SUPPORTED, f"transfer syntax {offer.transfer_syntax} is not supported",
                           **ids)
        if offer.sop_class_uid not in _STORAGE:
            return Outcome(SOP_CLASS_NOT_SUPPORTED, f"SOP class {offer.sop_class_uid or '(none)'} is not stored here",
                           **ids)
        try:
            header = inspect(offer.dataset, offer.transfer_syntax, needs_pixels=offer.sop_class_uid in NEEDS_PIXELS)
            if header.sop_instance_uid != offer.sop_instance_uid or header.sop_class_uid != offer.sop_class_uid:
                raise Undecodable(f"the data set's SOP Class/Instance UIDs differ from those of {offer.stated_by}")
        except Undecodable as exc:
            self.quarantine(offer, str(exc))
            return Outcome(CANNOT_UNDERSTAND, f"cannot understand: {exc}", **ids)
        if study_uid is not None and header.study_instance_uid != study_uid:
            return Outcome(DOES_NOT_MATCH, f"the instance belongs to study {header.study_instance_uid}, "
                                           f"not to the study {study_uid} of the request", header, **ids)
        try:
            if self.segment is None:
                self.segment = self.inbox.open_segment()
            fresh = self.inbox.journal(self.segment, header, offer.dataset, offer.transfer_syntax, self.calling_ae,
                                       self.id)
        except OSError as exc:
            log.error("could not store instance", extra={"door": self.calling_ae, "error": str(exc),
                                                         "sop": header.sop_instance_uid})
            return Outcome(OUT_OF_RESOURCES, "could not write to disk", header, **ids)
        return Outcome(SUCCESS, "", header, duplicate=not fresh, **ids)

    def quarantine(self, offer: Offer, reason: str) -> None:
        """Keep undecodable bytes for a human to look at, the reason and who sent them beside them."""
        self.inbox.quarantine(offer.dataset, reason, {
            "calling_ae": self.calling_ae, "peer": self.peer, "assoc": self.id,
            "transfer_syntax": offer.transfer_syntax, "sop_class": offer.sop_class_uid,
            "sop_instance": offer.sop_instance_uid})

    def rotate(self) -> None:
        """Retire a full segment between two instances (not during one: the peer is waiting for its status)."""
        if self.segment is not None and self.inbox.full(self.segment):
            self.retire()

    def retire(self) -> bool:
        """Write, index and sync what was journalled; False when that failed (the segment is kept for recovery)."""
        if self.segment is None:
            return True
        segment, self.segment = self.segment, None
        try:
            self.inbox.retire(segment)
        except OSError:
            log.exception("could not retire journal segment (kept for recovery)")
            return False
        return True
