"""Shared fixtures: a small synthetic lumbar MR series (classic, Enhanced, compressed) and its findings."""

from __future__ import annotations

import copy
import datetime
from dataclasses import dataclass

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from ai_service.findings import DiscFinding, Extent3D, Findings, ModelVersions
from ai_service.labels import LEVELS, disc_label

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
    study, series, frame_of_reference = generate_uid(), generate_uid(), generate_uid()
    now = datetime.datetime(2026, 11, 22, 10, 30, 0)
    out = []
    for i in range(slices):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientName = "Phantom^Lumbar^Ünïcode"
        ds.PatientID = "LDH-0001"
        ds.IssuerOfPatientID = "LDH-TEST"
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = "F"
        ds.PatientAge = "056Y"
        ds.StudyInstanceUID = study
        ds.StudyDate = now.strftime("%Y%m%d")
        ds.StudyTime = now.strftime("%H%M%S")
        ds.StudyID = "S1"
        ds.AccessionNumber = "ACC123"
        ds.ReferringPhysicianName = "Ref^Doctor"
        ds.StudyDescription = "MR LUMBAR SPINE"
        ds.Modality = "MR"
        ds.SeriesInstanceUID = series
        ds.SeriesNumber = 3
        ds.SeriesDescription = "SAG T2"
        ds.SeriesDate, ds.SeriesTime = ds.StudyDate, ds.StudyTime
        ds.BodyPartExamined = "LSPINE"
        ds.PatientPosition = "HFS"
        ds.FrameOfReferenceUID = frame_of_reference
        ds.PositionReferenceIndicator = ""
        ds.Manufacturer = "Phantom Scanner Co"
        ds.ManufacturerModelName = "Phantom 1.5T"
        ds.DeviceSerialNumber = "PH-1"
        ds.SoftwareVersions = "1.0"
        ds.InstanceNumber = i + 1
        ds.ContentDate, ds.ContentTime = ds.StudyDate, ds.StudyTime
        ds.AcquisitionDate, ds.AcquisitionTime = ds.StudyDate, ds.StudyTime
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.RepetitionTime = 3000.0
        ds.EchoTime = 100.0
        ds.EchoTrainLength = 16
        ds.MagneticFieldStrength = 1.5
        ds.SliceThickness = 4.0
        ds.SpacingBetweenSlices = 4.0
        ds.PixelSpacing = [0.75, 0.75]
        ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
        ds.ImagePositionPatient = [-8.0 + 4.0 * i, -24.0, 24.0]
        ds.SliceLocation = -8.0 + 4.0 * i
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = rows, cols
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.PixelRepresentation = 0
        ds.WindowCenter, ds.WindowWidth = 600, 1200
        ds.PixelData = rng.integers(0, 1200, size=(rows, cols), dtype=np.uint16).tobytes()
        out.append(ds)
    return out


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
