"""Turn a non-DICOM upload (MHA / NIfTI volume, JPG/PNG slices) into a proper DICOM MR Image series.

Everything downstream (inbox, jobs, inference, SEG/SR encoders, feedback) then handles one kind of input.
Geometry comes from the volume: MHA/NIfTI headers give spacing, origin and direction; JPG/PNG slices get the
stated default spacing (``LDH_DEFAULT_PIXEL_SPACING_MM``, ``LDH_DEFAULT_SLICE_SPACING_MM`` or the upload form's
fields) and the assumed sagittal orientation of :func:`ai_service.volume.load_image_slices`.

Pixels: integer volumes within 0…65535 are stored unchanged as 16-bit unsigned; anything else (floats,
negatives) is mapped linearly onto 0…4095 (MR intensities have no absolute unit, so nothing is lost for the
models, and the series stays a plain MR image without a Modality LUT). The series is new (fresh Study, Series
and Frame of Reference UIDs), marked DERIVED, with the conversion stated in ImageComments and
DerivationDescription. Slices are written in the volume's slice order with ImagePositionPatient along the
volume's slice direction.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, generate_uid

from ai_service import __version__
from ai_service.config import Settings
from ai_service.mr_series import Implementation, SeriesGeometry, ds_str, mr_series
from ai_service.volume import Volume

KIND_NAMES = {"mha": "MHA volume", "nifti": "NIfTI volume", "images": "JPG/PNG slices"}
UPLOAD_SERIES_NUMBER = 1


def _pixels(array: np.ndarray) -> tuple[np.ndarray, str]:
    """(uint16 pixels, note on how they were obtained)."""
    finite = np.isfinite(array)
    if not finite.all():
        array = np.where(finite, array, 0.0)
    lo, hi = float(array.min()), float(array.max())
    integral = np.array_equal(array, np.round(array))
    if integral and lo >= 0 and hi <= 65535:
        return array.astype(np.uint16), "pixel values unchanged"
    scale = 4095.0 / (hi - lo) if hi > lo else 0.0
    return np.round((array - lo) * scale).astype(np.uint16), f"intensities mapped linearly from [{lo:g}, {hi:g}] to [0, 4095]"


def volume_to_mr_series(
    volume: Volume,
    settings: Settings,
    *,
    original_name: str = "upload",
    patient_name: str = "Anonymous^Upload",
    patient_id: str | None = None,
    study_description: str = "Uploaded lumbar spine MRI",
) -> list[Dataset]:
    """One MR Image Storage dataset per slice of ``volume`` (slice order kept), ready to save as Part 10."""
    if volume.kind == "dicom":
        raise ValueError("the volume is DICOM already; store its own instances instead")
    pixels, pixel_note = _pixels(volume.array)
    direction = np.asarray(volume.direction, dtype=float).reshape(3, 3)
    sx, sy, sz = (float(v) for v in volume.spacing)
    geometry = SeriesGeometry((sx, sy, sz), tuple(volume.origin), *(tuple(direction[:, i]) for i in range(3)))
    now = datetime.datetime.now(datetime.timezone.utc)
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    study_uid = generate_uid()
    kind = KIND_NAMES.get(volume.kind, volume.kind)
    spacing_note = (
        f"pixel spacing {sx:g} mm and slice spacing {sz:g} mm are the stated defaults (JPG/PNG carry no geometry)"
        if volume.kind == "images"
        else "geometry from the file header"
    )
    comments = f"Converted by LDH Assist {__version__} from {kind} '{original_name[:64]}': {spacing_note}; {pixel_note}."
    lo, hi = np.percentile(pixels[:, ::2, ::2], [0.5, 99.5])
    attributes = {
        "SpecificCharacterSet": "ISO_IR 192",
        "ImageType": ["DERIVED", "SECONDARY", "OTHER"],
        "InstanceCreationDate": date, "InstanceCreationTime": time,
        **{f"{what}Date": date for what in ("Study", "Series", "Content")},
        **{f"{what}Time": time for what in ("Study", "Series", "Content")},
        "AccessionNumber": "",
        "Modality": "MR",
        "Manufacturer": "",
        "ReferringPhysicianName": "",
        "StudyDescription": study_description,
        "SeriesDescription": f"SAG (uploaded {kind})",
        "DerivationDescription": f"converted from {kind} by LDH Assist",
        "PatientName": patient_name,
        "PatientID": patient_id or f"LDH-UPLOAD-{study_uid[-12:]}",
        "PatientBirthDate": "",
        "PatientSex": "",
        "BodyPartExamined": "LSPINE",
        "PatientPosition": "",  # type 2: unknown for a converted upload
        "ScanningSequence": "RM",  # research mode: the acquisition is unknown
        "SequenceVariant": "NONE",
        "ScanOptions": "",
        "MRAcquisitionType": "2D",
        "EchoTime": "",
        "RepetitionTime": "",
        "EchoTrainLength": "",
        "MagneticFieldStrength": "",
        "SliceThickness": ds_str(sz),
        "StudyInstanceUID": study_uid,
        "SeriesInstanceUID": generate_uid(),
        "StudyID": "UPLOAD",
        "SeriesNumber": UPLOAD_SERIES_NUMBER,
        "FrameOfReferenceUID": generate_uid(),
        "PositionReferenceIndicator": "",
        "ImageComments": comments[:10240],
    }
    sops = [generate_uid() for _ in range(volume.shape[0])]
    return mr_series(pixels, geometry, attributes, sops, implementation=Implementation(PYDICOM_IMPLEMENTATION_UID),
                     window=((lo + hi) / 2.0, float(hi - lo)))


def save_series(datasets: list[Dataset], folder: Path) -> list[Path]:
    """Write each dataset as ``<SOPInstanceUID>.dcm`` (Part 10) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in datasets:
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
