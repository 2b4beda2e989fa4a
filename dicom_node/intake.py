"""Instances that arrive as Part 10 files rather than by C-STORE (web upload, STOW-RS, Cloud Healthcare API).

Each batch is one *pseudo-association* (a row in ``associations`` with the door's calling AE, e.g. ``STOW-RS``)
whose instances are checked exactly as the C-STORE SCP checks a data set (element structure, UIDs, a supported
storage SOP class and transfer syntax, pixel data in an image) and journalled through the same durable inbox, so
assembly, routing, analysis and export cannot tell the doors apart. An :class:`Outcome` is a success only once
the instance's journal record is fdatasync'd; :meth:`Intake.close` (or leaving the ``with`` block) writes the
files and index rows and syncs them, and ends the pseudo-association so the assembler may complete its series.

Failure statuses are the PS3.4 / PS3.18 failure reasons a STOW-RS response carries: 0x0122 SOP class not
supported, 0xC122 transfer syntax not supported, 0xA900 data set does not match the SOP class (or the study the
request named), 0xC000 cannot understand (quarantined, as the SCP does), 0xA700 out of resources.
"""

from __future__ import annotations

import io
import logging
import os
import time
import uuid
from dataclasses import dataclass

from pydicom.filereader import read_preamble, _read_file_meta_info
from pydicom.errors import InvalidDicomError

from dicom_node.db import Database
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
class Outcome:
    """What became of one offered instance. ``status`` 0x0000 means durable in the inbox (``duplicate``: it
    already was); any other status is a failure with ``reason`` saying why in words."""

    status: int
    reason: str = ""
    header: Header | None = None
    sop_class_uid: str = ""  # from the file meta when the data set could not be read
    sop_instance_uid: str = ""
    duplicate: bool = False

    @property
    def ok(self) -> bool:
        return self.status == SUCCESS


@dataclass(frozen=True)
class Part10:
    """A Part 10 file split into what the inbox journals: the data set bytes after the file meta group."""

    dataset: bytes
    transfer_syntax: str
    sop_class_uid: str
    sop_instance_uid: str


def split_part10(raw: bytes) -> Part10:
    """Read the preamble and file meta group of a Part 10 file (nothing else is decoded); raises Undecodable."""
    fp = io.BytesIO(raw)
    try:
        read_preamble(fp, force=False)
        meta = _read_file_meta_info(fp)
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, OSError) as exc:
        raise Undecodable(f"not a DICOM Part 10 file ({exc})") from None
    syntax = str(meta.get("TransferSyntaxUID", "") or "").strip()
    if not syntax:
        raise Undecodable("the file meta information has no Transfer Syntax UID")
    return Part10(dataset=raw[fp.tell():], transfer_syntax=syntax,
                  sop_class_uid=str(meta.get("MediaStorageSOPClassUID", "") or "").strip(),
                  sop_instance_uid=str(meta.get("MediaStorageSOPInstanceUID", "") or "").strip())


