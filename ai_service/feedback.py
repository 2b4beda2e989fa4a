"""The feedback store: every radiologist review (an accept or a set of corrections) as one immutable JSON record.

Records are training data for the retraining pipeline, so their format is a contract (README, "Feedback
records"). Layout in the storage:

- ``feedback/accepted/<StudyUID>/<record_id>.json``: the AI boxes and labels were right;
- ``feedback/corrections/<StudyUID>/<record_id>.json``: the boxes as the reviewer left them;
- ``<same path>.sr.dcm`` beside a record: the reviewed (verified) TID 1500 SR it produced, when there was one.

Supersession: a later correction of a study supersedes every earlier record of that study; a correction
supersedes an accept; a later accept supersedes earlier accepts. An accept after a correction is refused
(:class:`FeedbackConflict`): it would silently throw the correction away; post corrections instead. Records are
never rewritten: each names the records it supersedes (``supersedes``), and the current record of a study is the
newest one nobody supersedes. Record ids sort by time (``YYYYmmddTHHMMSSffffffZ-<random>``).
"""

from __future__ import annotations

import datetime
import json
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ai_service.findings import Findings
from ai_service.labels import LEVELS
from ai_service.storage import NotFound, Storage, safe_name

RECORD_SCHEMA_VERSION = 1
KINDS = {"accept": "accepted", "correction": "corrections"}
YOLO_CLASSES = {False: 0, True: 1}  # 0 = disc without herniation, 1 = herniated disc


class FeedbackError(ValueError):
    """The feedback does not fit the study (message says why)."""


class FeedbackConflict(FeedbackError):
    """The feedback would break the supersession rules."""


@dataclass(frozen=True)
class ReviewedBox:
    """A box as the reviewer left it. ``ai_level``: the AI disc it started from (None for an added box)."""

    level: str
    slice_index: int
    box: tuple[int, int, int, int]
    herniation: bool
    ai_level: str | None = None


@dataclass(frozen=True)
class ReviewerInfo:
    login: str
    name: str
    organization: str | None = None
    credential: str | None = None  # which credential authenticated (its label, never the secret)


