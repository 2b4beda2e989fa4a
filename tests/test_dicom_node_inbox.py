"""The inbox: instances acknowledged (journalled) but not yet written as files or indexed come back at recovery
after a crash; retiring a segment writes and indexes them; a full segment is retired mid-association."""

from __future__ import annotations

import os

import pydicom

from node_support import node_settings, phantom_series
from peers import storescu

from dicom_node import inbox as inbox_module
from dicom_node.db import Database
from dicom_node.inbox import Inbox
from dicom_node.node import Node
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


def test_instances_acknowledged_before_a_crash_are_materialised_and_indexed_at_recovery(tmp_path):
    files = phantom_series(tmp_path / "phantom", slices=3)
    data = tmp_path / "data"
    db = Database(data / "node.db")
    inbox = Inbox(data, db)
    segment = inbox.open_segment()
    instances = [received(f) for f in files]
    for header, dataset, syntax in instances:
        assert inbox.journal(segment, header, dataset, syntax, "PACS", "assoc-1")  # acknowledged from here on
    assert indexed(db) == set()  # files and index rows wait for the segment's retirement
    assert not any(inbox.path_for(h).exists() for h, _, _ in instances)
    os.close(segment.fd)  # the process dies here: the segment is never retired
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


def test_retiring_a_segment_writes_and_indexes_its_instances_and_drops_the_journal(tmp_path):
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


def test_a_long_association_continues_in_new_segments_and_loses_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(inbox_module, "SEGMENT_LIMIT", 1)  # every instance fills a segment
    files = phantom_series(tmp_path / "phantom", slices=4)
    with Node(node_settings(tmp_path / "data"), None) as node:
        assert storescu(node.port, files).returncode == 0
        assert indexed(node.db) == {str(pydicom.dcmread(f).SOPInstanceUID) for f in files}
        assert all(node.inbox.path_for(received(f)[0]).exists() for f in files)
        assert not list(node.inbox.journal_dir.glob("*.wal"))
