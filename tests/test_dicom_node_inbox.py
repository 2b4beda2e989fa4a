"""The inbox after a crash: instances acknowledged (journalled) but whose file or index row was still pending
come back at recovery; an association's end commits its batched index rows."""

from __future__ import annotations

import os

import pydicom

from node_support import phantom_series

from dicom_node import inbox as inbox_module
from dicom_node.db import Database
from dicom_node.inbox import Inbox
from dicom_node.parse import inspect


def received(path):
    """(header, dataset bytes, transfer syntax) as the SCP gets them: the Part 10 file without its meta group."""
    raw = path.read_bytes()
    meta_len = int.from_bytes(raw[140:144], "little")
    dataset = raw[144 + meta_len:]
    syntax = str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
    return inspect(dataset, syntax, needs_pixels=True), dataset, syntax


def indexed(db: Database) -> set[str]:
    return {r[0] for r in db.query("SELECT sop_uid FROM instances")}


def test_instances_acknowledged_before_a_crash_are_materialised_and_indexed_at_recovery(tmp_path, monkeypatch):
    monkeypatch.setattr(inbox_module, "INDEX_DELAY_S", 3600.0)  # nothing committed by the clock in this test
    files = phantom_series(tmp_path / "phantom", slices=3)
    data = tmp_path / "data"
    db = Database(data / "node.db")
    inbox = Inbox(data, db)
    segment = inbox.open_segment()
    instances = [received(f) for f in files]
    for header, dataset, syntax in instances[:2]:
        assert inbox.journal(segment, header, dataset, syntax, "PACS", "assoc-1")
        inbox.settle(segment)  # file written, index row waiting for its batch
    header, dataset, syntax = instances[2]
    assert inbox.journal(segment, header, dataset, syntax, "PACS", "assoc-1")  # acknowledged, nothing else yet
    assert indexed(db) == set()
    assert not inbox.path_for(header).exists()
    os.close(segment.fd)  # the process dies here: no settle, no retire
    db.close()

    db = Database(data / "node.db")
    recovered = Inbox(data, db)
    assert recovered.recover() == 3
    assert indexed(db) == {h.sop_instance_uid for h, _, _ in instances}
    for (header, dataset, _), source in zip(instances, files):
        stored = recovered.path_for(header).read_bytes()
        assert stored.endswith(dataset)
        assert pydicom.dcmread(recovered.path_for(header)).PixelData == pydicom.dcmread(source).PixelData
    assert not list(recovered.journal_dir.glob("*.wal"))


def test_retiring_a_segment_commits_its_batched_index_rows_and_drops_the_journal(tmp_path, monkeypatch):
    monkeypatch.setattr(inbox_module, "INDEX_DELAY_S", 3600.0)
    files = phantom_series(tmp_path / "phantom", slices=3)
    db = Database(tmp_path / "data" / "node.db")
    inbox = Inbox(tmp_path / "data", db)
    segment = inbox.open_segment()
    instances = [received(f) for f in files]
    for header, dataset, syntax in instances:
        assert inbox.journal(segment, header, dataset, syntax, "PACS", "assoc-1")
    assert not inbox.journal(segment, *instances[0], "PACS", "assoc-1")  # a duplicate is not journalled twice
    inbox.retire(segment)
    assert indexed(db) == {h.sop_instance_uid for h, _, _ in instances}
    assert all(inbox.path_for(h).exists() for h, _, _ in instances)
    assert not segment.path.exists()
