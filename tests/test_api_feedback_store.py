"""The feedback store and the storage it sits on: record format, supersession rules, atomic writes."""

from __future__ import annotations

import datetime
import json
import os

import pytest

from ai_service.feedback import (
    FeedbackConflict,
    FeedbackError,
    FeedbackStore,
    ReviewedBox,
    ReviewerInfo,
    build_record,
    yolo,
)
from ai_service.storage import LocalStorage, StorageError, check_key
from conftest import make_case

ME = ReviewerInfo("jdoe", "Doe^Jane", "Test Hospital", "LDH_API_KEYS[1]")
T0 = datetime.datetime(2026, 11, 24, 1, 0, 0, tzinfo=datetime.timezone.utc)


def _at(minutes: int) -> datetime.datetime:
    return T0 + datetime.timedelta(minutes=minutes)


@pytest.fixture
def case():
    return make_case()


@pytest.fixture
def store(tmp_path):
    return FeedbackStore(LocalStorage(tmp_path))


def _sops(case):
    return [str(ds.SOPInstanceUID) for ds in case.sources]


def _accept(case, minutes):
    boxes = [ReviewedBox(d.level, d.slice_index, d.box, d.herniation, d.level) for d in case.findings.discs]
    return build_record("accept", case.findings, boxes, ME, _sops(case), now=_at(minutes))


def _correct(case, minutes, dx=0):
    boxes = [ReviewedBox(d.level, d.slice_index, (d.box[0] + dx, d.box[1], d.box[2] + dx, d.box[3]), d.herniation,
                         d.level) for d in case.findings.discs]
    return build_record("correction", case.findings, boxes, ME, _sops(case), now=_at(minutes))


def test_record_format(case):
    d0 = case.findings.discs[0]
    moved = ReviewedBox(d0.level, 1, (d0.box[0] + 2, d0.box[1], d0.box[2] + 2, d0.box[3]), not d0.herniation, d0.level)
    added = ReviewedBox("L5-S1", 2, (10, 50, 30, 58), True, None)
    others = [ReviewedBox(d.level, d.slice_index, d.box, d.herniation, d.level)
              for d in case.findings.discs[1:] if d.level != "L5-S1"]
    rec = build_record("correction", case.findings, [moved, added, *others], ME, _sops(case), comment="ok",
                       now=_at(0))
    assert rec["schema_version"] == 1 and rec["kind"] == "correction"
    assert rec["record_id"].startswith("20261124T010000000000Z-")
    assert rec["created_at"] == "2026-11-24T01:00:00.000000Z"
    assert rec["study_instance_uid"] == case.findings.study_instance_uid
    assert rec["series_instance_uid"] == case.findings.series_instance_uid
    assert rec["model"] == {"segmentation": "seg-v3", "classification": "cls-v7", "version": "seg=seg-v3;cls=cls-v7",
                            "operating_threshold": 0.5}
    assert rec["reviewer"] == {"login": "jdoe", "name": "Doe^Jane", "organization": "Test Hospital",
                               "credential": "LDH_API_KEYS[1]"}
    assert rec["image"] == {"slices": 5, "rows": 64, "columns": 64, "spacing_mm": [0.75, 0.75, 4.0]}
    first = rec["discs"][0]
    assert first["level"] == d0.level and first["slice_index"] == 1
    assert first["sop_instance_uid"] == _sops(case)[1]
    assert first["changes"] == ["slice", "moved", "herniation"]
    assert first["ai"]["box"] == list(d0.box) and first["ai"]["probability"] == d0.probability
    l5 = next(d for d in rec["discs"] if d["level"] == "L5-S1")
    assert l5["changes"] == ["added"] and l5["ai"] is None
    assert l5["yolo"] == [1, 0.3125, 0.84375, 0.3125, 0.125]
    assert [d["level"] for d in rec["deleted"]] == ["L5-S1"]  # the AI's L5-S1 was replaced by an added box
    json.dumps(rec)  # plain JSON


def test_yolo_is_normalised_centre_and_size():
    assert yolo((10, 20, 30, 60), False, 100, 200) == [0, 0.2, 0.2, 0.2, 0.2]


