"""Read the discs back from a TID 1500 report written by :mod:`ai_service.encoders.sr` (AI or reviewed).

The reader walks the content tree with plain pydicom (no template classes), pairs the planar-ROI group and the
probability group of each level through their shared tracking UID, and returns one :class:`SRDisc` per level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from ai_service.encoders import codes
from ai_service.encoders.sr import scoord_to_box
from ai_service.encoders.sources import EncodingError
from ai_service.labels import LEVELS

_IMAGING_MEASUREMENTS = ("126010", "DCM")
_MEASUREMENT_GROUP = ("125007", "DCM")
_TRACKING_UID = ("112040", "DCM")
_TRACKING_ID = ("112039", "DCM")
_FINDING = ("121071", "DCM")
_FINDING_SITE = ("363698007", "SCT")
_IMAGE_REGION = ("111030", "DCM")
_REFERENCED_SEGMENT = ("121191", "DCM")


@dataclass(frozen=True)
class SRDisc:
    level: str
    herniation: bool
    probability: float | None
    box: tuple[int, int, int, int]
    sop_instance_uid: str
    frame_number: int | None  # 1-based frame of a multi-frame source, else None
    slice_index: int | None  # filled when the source series is passed to read_sr_findings
    tracking_uid: str
    segment_number: int | None  # SEG segment referenced by the probability group, if any


def _name(item: Dataset) -> tuple[str, str] | None:
    seq = item.get("ConceptNameCodeSequence")
    if not seq:
        return None
    return str(seq[0].CodeValue), str(seq[0].CodingSchemeDesignator)


def _code(code) -> tuple[str, str]:
    return code.value, code.scheme_designator


def _children(item: Dataset) -> list[Dataset]:
    return list(item.get("ContentSequence", []))


def read_sr_findings(sr: Dataset, sources: Sequence[Dataset] | None = None) -> list[SRDisc]:
    """Discs reported in ``sr`` in level order ([] for a report that says no disc was found).

    With ``sources`` (the series the report was made on, as for the encoders) ``slice_index`` is filled in.
    """
    root = _children(sr)
    containers = [i for i in root if _name(i) == _IMAGING_MEASUREMENTS]
    if not containers:
        raise EncodingError("The SR has no Imaging Measurements container, so it is not a TID 1500 report.")
    by_uid: dict[str, dict] = {}
    for group in _children(containers[0]):
        if _name(group) != _MEASUREMENT_GROUP:
            continue
        info: dict = {}
        for item in _children(group):
            name = _name(item)
            if name == _TRACKING_UID:
                info["uid"] = str(item.UID)
            elif name in (_FINDING, _FINDING_SITE):
                code = item.ConceptCodeSequence[0]
                level = codes.level_of_code(code.CodeValue, code.CodingSchemeDesignator)
                if level:
                    info["level"] = level
            elif name == _IMAGE_REGION and item.ValueType == "SCOORD":
                info["box"] = scoord_to_box(item.GraphicData)
                ref = item.ContentSequence[0].ReferencedSOPSequence[0]
                info["sop"] = str(ref.ReferencedSOPInstanceUID)
                frames = ref.get("ReferencedFrameNumber")
                if frames is not None:
                    info["frame"] = int(frames[0]) if isinstance(frames, MultiValue) else int(frames)
            elif name == _code(codes.HERNIATION) and item.ValueType == "CODE":
                info["herniation"] = _code_tuple(item.ConceptCodeSequence[0]) == _code(codes.PRESENT)
            elif name == _code(codes.HERNIATION_PROBABILITY) and item.ValueType == "NUM":
                info["probability"] = float(item.MeasuredValueSequence[0].NumericValue)
            elif name == _REFERENCED_SEGMENT and item.ValueType == "IMAGE":
                ref = item.ReferencedSOPSequence[0]
                info["segment"] = int(ref.ReferencedSegmentNumber)
        if "level" not in info or "uid" not in info:
            continue  # e.g. the "No disc found" group
        merged = by_uid.setdefault(info["uid"], {})
        merged.update({k: v for k, v in info.items() if v is not None})

    index = None
    if sources is not None:
        from ai_service.encoders.sources import check_sources

        index = check_sources(sources)
    discs = []
    for uid, info in by_uid.items():
        if "box" not in info or "herniation" not in info:
            raise EncodingError(f"The SR's {info['level']} disc has no image region or no herniation evaluation.")
        discs.append(
            SRDisc(
                level=info["level"],
                herniation=info["herniation"],
                probability=info.get("probability"),
                box=info["box"],
                sop_instance_uid=info["sop"],
                frame_number=info.get("frame"),
                slice_index=index.index_of(info["sop"], info.get("frame")) if index is not None else None,
                tracking_uid=uid,
                segment_number=info.get("segment"),
            )
        )
    return sorted(discs, key=lambda d: LEVELS.index(d.level))


def _code_tuple(item: Dataset) -> tuple[str, str]:
    return str(item.CodeValue), str(item.CodingSchemeDesignator)
