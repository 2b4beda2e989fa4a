"""Secondary Capture preview: the key slice with burned-in boxes and probabilities, labelled as AI output.

The caller renders the picture (``rgb``: rows x columns x 3, uint8); the encoder adds a banner
"AI OUTPUT - NOT FOR DIAGNOSIS" across the top unless ``label=False`` and wraps it in an SC image of the
source study with BurnedInAnnotation = YES.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from ai_service.config import Settings
from ai_service.encoders import identity
from ai_service.encoders.sources import EncodingError, check_sources
from ai_service.findings import Findings

BANNER = "LDH Assist - AI OUTPUT - NOT FOR DIAGNOSIS"


def _banner(rgb: np.ndarray) -> np.ndarray:
    out = rgb.copy()
    height = max(12, out.shape[0] // 16)
    out[:height] = (out[:height].astype(np.uint16) // 4).astype(np.uint8)
    scale = max(0.25, min(1.0, out.shape[1] / 900))
    cv2.putText(out, BANNER, (4, int(height * 0.75)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 210, 0), 1, cv2.LINE_AA)
    return out


def encode_preview(
    sources: Sequence[Dataset], findings: Findings, rgb: np.ndarray, settings: Settings, *, label: bool = True
) -> Dataset:
    """SC image (RGB) of the rendered preview, in the source study, clearly described as AI output."""
    series = check_sources(sources, findings.shape)
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise EncodingError(f"The preview must be a (rows, columns, 3) uint8 RGB array, not {rgb.dtype} {rgb.shape}.")
    pixels = np.ascontiguousarray(_banner(rgb) if label else rgb)
    src = series.first
    versions = identity.software_versions(findings.models)
    sc = hd.sc.SCImage(
        pixel_array=pixels,
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        study_instance_uid=series.study_instance_uid,
        series_instance_uid=hd.UID(),
        series_number=identity.PREVIEW_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=settings.manufacturer,
        patient_id=src.get("PatientID"),
        patient_name=src.get("PatientName"),
        patient_birth_date=src.get("PatientBirthDate"),
        patient_sex=src.get("PatientSex") or None,
        accession_number=src.get("AccessionNumber"),
        study_id=src.get("StudyID"),
        study_date=src.get("StudyDate"),
        study_time=src.get("StudyTime"),
        referring_physician_name=src.get("ReferringPhysicianName"),
        patient_orientation=_patient_orientation(series),
        transfer_syntax_uid=ExplicitVRLittleEndian,
    )
    identity.stamp_identity(sc, settings, versions, identity.PREVIEW_SERIES_DESCRIPTION)
    identity.copy_patient_study(sc, src)
    sc.BodyPartExamined = src.get("BodyPartExamined") or "LSPINE"
    sc.BurnedInAnnotation = "YES"
    sc.RecognizableVisualFeatures = "NO"
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.ConversionType = "WSD"
    sc.ImageComments = "AI output (LDH Assist, research use, not for diagnosis): boxes and P(herniation) per disc"
    sc.DerivationDescription = f"Rendered by LDH Assist {versions} from series {series.series_instance_uid}"
    key = _key_slice(findings)
    ref = series.slices[key]
    source_item = Dataset()
    source_item.ReferencedSOPClassUID = ref.sop_class_uid
    source_item.ReferencedSOPInstanceUID = ref.sop_instance_uid
    if ref.frame_number is not None:
        source_item.ReferencedFrameNumber = ref.frame_number
    sc.SourceImageSequence = [source_item]
    return sc


def _patient_orientation(series) -> tuple[str, str]:
    """Dominant patient direction of the rows and columns of the source (e.g. sagittal: ("P", "F"))."""
    src = series.first
    if "ImageOrientationPatient" in src:
        iop = [float(v) for v in src.ImageOrientationPatient]
    else:
        group = src.SharedFunctionalGroupsSequence[0]
        if "PlaneOrientationSequence" not in group:
            group = src.PerFrameFunctionalGroupsSequence[0]
        iop = [float(v) for v in group.PlaneOrientationSequence[0].ImageOrientationPatient]
    letters = (("R", "L"), ("A", "P"), ("F", "H"))

    def letter(v):
        axis = int(np.argmax(np.abs(v)))
        return letters[axis][1 if v[axis] > 0 else 0]

    return letter(iop[:3]), letter(iop[3:])


def _key_slice(findings: Findings) -> int:
    """The slice the preview shows: the one holding most key slices (the mid-sagittal one), else the middle."""
    if not findings.discs:
        return findings.shape[0] // 2
    counts: dict[int, int] = {}
    for d in findings.discs:
        counts[d.slice_index] = counts.get(d.slice_index, 0) + 1
    return max(counts, key=lambda k: (counts[k], -abs(k - findings.shape[0] // 2)))
