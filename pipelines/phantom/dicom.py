"""Writes a case as a classic single-frame MR Image Storage series (Explicit VR Little Endian).

Every UID, date and protocol value comes from the case seed, so the same seed gives the same bytes; geometry is
the case's own (rows to the feet, columns to posterior, slices to patient right).
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from . import rng as R

IMPLEMENTATION_UID = generate_uid(prefix="1.2.826.0.1.3680043.8.498.", entropy_srcs=["LDH Assist phantom writer"])
IMPLEMENTATION_VERSION = "LDH_PHANTOM_1"


def protocol(seed: int) -> dict:
    """Synthetic but plausible sagittal T2 TSE protocol, study date/time and patient demographics."""
    g = R.stream(seed, "dicom")
    field = float(g.choice([1.5, 3.0]))
    day = _dt.date(2015, 1, 1) + _dt.timedelta(days=int(g.integers(0, 3650)))
    age = int(g.integers(25, 85))
    seconds = int(g.integers(7 * 3600, 19 * 3600))
    return {
        "study_date": day.strftime("%Y%m%d"),
        "study_time": f"{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}",
        "birth_date": _dt.date(day.year - age, int(g.integers(1, 13)), int(g.integers(1, 29))).strftime("%Y%m%d"),
        "age": age,
        "sex": str(g.choice(["F", "M"])),
        "field_strength": field,
        "repetition_time": round(float(g.uniform(2500, 5000)), 1),
        "echo_time": round(float(g.uniform(85, 120)), 2),
        "echo_train_length": int(g.integers(13, 26)),
        "flip_angle": float(g.choice([150.0, 160.0, 180.0])),
        "averages": float(g.choice([1.0, 2.0, 3.0])),
        "pixel_bandwidth": round(float(g.uniform(150, 300)), 1),
        "series_number": int(g.integers(2, 12)),
        "accession": f"A{int(g.integers(10**6, 10**7))}",
    }


def _ds(values) -> list[str]:
    return [f"{float(v):.6f}".rstrip("0").rstrip(".") or "0" for v in values]


def write_series(case, folder: Path, window: tuple[float, float]) -> list[Path]:
    """One IM####.dcm per slice in slice order."""
    t, p = case.truth, case.truth["protocol"]
    folder.mkdir(parents=True, exist_ok=True)
    n, rows, cols = case.image.shape
    sc, sr, ss = case.spacing
    origin = np.asarray(case.origin, float)
    normal = np.array([-1.0, 0.0, 0.0])
    frequency = round(42.577478 * p["field_strength"], 6)
    center, width = window
    paths = []
    for k in range(n):
        ipp = origin + k * ss * normal
        sop = case_uid_for(case, f"sop{k}")
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = IMPLEMENTATION_UID
        meta.ImplementationVersionName = IMPLEMENTATION_VERSION
        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
        ds.InstanceCreationDate, ds.InstanceCreationTime = p["study_date"], p["study_time"]
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, sop
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = p["study_date"]
        ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = p["study_time"]
        ds.AccessionNumber = p["accession"]
        ds.Modality = "MR"
        ds.Manufacturer = "LDH Assist phantom"
        ds.InstitutionName = "Synthetic"
        ds.ReferringPhysicianName = ""
        ds.StationName = "PHANTOM"
        ds.StudyDescription = "LUMBAR SPINE (synthetic phantom)"
        ds.SeriesDescription = "SAG T2 TSE (synthetic phantom)"
        ds.ManufacturerModelName = "ldh-phantom"
        ds.PatientName = f"PHANTOM^{case.case_id}"
        ds.PatientID = t["patient_id"]
        ds.PatientBirthDate = p["birth_date"]
        ds.PatientSex = p["sex"]
        ds.PatientAge = f"{p['age']:03d}Y"
        ds.PatientIdentityRemoved = "NO"
        ds.BodyPartExamined = "LSPINE"
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = ["SK", "OSP"]
        ds.ScanOptions = "SP"
        ds.MRAcquisitionType = "2D"
        ds.SequenceName = "*tse2d1"
        ds.SliceThickness = _ds([t["slice_thickness"]])[0]
        ds.RepetitionTime = _ds([p["repetition_time"]])[0]
        ds.EchoTime = _ds([p["echo_time"]])[0]
        ds.NumberOfAverages = _ds([p["averages"]])[0]
        ds.ImagingFrequency = _ds([frequency])[0]
        ds.ImagedNucleus = "1H"
        ds.EchoNumbers = "1"
        ds.MagneticFieldStrength = _ds([p["field_strength"]])[0]
        ds.SpacingBetweenSlices = _ds([ss])[0]
        ds.EchoTrainLength = str(p["echo_train_length"])
        ds.PixelBandwidth = _ds([p["pixel_bandwidth"]])[0]
        ds.SoftwareVersions = IMPLEMENTATION_VERSION
        ds.ProtocolName = "t2_tse_sag"
        ds.TransmitCoilName = "Body"
        ds.ReceiveCoilName = "Spine"
        ds.AcquisitionMatrix = [0, cols, rows, 0]
        ds.InPlanePhaseEncodingDirection = "ROW"
        ds.FlipAngle = _ds([p["flip_angle"]])[0]
        ds.PatientPosition = "HFS"
        ds.StudyInstanceUID = t["study_instance_uid"]
        ds.SeriesInstanceUID = t["series_instance_uid"]
        ds.StudyID = "1"
        ds.SeriesNumber = str(p["series_number"])
        ds.AcquisitionNumber = "1"
        ds.InstanceNumber = str(k + 1)
        ds.ImagePositionPatient = _ds(ipp)
        ds.ImageOrientationPatient = _ds([0, 1, 0, 0, 0, -1])
        ds.FrameOfReferenceUID = t["frame_of_reference_uid"]
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = _ds([float(ipp @ normal)])[0]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = rows, cols
        ds.PixelSpacing = _ds([sr, sc])
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.WindowCenter = _ds([center])[0]
        ds.WindowWidth = _ds([max(width, 1.0)])[0]
        ds.LossyImageCompression = "00"
        ds.BurnedInAnnotation = "NO"
        ds.ImageComments = "Synthetic phantom, not a patient. Not for clinical use."
        ds.PixelData = np.ascontiguousarray(case.image[k], dtype="<u2").tobytes()
        path = folder / f"IM{k:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def case_uid_for(case, what: str) -> str:
    from .case import case_uid
    return case_uid(case.seed, case.case_id, what)
