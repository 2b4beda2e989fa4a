"""Phantom DICOM series on disk for the DICOM node's benchmarks and tests (~132 KB MR instances at 256²)."""

from __future__ import annotations

import copy
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid


def phantom_series(out: Path, seed: int = 7, slices: int = 15, matrix: int = 256) -> list[Path]:
    """One sagittal T2 lumbar phantom series (``slices`` × ``matrix``² MR instances)."""
    from pipelines.phantom import generate_case, write_case
    from pipelines.phantom.profile import DEFAULT

    profile = DEFAULT.with_(slices=(slices, slices), matrix=(matrix, matrix), rectangular_prob=0.0)
    case = generate_case(seed, profile=profile)
    write_case(case, out, formats=("dicom",))
    return sorted((Path(out) / "dicom").glob("*.dcm"))


def replicate(template: list[Path], out: Path, series: int, study_uid: str | None = None) -> list[list[Path]]:
    """``series`` copies of a series with fresh Series/SOP UIDs, all in one study; files per series."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    sources = [pydicom.dcmread(p) for p in template]
    result = []
    for k in range(series):
        series_uid = generate_uid()
        folder = out / f"s{k:03d}"
        folder.mkdir()
        files = []
        for i, src in enumerate(sources):
            ds = copy.copy(src)
            ds.StudyInstanceUID = study_uid
            ds.SeriesInstanceUID = series_uid
            ds.SOPInstanceUID = generate_uid()
            ds.file_meta = copy.copy(src.file_meta)
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            path = folder / f"IM{i:04d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            files.append(path)
        result.append(files)
    return result