@pytest.mark.parametrize("box, message", [
    (ReviewedBox("L4-L5", 0, (0, 0, 65, 10), False), "lies outside the 64x64 image"),
    (ReviewedBox("L4-L5", 9, (0, 0, 5, 5), False), "slice_index 9 is outside the series (0..4)"),
    (ReviewedBox("L9-L10", 0, (0, 0, 5, 5), False), "unknown disc level 'L9-L10'"),
    (ReviewedBox("L4-L5", 0, (5, 5, 5, 9), False), "is empty"),
])
def test_invalid_boxes_are_refused(case, box, message):
    with pytest.raises(FeedbackError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_record("correction", case.findings, [box], ME, _sops(case))


def test_a_correction_supersedes_an_accept_and_a_later_correction_supersedes_both(case, store):
    a1 = store.add(_accept(case, 0))
    assert store.current(case.findings.study_instance_uid)["record_id"] == a1["record_id"]
    a2 = store.add(_accept(case, 1))
    assert a2["supersedes"] == [a1["record_id"]]
    c1 = store.add(_correct(case, 2, dx=1))
    assert c1["supersedes"] == [a2["record_id"]]
    assert store.current(case.findings.study_instance_uid)["record_id"] == c1["record_id"]
    with pytest.raises(FeedbackConflict, match="already has corrections"):
        store.add(_accept(case, 3))
    c2 = store.add(_correct(case, 4, dx=2))
    assert c2["supersedes"] == [c1["record_id"]]
    current = store.current(case.findings.study_instance_uid)
    assert current["record_id"] == c2["record_id"] and current["discs"][0]["box"][0] == case.findings.discs[0].box[0] + 2
    status = store.status(case.findings.study_instance_uid)
    assert [(r["kind"], r["superseded"]) for r in status["records"]] == [
        ("accept", True), ("accept", True), ("correction", True), ("correction", False)]
    assert [r["record_id"] for r in store.current_records()] == [c2["record_id"]]


def test_records_are_kept_apart_by_kind_with_their_reviewed_sr(case, store, tmp_path):
    a = store.add(_accept(case, 0), reviewed_sr=b"DICM-accept")
    c = store.add(_correct(case, 1), reviewed_sr=b"DICM-correction")
    study = case.findings.study_instance_uid
    assert (tmp_path / "feedback" / "accepted" / study / f"{a['record_id']}.json").exists()
    assert (tmp_path / "feedback" / "corrections" / study / f"{c['record_id']}.json").exists()
    assert store.reviewed_sr(c) == b"DICM-correction"
    assert c["reviewed_sr"] == f"feedback/corrections/{study}/{c['record_id']}.sr.dcm"


def test_a_failed_record_write_leaves_nothing(case, tmp_path, monkeypatch):
    storage = LocalStorage(tmp_path)
    store = FeedbackStore(storage)
    real = storage.write_bytes

    def failing(key, data):
        if key.endswith(".json"):
            raise StorageError("disk full")
        return real(key, data)

    monkeypatch.setattr(storage, "write_bytes", failing)
    with pytest.raises(StorageError):
        store.add(_correct(case, 0), reviewed_sr=b"DICM")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_local_storage_writes_atomically_and_refuses_bad_keys(tmp_path, monkeypatch):
    storage = LocalStorage(tmp_path)
    storage.write_bytes("a/b/c.json", b"one")
    assert storage.read_bytes("a/b/c.json") == b"one" and storage.list("a") == ["a/b/c.json"]

    def boom(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(StorageError, match="No space left"):
        storage.write_bytes("a/b/c.json", b"two")
    monkeypatch.undo()
    assert storage.read_bytes("a/b/c.json") == b"one"  # the old object is intact
    assert [p.name for p in (tmp_path / "a" / "b").iterdir()] == ["c.json"]  # no temp file left
    for bad in ("../x", "/abs", "a//b", "a/./b", ""):
        with pytest.raises(ValueError):
            check_key(bad)
    storage.delete("a/b/c.json")
    assert not (tmp_path / "a").exists()  # empty folders pruned
