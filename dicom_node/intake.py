"""Instances that arrive as Part 10 files rather than by C-STORE (web upload, STOW-RS, Cloud Healthcare API).

Each batch is one *pseudo-association* (a row in ``associations`` with the door's calling AE, e.g. ``STOW-RS``)
whose instances go through the C-STORE SCP's own step, :class:`dicom_node.journalling.Journaller` (element
structure, UIDs, a supported storage SOP class and transfer syntax, pixel data in an image; the same durable inbox),
so assembly, routing, analysis and export cannot tell the doors apart. What is this module's own is the Part 10
framing: the file meta group states the transfer syntax and the UIDs the data set must carry. An :class:`Outcome` is
a success only once the instance's journal record is fdatasync'd; :meth:`Intake.close` (or leaving the ``with``
block) writes the files and index rows and syncs them, and ends the pseudo-association so the assembler may
complete its series.

Failure statuses are the PS3.4 / PS3.18 failure reasons a STOW-RS response carries (see dicom_node.journalling):
0x0122, 0xC122, 0xA900, 0xC000 (quarantined, as the SCP does), 0xA700.
"""

from __future__ import annotations

import io
import logging
import os
import time
import uuid

from pydicom.filereader import read_preamble, _read_file_meta_info
from pydicom.errors import InvalidDicomError

from dicom_node.db import Database
from dicom_node.inbox import Inbox
from dicom_node.journalling import Journaller, Offer, Outcome
from dicom_node.parse import Undecodable

log = logging.getLogger(__name__)

FILE_META = "its file meta information"


def split_part10(raw: bytes) -> Offer:
    """Read the preamble and file meta group of a Part 10 file (nothing else is decoded): the data set after them,
    offered with the syntax and UIDs the meta states; raises Undecodable."""
    fp = io.BytesIO(raw)
    try:
        read_preamble(fp, force=False)
        meta = _read_file_meta_info(fp)
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, OSError) as exc:
        raise Undecodable(f"not a DICOM Part 10 file ({exc})") from None
    syntax = str(meta.get("TransferSyntaxUID", "") or "").strip()
    if not syntax:
        raise Undecodable("the file meta information has no Transfer Syntax UID")
    return Offer(dataset=raw[fp.tell():], transfer_syntax=syntax,
                 sop_class_uid=str(meta.get("MediaStorageSOPClassUID", "") or "").strip(),
                 sop_instance_uid=str(meta.get("MediaStorageSOPInstanceUID", "") or "").strip(), stated_by=FILE_META)


class Intake(Journaller):
    """One pseudo-association: ``with Intake(inbox, db, "STOW-RS", peer) as batch: batch.store(raw)``."""

    def __init__(self, inbox: Inbox, db: Database, calling_ae: str, peer: str):
        super().__init__(inbox, calling_ae, f"{calling_ae.lower()}-{uuid.uuid4().hex[:16]}", peer)
        self.db = db
        with db.tx() as con:
            con.execute("INSERT INTO associations (id, calling_ae, peer, pid, started) VALUES (?,?,?,?,?)",
                        (self.id, calling_ae, peer, os.getpid(), time.time()))

    def store(self, raw: bytes, *, study_uid: str | None = None) -> Outcome:
        """Check one Part 10 file and journal it durably. ``study_uid``: the study the request named (STOW-RS
        ``/studies/{study}``); an instance of another study fails with 0xA900."""
        try:
            offer = split_part10(raw)
        except Undecodable as exc:
            offer = Offer(raw, "", "", "", FILE_META, problem=str(exc))
        outcome = self.check_and_journal(offer, study_uid)
        if not outcome.ok:
            log.warning("instance refused", extra={"door": self.calling_ae, "status": f"0x{outcome.status:04X}",
                                                   "reason": outcome.reason, "sop": outcome.sop_instance_uid})
        self.rotate()
        return outcome

    def close(self, outcome: str = "released") -> None:
        """Write, index and sync what was journalled, then end the pseudo-association (idempotent)."""
        if not self.retire():
            outcome = "aborted"
        with self.db.tx() as con:
            con.execute("UPDATE associations SET ended = ?, outcome = ? WHERE id = ? AND ended IS NULL",
                        (time.time(), outcome, self.id))

    def __enter__(self) -> "Intake":
        return self

    def __exit__(self, exc_type, *_) -> None:
        self.close("released" if exc_type is None else "aborted")
