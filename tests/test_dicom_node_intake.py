"""Intake of Part 10 files (upload, STOW-RS, Cloud Healthcare): the SCP's checks, the same durable inbox, one
pseudo-association per batch, a precise failure reason per refused instance and nothing refused lost silently."""

from __future__ import annotations

import io

import pydicom
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from node_support import phantom_series

from dicom_node.db import Database
from dicom_node.inbox import Inbox
from dicom_node.intake import Intake
from dicom_node.journalling import (CANNOT_UNDERSTAND, DOES_NOT_MATCH, OUT_OF_RESOURCES, SOP_CLASS_NOT_SUPPORTED,
                                    TRANSFER_SYNTAX_NOT_SUPPORTED)


def open_inbox(tmp_path):
    db = Database(tmp_path / "data" / "node.db")
    return Inbox(tmp_path / "data", db), db


def part10(ds) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_a_batch_is_durable_indexed_and_ends_its_pseudo_association(tmp_path):
    files = phantom_series(tmp_path / "phantom", slices=3)
    inbox, db = open_inbox(tmp_path)
    with Intake(inbox, db, "STOW-RS", "127.0.0.1") as batch:
        outcomes = [batch.store(f.read_bytes()) for f in files]
        again = batch.store(files[0].read_bytes())
        assert db.query("SELECT ended FROM associations")[0]["ended"] is None  # still open: not assembled yet
    assert [o.status for o in outcomes] == [0, 0, 0] and not any(o.duplicate for o in outcomes)
    assert again.ok and again.duplicate
    (row,) = db.query("SELECT calling_ae, outcome, ended FROM associations")
    assert (row["calling_ae"], row["outcome"]) == ("STOW-RS", "released") and row["ended"] is not None
    stored = {r["sop_uid"]: r["path"] for r in db.query("SELECT sop_uid, path FROM instances")}
    assert set(stored) == {pydicom.dcmread(f).SOPInstanceUID for f in files}
    for f in files:
        ds = pydicom.dcmread(stored[pydicom.dcmread(f).SOPInstanceUID])
        assert ds.PixelData == pydicom.dcmread(f).PixelData
        assert ds.file_meta.SourceApplicationEntityTitle == "STOW-RS"
    assert not list(inbox.journal_dir.glob("*.wal"))


def test_each_refused_instance_gets_its_ps3_18_failure_reason_and_the_good_ones_are_kept(tmp_path):
    files = phantom_series(tmp_path / "phantom", slices=2)
    good = files[0].read_bytes()
    inbox, db = open_inbox(tmp_path)

    pdf = pydicom.dcmread(files[1])
    pdf.SOPClassUID = pdf.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.104.1"  # encapsulated PDF
    odd_syntax = pydicom.dcmread(files[1])
    odd_syntax.SOPInstanceUID = odd_syntax.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    raw_odd = bytearray(part10(odd_syntax))
    raw_odd = bytes(raw_odd).replace(ExplicitVRLittleEndian.encode() + b"\0", b"1.2.3.4.5.6.7.8.9.10.11.12.1\0", 1)
    truncated = files[1].read_bytes()[:-4000]
    mismatch = pydicom.dcmread(files[1])
    mismatch.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    raw_mismatch = io.BytesIO()
    mismatch.save_as(raw_mismatch, enforce_file_format=False)  # keeps the (wrong) file meta as given

    with Intake(inbox, db, "STOW-RS", "127.0.0.1") as batch:
        results = {
            "good": batch.store(good, study_uid=str(pydicom.dcmread(files[0]).StudyInstanceUID)),
            "text": batch.store(b"hello, this is not DICOM"),
            "pdf": batch.store(part10(pdf)),
            "syntax": batch.store(raw_odd),
            "truncated": batch.store(truncated),
            "meta mismatch": batch.store(raw_mismatch.getvalue()),
            "other study": batch.store(files[1].read_bytes(), study_uid="1.2.3.4"),
        }
    statuses = {k: v.status for k, v in results.items()}
    assert statuses == {"good": 0, "text": CANNOT_UNDERSTAND, "pdf": SOP_CLASS_NOT_SUPPORTED,
                        "syntax": TRANSFER_SYNTAX_NOT_SUPPORTED, "truncated": CANNOT_UNDERSTAND,
                        "meta mismatch": CANNOT_UNDERSTAND, "other study": DOES_NOT_MATCH}
    assert "not a DICOM Part 10 file" in results["text"].reason
    assert "1.2.840.10008.5.1.4.1.1.104.1" in results["pdf"].reason
    assert "not to the study 1.2.3.4" in results["other study"].reason
    assert results["pdf"].sop_instance_uid == str(pdf.SOPInstanceUID)  # a failure still names its instance
    assert [r["sop_uid"] for r in db.query("SELECT sop_uid FROM instances")] == \
        [str(pydicom.dcmread(files[0]).SOPInstanceUID)]
    # undecodable bytes are kept for a human to look at, with the reason beside them
    notes = sorted(p.read_text() for p in inbox.quarantine_dir.glob("*.json"))
    assert len(notes) == 3 and all('"calling_ae": "STOW-RS"' in n for n in notes)


def test_a_full_disk_answers_out_of_resources_and_stores_nothing(tmp_path):
    files = phantom_series(tmp_path / "phantom", slices=1)
    db = Database(tmp_path / "data" / "node.db")
    inbox = Inbox(tmp_path / "data", db, min_free_mb=1 << 40)  # a floor no disk reaches
    with Intake(inbox, db, "GCP-HEALTHCARE", "pubsub") as batch:
        outcome = batch.store(files[0].read_bytes())
    assert outcome.status == OUT_OF_RESOURCES and "free space" in outcome.reason
    assert db.query("SELECT count(*) AS n FROM instances")[0]["n"] == 0


def test_leaving_the_batch_by_an_exception_keeps_what_was_acknowledged(tmp_path):
    files = phantom_series(tmp_path / "phantom", slices=2)
    inbox, db = open_inbox(tmp_path)
    try:
        with Intake(inbox, db, "STOW-RS", "127.0.0.1") as batch:
            assert batch.store(files[0].read_bytes()).ok
            raise ConnectionResetError("client went away")
    except ConnectionResetError:
        pass
    (row,) = db.query("SELECT outcome FROM associations")
    assert row["outcome"] == "aborted"
    assert [r["sop_uid"] for r in db.query("SELECT sop_uid FROM instances")] == \
        [str(pydicom.dcmread(files[0]).SOPInstanceUID)]