def new_record_id(now: datetime.datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%S%fZ") + "-" + uuid.uuid4().hex[:8]


def yolo(box: Sequence[int], herniation: bool, columns: int, rows: int) -> list[float]:
    """``[class, cx, cy, w, h]`` normalised to the image (YOLO label format)."""
    x0, y0, x1, y1 = box
    return [
        YOLO_CLASSES[bool(herniation)],
        round((x0 + x1) / 2 / columns, 6),
        round((y0 + y1) / 2 / rows, 6),
        round((x1 - x0) / columns, 6),
        round((y1 - y0) / rows, 6),
    ]


def validate_boxes(boxes: Sequence[ReviewedBox], shape: tuple[int, int, int]) -> None:
    """Each box on an existing slice, inside the image, non-empty; each level at most once; known levels."""
    slices, rows, columns = shape
    seen = set()
    for i, b in enumerate(boxes):
        what = f"box {i + 1} ({b.level})"
        if b.level not in LEVELS:
            raise FeedbackError(f"{what}: unknown disc level {b.level!r}; expected one of {', '.join(LEVELS)}")
        if b.ai_level is not None and b.ai_level not in LEVELS:
            raise FeedbackError(f"{what}: unknown ai_level {b.ai_level!r}; expected one of {', '.join(LEVELS)}")
        if b.level in seen:
            raise FeedbackError(f"{what}: level {b.level} appears twice; give each disc level at most one box")
        seen.add(b.level)
        if not 0 <= b.slice_index < slices:
            raise FeedbackError(f"{what}: slice_index {b.slice_index} is outside the series (0..{slices - 1})")
        x0, y0, x1, y1 = b.box
        if x1 <= x0 or y1 <= y0:
            raise FeedbackError(f"{what}: box {list(b.box)} is empty (need x0 < x1 and y0 < y1)")
        if x0 < 0 or y0 < 0 or x1 > columns or y1 > rows:
            raise FeedbackError(
                f"{what}: box {list(b.box)} lies outside the {columns}x{rows} image "
                f"(x must be within 0..{columns}, y within 0..{rows})"
            )


def _changes(box: ReviewedBox, ai) -> list[str]:
    if ai is None:
        return ["added"]
    out = []
    if box.level != ai.level:
        out.append("relabelled")
    if box.slice_index != ai.slice_index:
        out.append("slice")
    (x0, y0, x1, y1), (a0, b0, a1, b1) = box.box, tuple(ai.box)
    if (x0, y0) != (a0, b0):  # the top-left corner went elsewhere
        out.append("moved")
    if (x1 - x0, y1 - y0) != (a1 - a0, b1 - b0):
        out.append("resized")
    if box.herniation != ai.herniation:
        out.append("herniation")
    return out or ["unchanged"]


def build_record(
    kind: str,
    findings: Findings,
    boxes: Sequence[ReviewedBox],
    reviewer: ReviewerInfo,
    sop_uids: Sequence[str | None],
    *,
    comment: str | None = None,
    now: datetime.datetime | None = None,
) -> dict:
    """The record (not yet stored). ``sop_uids[i]`` is the SOP Instance UID of slice i."""
    if kind not in KINDS:
        raise ValueError(f"unknown feedback kind {kind!r}")
    now = now or datetime.datetime.now(datetime.timezone.utc)
    slices, rows, columns = findings.shape
    validate_boxes(boxes, findings.shape)
    ai_by_level = {d.level: d for d in findings.discs}
    used = set()
    discs = []
    for b in sorted(boxes, key=lambda b: LEVELS.index(b.level)):
        ai = ai_by_level.get(b.ai_level) if b.ai_level else None
        if b.ai_level and ai is None:
            raise FeedbackError(f"{b.level}: ai_level {b.ai_level} names no disc of the AI result")
        if ai is not None:
            if ai.level in used:
                raise FeedbackError(f"{b.level}: the AI disc {ai.level} is claimed by two boxes")
            used.add(ai.level)
        discs.append({
            "level": b.level,
            "slice_index": int(b.slice_index),
            "sop_instance_uid": sop_uids[b.slice_index] if b.slice_index < len(sop_uids) else None,
            "box": [int(v) for v in b.box],
            "yolo": yolo(b.box, b.herniation, columns, rows),
            "herniation": bool(b.herniation),
            "ai": None if ai is None else {
                "level": ai.level, "slice_index": ai.slice_index, "box": list(ai.box),
                "probability": ai.probability, "herniation": ai.herniation,
            },
            "changes": _changes(b, ai),
        })
    deleted = [
        {"level": d.level, "slice_index": d.slice_index, "box": list(d.box), "probability": d.probability,
         "herniation": d.herniation}
        for d in findings.discs if d.level not in used
    ]
    return {
        "schema_version": RECORD_SCHEMA_VERSION,
        "record_id": new_record_id(now),
        "kind": kind,
        "created_at": now.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "study_instance_uid": findings.study_instance_uid,
        "series_instance_uid": findings.series_instance_uid,
        "frame_of_reference_uid": findings.frame_of_reference_uid,
        "source": findings.source,
        "image": {"slices": slices, "rows": rows, "columns": columns, "spacing_mm": list(findings.spacing)},
        "model": {
            "segmentation": findings.models.segmentation,
            "classification": findings.models.classification,
            "version": findings.models.label,
            "operating_threshold": findings.operating_threshold,
        },
        "reviewer": {"login": reviewer.login, "name": reviewer.name, "organization": reviewer.organization,
                     "credential": reviewer.credential},
        "comment": comment,
        "discs": discs,
        "deleted": deleted if kind == "correction" else [],
        "supersedes": [],
        "reviewed_sr": None,
    }


class FeedbackStore:
    """Records of every study in one storage; adding a record applies the supersession rules atomically."""

    def __init__(self, storage: Storage):
        self.storage = storage
        self._lock = threading.Lock()  # one writer per process; a shared backend adds preconditions (GCS issue)

    @staticmethod
    def _prefix(kind: str, study_uid: str) -> str:
        return f"feedback/{KINDS[kind]}/{safe_name(study_uid)}"

    def records(self, study_uid: str) -> list[dict]:
        """Every record of a study, oldest first."""
        out = []
        for kind in KINDS:
            for key in self.storage.list(self._prefix(kind, study_uid)):
                if key.endswith(".json"):
                    out.append(json.loads(self.storage.read_bytes(key)))
        return sorted(out, key=lambda r: r["record_id"])

    def current(self, study_uid: str) -> dict | None:
        """The record in force for a study (None when nobody reviewed it)."""
        records = self.records(study_uid)
        superseded = {s for r in records for s in r["supersedes"]}
        live = [r for r in records if r["record_id"] not in superseded]
        return live[-1] if live else None

    def status(self, study_uid: str) -> dict:
        records = self.records(study_uid)
        current = self.current(study_uid)
        superseded = {s for r in records for s in r["supersedes"]}
        return {
            "current": current,
            "records": [
                {"record_id": r["record_id"], "kind": r["kind"], "created_at": r["created_at"],
                 "reviewer": r["reviewer"]["login"], "superseded": r["record_id"] in superseded}
                for r in records
            ],
        }

    def add(self, record: dict, reviewed_sr: bytes | None = None) -> dict:
        """Store a record built by :func:`build_record` (+ its reviewed SR); returns it as stored."""
        with self._lock:
            study = record["study_instance_uid"]
            records = self.records(study)
            superseded = {s for r in records for s in r["supersedes"]}
            live = [r for r in records if r["record_id"] not in superseded]
            if record["kind"] == "accept":
                corrections = [r for r in live if r["kind"] == "correction"]
                if corrections:
                    raise FeedbackConflict(
                        f"study {study} already has corrections (record {corrections[-1]['record_id']}); an accept "
                        "cannot supersede them: post corrections to change them"
                    )
            record = dict(record, supersedes=[r["record_id"] for r in live])
            key = f"{self._prefix(record['kind'], study)}/{record['record_id']}"
            if reviewed_sr is not None:
                self.storage.write_bytes(f"{key}.sr.dcm", reviewed_sr)
                record["reviewed_sr"] = f"{key}.sr.dcm"
            try:
                self.storage.write_bytes(f"{key}.json", (json.dumps(record, indent=2) + "\n").encode())
            except BaseException:
                if reviewed_sr is not None:
                    self.storage.delete(f"{key}.sr.dcm")
                raise
            return record

    def reviewed_sr(self, record: dict) -> bytes:
        if not record.get("reviewed_sr"):
            raise NotFound(record["record_id"])
        return self.storage.read_bytes(record["reviewed_sr"])

    def studies(self) -> list[str]:
        out = set()
        for kind in KINDS.values():
            for key in self.storage.list(f"feedback/{kind}"):
                out.add(key.split("/")[2])
        return sorted(out)

    def current_records(self) -> Iterator[dict]:
        """The record in force of every reviewed study (what a training-set export reads)."""
        for study in self.studies():
            record = self.current(study)
            if record is not None:
                yield record
