"""The source series as the encoders see it: one entry per slice, checked for consistent geometry.

``sources`` is either a list of single-frame images sorted in slice order (index i = slice i) or a list with one
multi-frame (Enhanced / Legacy Converted Enhanced MR) image whose frame i+1 is slice i. Anything else, or a
series whose geometry is inconsistent, raises :class:`EncodingError` with one sentence that says what is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from ai_service.errors import InputError


class EncodingError(InputError):
    """The inputs cannot be encoded into a valid DICOM object (the message says why, in one sentence)."""


@dataclass(frozen=True)
class SliceRef:
    sop_class_uid: str
    sop_instance_uid: str
    frame_number: int | None  # 1-based for a multi-frame source, else None
    position: tuple[float, float, float]


@dataclass(frozen=True)
class SourceSeries:
    datasets: tuple[Dataset, ...]
    slices: tuple[SliceRef, ...]
    rows: int
    columns: int
    study_instance_uid: str
    series_instance_uid: str
    frame_of_reference_uid: str
    multiframe: bool

    @property
    def first(self) -> Dataset:
        return self.datasets[0]

    def index_of(self, sop_instance_uid: str, frame_number: int | None) -> int | None:
        for i, s in enumerate(self.slices):
            if s.sop_instance_uid == sop_instance_uid and (not self.multiframe or s.frame_number == frame_number):
                return i
        return None


_ORIENTATION_TOL = 1e-3
_POSITION_TOL = 1e-3  # mm


def _floats(value, n: int, what: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise EncodingError(f"The source series has an unreadable {what}.") from exc
    if len(out) != n:
        raise EncodingError(f"The source series has a {what} with {len(out)} values instead of {n}.")
    return out


def _frame_geometry(ds: Dataset) -> list[tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]]:
    """(orientation, position, pixel spacing) per frame of a multi-frame image."""
    shared = ds.get("SharedFunctionalGroupsSequence", [Dataset()])[0]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence", [])
    n = int(ds.get("NumberOfFrames", 1))
    if len(per_frame) != n:
        raise EncodingError(
            f"The multi-frame source has {len(per_frame)} per-frame functional groups for {n} frames."
        )
    out = []
    for item in per_frame:
        def pick(seq_kw: str, attr: str, _item=item):
            for group in (_item, shared):
                if seq_kw in group and attr in group[seq_kw][0]:
                    return group[seq_kw][0][attr].value
            raise EncodingError(f"The multi-frame source lacks {attr} in its functional groups.")

        out.append(
            (
                _floats(pick("PlaneOrientationSequence", "ImageOrientationPatient"), 6, "image orientation"),
                _floats(pick("PlanePositionSequence", "ImagePositionPatient"), 3, "image position"),
                _floats(pick("PixelMeasuresSequence", "PixelSpacing"), 2, "pixel spacing"),
            )
        )
    return out


def check_sources(sources: Sequence[Dataset], shape: tuple[int, int, int] | None = None) -> SourceSeries:
    """Validate the source series and describe it slice by slice; ``shape`` = (slices, rows, columns) expected."""
    sources = list(sources)
    if not sources:
        raise EncodingError("The source series is empty.")
    multiframe = len(sources) == 1 and int(sources[0].get("NumberOfFrames", 1)) > 1
    if not multiframe and any(int(ds.get("NumberOfFrames", 1)) > 1 for ds in sources):
        raise EncodingError("The source series mixes multi-frame and single-frame images or has several multi-frame images.")

    for kw in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "SOPClassUID", "SOPInstanceUID"):
        missing = [i for i, ds in enumerate(sources) if not ds.get(kw)]
        if missing:
            raise EncodingError(f"Source image {missing[0]} has no {kw}.")
    for kw in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "Rows", "Columns"):
        values = {str(ds.get(kw)) for ds in sources}
        if len(values) > 1:
            raise EncodingError(f"The source images disagree on {kw} ({', '.join(sorted(values))}).")
    if len({ds.SOPInstanceUID for ds in sources}) != len(sources):
        raise EncodingError("The source series contains the same SOP Instance UID twice.")

    if multiframe:
        geometry = _frame_geometry(sources[0])
        slices_src = [(sources[0], i + 1) for i in range(len(geometry))]
    else:
        geometry = []
        for i, ds in enumerate(sources):
            for kw in ("ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing"):
                if kw not in ds:
                    raise EncodingError(f"Source image {i} has no {kw}, so its geometry is unknown.")
            geometry.append(
                (
                    _floats(ds.ImageOrientationPatient, 6, "image orientation"),
                    _floats(ds.ImagePositionPatient, 3, "image position"),
                    _floats(ds.PixelSpacing, 2, "pixel spacing"),
                )
            )
        slices_src = [(ds, None) for ds in sources]

    orientation0 = np.asarray(geometry[0][0])
    spacing0 = np.asarray(geometry[0][2])
    for i, (orientation, _, spacing) in enumerate(geometry):
        if not np.allclose(orientation, orientation0, atol=_ORIENTATION_TOL):
            raise EncodingError(f"Slice {i} of the source series has a different orientation than slice 0.")
        if not np.allclose(spacing, spacing0, rtol=1e-3):
            raise EncodingError(f"Slice {i} of the source series has a different pixel spacing than slice 0.")
    normal = np.cross(orientation0[:3], orientation0[3:])
    if np.linalg.norm(normal) < 0.5:
        raise EncodingError("The source image orientation does not define two orthogonal unit vectors.")
    distances = np.array([float(np.dot(normal, g[1])) for g in geometry])
    if len(distances) > 1:
        steps = np.diff(distances)
        if np.any(np.abs(steps) < _POSITION_TOL):
            raise EncodingError("Two slices of the source series lie at the same position.")
        if not (np.all(steps > 0) or np.all(steps < 0)):
            raise EncodingError("The source slices are not sorted along the slice normal.")

    rows, columns = int(sources[0].Rows), int(sources[0].Columns)
    if shape is not None:
        expected = (len(geometry), rows, columns)
        if tuple(int(v) for v in shape) != expected:
            raise EncodingError(
                f"The findings describe a {tuple(shape)} grid but the source series is {expected} (slices, rows, columns)."
            )
    slices = tuple(
        SliceRef(str(ds.SOPClassUID), str(ds.SOPInstanceUID), frame, tuple(g[1]))
        for (ds, frame), g in zip(slices_src, geometry)
    )
    return SourceSeries(
        datasets=tuple(sources),
        slices=slices,
        rows=rows,
        columns=columns,
        study_instance_uid=str(sources[0].StudyInstanceUID),
        series_instance_uid=str(sources[0].SeriesInstanceUID),
        frame_of_reference_uid=str(sources[0].FrameOfReferenceUID),
        multiframe=multiframe,
    )


def check_box(box: Sequence[int], series: SourceSeries, what: str) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = (int(v) for v in box)
    if not (0 <= x0 < x1 <= series.columns and 0 <= y0 < y1 <= series.rows):
        raise EncodingError(
            f"The box {list(box)} of {what} does not fit in the {series.columns}x{series.rows} source image."
        )
    return x0, y0, x1, y1


def check_slice(index: int, series: SourceSeries, what: str) -> SliceRef:
    if not 0 <= int(index) < len(series.slices):
        raise EncodingError(f"The slice index {index} of {what} is outside the {len(series.slices)}-slice source series.")
    return series.slices[int(index)]


def check_findings_match(findings, series: SourceSeries) -> None:
    """The findings were made on this series (UIDs, key slices and boxes agree)."""
    for uid, actual, what in (
        (findings.study_instance_uid, series.study_instance_uid, "StudyInstanceUID"),
        (findings.series_instance_uid, series.series_instance_uid, "SeriesInstanceUID"),
        (findings.frame_of_reference_uid, series.frame_of_reference_uid, "FrameOfReferenceUID"),
    ):
        if uid and uid != actual:
            raise EncodingError(f"The findings were made on {what} {uid} but the source series has {actual}.")
    for disc in findings.discs:
        ref = check_slice(disc.slice_index, series, disc.level)
        check_box(disc.box, series, disc.level)
        if disc.sop_instance_uid and disc.sop_instance_uid != ref.sop_instance_uid:
            raise EncodingError(
                f"The key slice {disc.slice_index} of {disc.level} is instance {ref.sop_instance_uid} in the source "
                f"series, not {disc.sop_instance_uid} as the findings say."
            )
        if series.multiframe and disc.frame_number and disc.frame_number != ref.frame_number:
            raise EncodingError(
                f"The key slice {disc.slice_index} of {disc.level} is frame {ref.frame_number}, "
                f"not frame {disc.frame_number} as the findings say."
            )
