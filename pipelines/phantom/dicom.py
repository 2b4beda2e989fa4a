"""Writes a case as a classic single-frame MR Image Storage series (Explicit VR Little Endian).

Every UID, date and protocol value comes from the case seed, so the same seed gives the same bytes; geometry is
the case's own (rows to the feet, columns to posterior, slices to patient right).
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from pydicom.uid import generate_uid

from ai_service.mr_series import Implementation, SeriesGeometry, ds_str, mr_series

from . import rng as R

IMPLEMENTATION = Implementation(
    generate_uid(prefix="1.2.826.0.1.3680043.8.498.", entropy_srcs=["LDH Assist phantom writer"]), "LDH_PHANTOM_1")


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


def write_series(case, folder: Path, window: tuple[float, float]) -> list[Path]:
    """One IM####.dcm per slice in slice order."""
    t, p = case.truth, case.truth["protocol"]
    folder.mkdir(parents=True, exist_ok=True)
    sc, sr, ss = case.spacing
    geometry = SeriesGeometry((sc, sr, ss), tuple(case.origin), (0.0, 1.0, 0.0), (0.0, 0.0, -1.0), (-1.0, 0.0, 0.0))
    attributes = {
        "SpecificCharacterSet": "ISO_IR 100",
        "ImageType": ["ORIGINAL", "PRIMARY", "OTHER"],
        "InstanceCreationDate": p["study_date"], "InstanceCreationTime": p["study_time"],
        **{f"{what}Date": p["study_date"] for what in ("Study", "Series", "Acquisition", "Content")},
        **{f"{what}Time": p["study_time"] for what in ("Study", "Series", "Acquisition", "Content")},
        "AccessionNumber": p["accession"],
        "Modality": "MR",
        "Manufacturer": "LDH Assist phantom",
        "InstitutionName": "Synthetic",
        "ReferringPhysicianName": "",
        "StationName": "PHANTOM",
        "StudyDescription": "LUMBAR SPINE (synthetic phantom)",
        "SeriesDescription": "SAG T2 TSE (synthetic phantom)",
        "ManufacturerModelName": "ldh-phantom",
        "PatientName": f"PHANTOM^{case.case_id}",
        "PatientID": t["patient_id"],
        "PatientBirthDate": p["birth_date"],
        "PatientSex": p["sex"],
        "PatientAge": f"{p['age']:03d}Y",
        "PatientIdentityRemoved": "NO",
        "BodyPartExamined": "LSPINE",
        "ScanningSequence": "SE",
        "SequenceVariant": ["SK", "OSP"],
        "ScanOptions": "SP",
        "MRAcquisitionType": "2D",
        "SequenceName": "*tse2d1",
        "SliceThickness": ds_str(t["slice_thickness"]),
        "RepetitionTime": ds_str(p["repetition_time"]),
        "EchoTime": ds_str(p["echo_time"]),
        "NumberOfAverages": ds_str(p["averages"]),
        "ImagingFrequency": ds_str(round(42.577478 * p["field_strength"], 6)),
        "ImagedNucleus": "1H",
        "EchoNumbers": "1",
        "MagneticFieldStrength": ds_str(p["field_strength"]),
        "EchoTrainLength": str(p["echo_train_length"]),
        "PixelBandwidth": ds_str(p["pixel_bandwidth"]),
        "SoftwareVersions": IMPLEMENTATION.version_name,
        "ProtocolName": "t2_tse_sag",
        "TransmitCoilName": "Body",
        "ReceiveCoilName": "Spine",
        "AcquisitionMatrix": [0, case.image.shape[2], case.image.shape[1], 0],
        "InPlanePhaseEncodingDirection": "ROW",
        "FlipAngle": ds_str(p["flip_angle"]),
        "PatientPosition": "HFS",
        "StudyInstanceUID": t["study_instance_uid"],
        "SeriesInstanceUID": t["series_instance_uid"],
        "StudyID": "1",
        "SeriesNumber": str(p["series_number"]),
        "AcquisitionNumber": "1",
        "FrameOfReferenceUID": t["frame_of_reference_uid"],
        "PositionReferenceIndicator": "",
        "ImageComments": "Synthetic phantom, not a patient. Not for clinical use.",
    }
    sops = [case_uid_for(case, f"sop{k}") for k in range(case.image.shape[0])]
    paths = []
    for k, ds in enumerate(mr_series(case.image, geometry, attributes, sops, implementation=IMPLEMENTATION,
                                     window=window, bits_stored=12)):
        path = folder / f"IM{k:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def case_uid_for(case, what: str) -> str:
    from .case import case_uid
    return case_uid(case.seed, case.case_id, what)
