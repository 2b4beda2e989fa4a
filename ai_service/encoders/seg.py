"""DICOM Segmentation: one binary segment per reported disc level, on the source grid.

Choices (see CONFORMANCE.md): a segment is written for each disc in ``findings.discs`` whose label (201..205)
has at least one voxel in the label map; frames without any disc voxel are omitted; when no segment remains
the encoder returns ``None`` (no SEG is emitted, the SR says that no disc was found).
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from ai_service.config import Settings
from ai_service.encoders import codes, identity
from ai_service.encoders.sources import EncodingError, check_findings_match, check_sources
from ai_service.findings import Findings
from ai_service.labels import LEVELS, disc_label


def segment_label(level: str) -> str:
    return f"{level} disc"


def segment_tracking_id(level: str) -> str:
    return f"{level} disc"


def encode_seg(
    sources: Sequence[Dataset], label_map: np.ndarray, findings: Findings, settings: Settings
) -> Dataset | None:
    """Binary SEG of the reported discs, or None when no reported disc has a voxel in ``label_map``."""
    series = check_sources(sources, findings.shape)
    label_map = np.asarray(label_map)
    expected = (len(series.slices), series.rows, series.columns)
    if label_map.shape != expected:
        raise EncodingError(f"The label map is {label_map.shape} but the source series is {expected}.")
    check_findings_match(findings, series)

    reported = {d.level for d in findings.discs}
    segment_map = np.zeros(label_map.shape, dtype=np.uint8)
    descriptions: list[hd.seg.SegmentDescription] = []
    algorithm = hd.AlgorithmIdentificationSequence(
        name=identity.SEG_ALGORITHM_NAME,
        family=codes.ALGORITHM_FAMILY,
        version=findings.models.segmentation,
    )
    for level in LEVELS:
        if level not in reported:
            continue
        mask = label_map == disc_label(level)
        if not mask.any():
            continue
        number = len(descriptions) + 1
        segment_map[mask] = number
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=segment_label(level),
                segmented_property_category=codes.ANATOMICAL_STRUCTURE,
                segmented_property_type=codes.DISC[level],
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
                tracking_uid=hd.UID(),
                tracking_id=segment_tracking_id(level),
                anatomic_regions=[codes.LUMBAR_SPINE],
            )
        )
    if not descriptions:
        return None

    versions = identity.software_versions(findings.models)
    seg = hd.seg.Segmentation(
        source_images=list(series.datasets),
        pixel_array=segment_map,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=identity.SEG_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=settings.manufacturer,
        manufacturer_model_name=identity.MODEL_NAME,
        software_versions=versions,
        device_serial_number=settings.device_serial_number,
        content_label="DISCS",
        content_description="AI segmentation of lumbar discs L1-L2 to L5-S1",
        content_creator_name=None,
        transfer_syntax_uid=ExplicitVRLittleEndian,
        omit_empty_frames=True,
    )
    identity.stamp_identity(seg, settings, versions, identity.SEG_SERIES_DESCRIPTION)
    identity.copy_patient_study(seg, series.first)
    return seg


def segments_by_level(seg: Dataset) -> dict[str, tuple[int, str | None]]:
    """level -> (segment number, tracking UID) for a SEG written by :func:`encode_seg`."""
    out: dict[str, tuple[int, str | None]] = {}
    for item in seg.get("SegmentSequence", []):
        code = item.SegmentedPropertyTypeCodeSequence[0]
        level = codes.level_of_code(code.CodeValue, code.CodingSchemeDesignator)
        if level is not None:
            out[level] = (int(item.SegmentNumber), item.get("TrackingUID"))
    return out
