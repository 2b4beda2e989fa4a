"""Shared fixtures: a small synthetic lumbar MR series (classic, Enhanced, compressed) and its findings."""

from __future__ import annotations

import copy
import datetime
from dataclasses import dataclass

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, generate_uid

from ai_service.findings import DiscFinding, Extent3D, Findings, ModelVersions
from ai_service.labels import LEVELS, disc_label
from ai_service.mr_series import Implementation, SeriesGeometry, mr_series
from tests.storage_support import gcs_emulator, location  # noqa: F401 (fixtures: local and GCS backends)

ROWS = COLS = 64
SLICES = 5


@dataclass
class Case:
    sources: list[Dataset]
    labels: np.ndarray  # (slices, rows, cols) uint8, discs 201..205
    findings: Findings


def make_mr_series(slices: int = SLICES, rows: int = ROWS, cols: int = COLS, seed: int = 0) -> list[Dataset]:
    """Classic single-frame sagittal MR Image Storage series, sorted left-to-right (slice i = index i)."""
    rng = np.random.default_rng(seed)
    now = datetime.datetime(2026, 11, 22, 10, 30, 0)
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    attributes = {
        "SpecificCharacterSet": "ISO_IR 192",
        "PatientName": "Phantom^Lumbar^Ünïcode", "PatientID": "LDH-0001", "IssuerOfPatientID": "LDH-TEST",
        "PatientBirthDate": "19700101", "PatientSex": "F", "PatientAge": "056Y",
        "StudyInstanceUID": generate_uid(), "StudyID": "S1", "AccessionNumber": "ACC123",
        "ReferringPhysicianName": "Ref^Doctor", "StudyDescription": "MR LUMBAR SPINE",
        **{f"{what}Date": date for what in ("Study", "Series", "Content", "Acquisition")},
        **{f"{what}Time": time for what in ("Study", "Series", "Content", "Acquisition")},
        "Modality": "MR", "SeriesInstanceUID": generate_uid(), "SeriesNumber": 3, "SeriesDescription": "SAG T2",
        "BodyPartExamined": "LSPINE", "PatientPosition": "HFS",
        "FrameOfReferenceUID": generate_uid(), "PositionReferenceIndicator": "",
        "Manufacturer": "Phantom Scanner Co", "ManufacturerModelName": "Phantom 1.5T", "DeviceSerialNumber": "PH-1",
        "SoftwareVersions": "1.0",
        "ImageType": ["ORIGINAL", "PRIMARY", "M", "NONE"], "ScanningSequence": "SE", "SequenceVariant": "NONE",
        "ScanOptions": "", "MRAcquisitionType": "2D", "RepetitionTime": 3000.0, "EchoTime": 100.0,
        "EchoTrainLength": 16, "MagneticFieldStrength": 1.5, "SliceThickness": 4.0,
    }
    geometry = SeriesGeometry((0.75, 0.75, 4.0), (-8.0, -24.0, 24.0), (0, 1, 0), (0, 0, -1), (1, 0, 0))
    pixels = rng.integers(0, 1200, size=(slices, rows, cols), dtype=np.uint16)
    return mr_series(pixels, geometry, attributes, [generate_uid() for _ in range(slices)],
                     implementation=Implementation(PYDICOM_IMPLEMENTATION_UID), window=(600, 1200), bits_stored=12)


DISC_ROWS = {level: (6 + 11 * k, 12 + 11 * k) for k, level in enumerate(LEVELS)}  # row ranges [y0, y1)
DISC_COLS = (20, 44)


def make_case(levels=LEVELS, herniated=("L4-L5",), sources=None, seed: int = 0) -> Case:
    """Series + label map with one flat disc per level on slices 1..3 + findings derived from it."""
    sources = sources if sources is not None else make_mr_series(seed=seed)
    n = len(sources) if int(sources[0].get("NumberOfFrames", 1)) == 1 else int(sources[0].NumberOfFrames)
    labels = np.zeros((n, ROWS, COLS), dtype=np.uint8)
    labels[:, 60:, :] = 106  # sacrum: ignored by the encoders
    discs = []
    for k, level in enumerate(LEVELS):
        y0, y1 = DISC_ROWS[level]
        x0, x1 = DISC_COLS
        if level not in levels:
            labels[1:4, y0:y1, x0 + 2 : x1 - 2] = 0
            continue
        labels[1:4, y0:y1, x0:x1] = disc_label(level)
        key = 2
        box = (x0, y0, x1 + (3 if level in herniated else 0), y1)
        if level in herniated:
            labels[key, y0 + 1 : y1 - 1, x1 : x1 + 3] = disc_label(level)
        multiframe = int(sources[0].get("NumberOfFrames", 1)) > 1
        discs.append(
            DiscFinding(
                level=level,
                probability=round(0.91 - 0.13 * k, 4) if level in herniated else round(0.05 + 0.07 * k, 4),
                herniation=level in herniated,
                slice_index=key,
                box=box,
                extent=Extent3D(first_slice=1, last_slice=3, box=box, volume_mm3=3 * (y1 - y0) * (x1 - x0) * 2.25),
                sop_instance_uid=str(sources[0 if multiframe else key].SOPInstanceUID),
                frame_number=key + 1 if multiframe else None,
            )
        )
    first = sources[0]
    findings = Findings(
        models=ModelVersions(segmentation="seg-v3", classification="cls-v7"),
        operating_threshold=0.5,
        discs=discs,
        shape=(n, ROWS, COLS),
        spacing=(0.75, 0.75, 4.0),
        study_instance_uid=str(first.StudyInstanceUID),
        series_instance_uid=str(first.SeriesInstanceUID),
        frame_of_reference_uid=str(first.FrameOfReferenceUID),
        source="dicom",
    )
    return Case(sources=sources, labels=labels, findings=findings)


def to_enhanced(sources: list[Dataset]) -> list[Dataset]:
    """The same series as one Legacy Converted Enhanced MR image (frame i+1 = slice i)."""
    import highdicom as hd

    enhanced = hd.legacy.LegacyConvertedEnhancedMRImage(
        legacy_datasets=[copy.deepcopy(ds) for ds in sources],
        series_instance_uid=generate_uid(),
        series_number=4,
        sop_instance_uid=generate_uid(),
        instance_number=1,
    )
    frames = enhanced.PerFrameFunctionalGroupsSequence
    for i, ds in enumerate(sources):  # frame i+1 must be slice i, as the encoders assume
        position = [float(v) for v in frames[i].PlanePositionSequence[0].ImagePositionPatient]
        assert np.allclose(position, [float(v) for v in ds.ImagePositionPatient])
    return [enhanced]


def to_compressed(sources: list[Dataset], syntax: str = "rle") -> list[Dataset]:
    """The same series, pixel data re-encoded (RLE Lossless or JPEG-LS Lossless)."""
    from pydicom.uid import JPEGLSLossless, RLELossless

    uid = {"rle": RLELossless, "jpegls": JPEGLSLossless}[syntax]
    out = []
    for ds in sources:
        ds = copy.deepcopy(ds)
        ds.compress(uid)
        out.append(ds)
    return out


@pytest.fixture
def settings():
    from ai_service.config import Settings

    return Settings(
        manufacturer="LDH Assist test", device_serial_number="T-42", institution_name="Test Hospital",
        _env_file=None,
    )