class Intake:
    """One pseudo-association: ``with Intake(inbox, db, "STOW-RS", peer) as batch: batch.store(raw)``."""

    def __init__(self, inbox: Inbox, db: Database, calling_ae: str, peer: str):
        self.inbox, self.db = inbox, db
        self.calling_ae = calling_ae
        self.id = f"{calling_ae.lower()}-{uuid.uuid4().hex[:16]}"
        self.stored = self.duplicates = self.failed = 0
        self._segment: Segment | None = None
        self._started = time.time()
        with db.tx() as con:
            con.execute("INSERT INTO associations (id, calling_ae, peer, pid, started) VALUES (?,?,?,?,?)",
                        (self.id, calling_ae, peer, os.getpid(), self._started))

    def store(self, raw: bytes, *, study_uid: str | None = None) -> Outcome:
        """Check one Part 10 file and journal it durably. ``study_uid``: the study the request named (STOW-RS
        ``/studies/{study}``); an instance of another study fails with 0xA900."""
        outcome = self._store(raw, study_uid)
        if outcome.ok:
            self.duplicates += outcome.duplicate
            self.stored += not outcome.duplicate
        else:
            self.failed += 1
            log.warning("instance refused", extra={"door": self.calling_ae, "status": f"0x{outcome.status:04X}",
                                                   "reason": outcome.reason, "sop": outcome.sop_instance_uid})
        return outcome

    def _store(self, raw: bytes, study_uid: str | None) -> Outcome:
        if not self.inbox.has_space():
            return Outcome(OUT_OF_RESOURCES, "free space below the configured floor")
        try:
            part = split_part10(raw)
        except Undecodable as exc:
            self._quarantine(raw, str(exc), "", "")
            return Outcome(CANNOT_UNDERSTAND, f"cannot understand: {exc}")
        ids = {"sop_class_uid": part.sop_class_uid, "sop_instance_uid": part.sop_instance_uid}
        if part.transfer_syntax not in _SYNTAXES:
            return Outcome(TRANSFER_SYNTAX_NOT_SUPPORTED,
                           f"transfer syntax {part.transfer_syntax} is not supported", **ids)
        if part.sop_class_uid not in _STORAGE:
            return Outcome(SOP_CLASS_NOT_SUPPORTED, f"SOP class {part.sop_class_uid or '(none)'} is not stored here",
                           **ids)
        try:
            header = inspect(part.dataset, part.transfer_syntax, needs_pixels=part.sop_class_uid in NEEDS_PIXELS)
            if header.sop_instance_uid != part.sop_instance_uid or header.sop_class_uid != part.sop_class_uid:
                raise Undecodable("the data set's SOP Class/Instance UIDs differ from its file meta information")
        except Undecodable as exc:
            self._quarantine(part.dataset, str(exc), part.transfer_syntax, part.sop_instance_uid)
            return Outcome(CANNOT_UNDERSTAND, f"cannot understand: {exc}", **ids)
        if study_uid is not None and header.study_instance_uid != study_uid:
            return Outcome(DOES_NOT_MATCH, f"the instance belongs to study {header.study_instance_uid}, "
                                           f"not to the study {study_uid} of the request", header, **ids)
        try:
            if self._segment is None:
                self._segment = self.inbox.open_segment()
            elif self.inbox.full(self._segment):
                self.inbox.retire(self._segment)
                self._segment = self.inbox.open_segment()
            fresh = self.inbox.journal(self._segment, header, part.dataset, part.transfer_syntax, self.calling_ae,
                                       self.id)
        except OSError as exc:
            log.error("could not store instance", extra={"door": self.calling_ae, "error": str(exc),
                                                         "sop": header.sop_instance_uid})
            return Outcome(OUT_OF_RESOURCES, "could not write to disk", header, **ids)
        return Outcome(SUCCESS, "", header, duplicate=not fresh, **ids)

    def _quarantine(self, data: bytes, reason: str, syntax: str, sop: str) -> None:
        self.inbox.quarantine(data, reason, {"calling_ae": self.calling_ae, "assoc": self.id[:24],
                                             "transfer_syntax": syntax, "sop_instance": sop})

    def close(self, outcome: str = "released") -> None:
        """Write, index and sync what was journalled, then end the pseudo-association (idempotent)."""
        if self._segment is not None:
            segment, self._segment = self._segment, None
            try:
                self.inbox.retire(segment)
            except OSError:
                log.exception("could not retire journal segment (kept for recovery)")
                outcome = "aborted"
        with self.db.tx() as con:
            con.execute("UPDATE associations SET ended = ?, outcome = ? WHERE id = ? AND ended IS NULL",
                        (time.time(), outcome, self.id))

    def __enter__(self) -> "Intake":
        return self

    def __exit__(self, exc_type, *_) -> None:
        self.close("released" if exc_type is None else "aborted")
