"""TID 1500 Measurement Reports (Comprehensive 3D SR): the AI report and the radiologist-reviewed report.

Layout (why: OHIF 3.13 hydrates a measurement group as an editable RectangleROI only when the group has a
SCOORD region and *no* NUM; see CONFORMANCE.md). For every disc level, two measurement groups share one
Tracking Unique Identifier (the tracked finding = that disc; it is also the SEG segment's Tracking UID):

1. TID 1410 planar ROI group: tracking id/UID, finding = the disc (CID 7604), finding site = the level
   (CID 1003), the key-slice box as a closed 5-point SCOORD POLYLINE selected from
   the key image (frame), and the qualitative evaluation "Lumbar disc herniation" = Present / Absent.
   No NUM, so OHIF hydrates it as a rectangle.
2. The probability group, holding the NUM "Probability of lumbar disc herniation" (UCUM "1"):
   TID 1411 volumetric ROI group referencing the disc's SEG segment when a SEG is given, else a TID 1501
   group without ROI. OHIF cannot hydrate it (no SCOORD); it skips that group and merges its NUM into the
   disc's read-only measurement through the shared tracking UID.

Box convention: ``box = [x0, y0, x1, y1]`` are pixel *edges* (columns x0..x1-1, rows y0..y1-1). DICOM SCOORD
image coordinates put (0, 0) at the top-left corner of the top-left pixel, column first, so pixel edges are
SCOORD coordinates unchanged: the polyline is (x0,y0) (x1,y0) (x1,y1) (x0,y1) (x0,y0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes as dcm_codes

from ai_service.config import Settings
from ai_service.encoders import codes, identity
from ai_service.encoders.seg import segments_by_level
from ai_service.encoders.sources import (
    EncodingError,
    SourceSeries,
    check_box,
    check_findings_match,
    check_slice,
    check_sources,
)
from ai_service.findings import Findings
from ai_service.labels import LEVELS


@dataclass(frozen=True)
class Reviewer:
    """The radiologist who reviewed the AI report."""

    name: str  # DICOM person name, e.g. "Doe^Jane"
    id: str  # login / staff identifier
    organization: str | None = None


@dataclass(frozen=True)
class ReviewedDisc:
    """One disc as the radiologist left it (box in pixel-edge coordinates on slice ``slice_index``)."""

    level: str
    slice_index: int
    box: tuple[int, int, int, int]
    herniation: bool
    probability: float | None = None  # the AI's P(herniation) when the reviewer kept it, else None

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise EncodingError(f"The reviewed disc level {self.level!r} is not one of {', '.join(LEVELS)}.")
        x0, y0, x1, y1 = self.box
        if x1 <= x0 or y1 <= y0:
            raise EncodingError(f"The reviewed box {list(self.box)} of {self.level} is empty.")
        if self.probability is not None and not 0.0 <= self.probability <= 1.0:
            raise EncodingError(f"The probability {self.probability} of {self.level} is outside [0, 1].")


@dataclass(frozen=True)
class _Entry:
    level: str
    slice_index: int
    box: tuple[int, int, int, int]
    herniation: bool
    probability: float | None
    tracking_uid: str


def box_to_scoord(box: Sequence[int]) -> np.ndarray:
    """Closed 5-point polyline (column, row) of a pixel-edge box, in DICOM SCOORD image coordinates."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=np.float32)


def scoord_to_box(points: Sequence[float]) -> tuple[int, int, int, int]:
    """Inverse of :func:`box_to_scoord` (flat GraphicData or (n, 2) array); rounds to whole pixel edges."""
    pts = np.asarray(points, dtype=float).reshape(-1, 2)
    x0, y0 = np.rint(pts.min(axis=0)).astype(int)
    x1, y1 = np.rint(pts.max(axis=0)).astype(int)
    return int(x0), int(y0), int(x1), int(y1)


def _tracking(entry: _Entry) -> hd.sr.TrackingIdentifier:
    return hd.sr.TrackingIdentifier(uid=entry.tracking_uid, identifier=f"{entry.level} disc")


def _groups(
    entries: Sequence[_Entry],
    series: SourceSeries,
    seg: Dataset | None,
    not_analysable: str | None = None,
) -> list:
    if not_analysable:
        return [
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(),
                                                             identifier=f"Not analysable: {not_analysable}"),
                finding_type=codes.REPORTABLE_DISC,
                finding_sites=[hd.sr.FindingSite(codes.LUMBAR_SPINE)],
                qualitative_evaluations=[hd.sr.QualitativeEvaluation(codes.ANALYSABLE, codes.NO)],
            )
        ]
    if not entries:
        return [
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="No disc found"),
                finding_type=codes.REPORTABLE_DISC,
                finding_sites=[hd.sr.FindingSite(codes.LUMBAR_SPINE)],
                qualitative_evaluations=[hd.sr.QualitativeEvaluation(codes.DISC_DETECTION, codes.ABSENT)],
            )
        ]
    segments = segments_by_level(seg) if seg is not None else {}
    groups: list = []
    for e in entries:
        ref = series.slices[e.slice_index]
        frames = [ref.frame_number] if series.multiframe else None
        region = hd.sr.ImageRegion(
            graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
            graphic_data=box_to_scoord(e.box),
            source_image=hd.sr.SourceImageForRegion(ref.sop_class_uid, ref.sop_instance_uid, frames),
        )
        common = dict(
            tracking_identifier=_tracking(e),
            finding_type=codes.DISC[e.level],
            finding_sites=[hd.sr.FindingSite(codes.DISC_LEVEL[e.level])],
        )
        groups.append(
            hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                referenced_region=region,
                qualitative_evaluations=[
                    hd.sr.QualitativeEvaluation(codes.HERNIATION, codes.PRESENT if e.herniation else codes.ABSENT)
                ],
                **common,
            )
        )
        if e.probability is None:
            continue
        measurement = hd.sr.Measurement(
            name=codes.HERNIATION_PROBABILITY, value=float(e.probability), unit=codes.UNIT_PROBABILITY
        )
        if e.level in segments:
            groups.append(
                hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                    referenced_segment=hd.sr.ReferencedSegment(
                        sop_class_uid=seg.SOPClassUID,
                        sop_instance_uid=seg.SOPInstanceUID,
                        segment_number=segments[e.level][0],
                        source_series=hd.sr.SourceSeriesForSegmentation(series.series_instance_uid),
                    ),
                    measurements=[measurement],
                    **common,
                )
            )
        else:
            groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(measurements=[measurement], **common))
    return groups


def _fix_code_meanings(item: Dataset) -> None:
    for child in item.get("ContentSequence", []):
        for code in child.get("ConceptNameCodeSequence", []):
            meaning = codes.TEMPLATE_CODE_MEANINGS.get((code.CodeValue, code.CodingSchemeDesignator))
            if meaning:
                code.CodeMeaning = meaning
        _fix_code_meanings(child)


def _device_observer(settings: Settings, versions: str) -> hd.sr.ObserverContext:
    return hd.sr.ObserverContext(
        observer_type=dcm_codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=identity.device_uid(settings),
            name=f"{identity.ALGORITHM_NAME} {versions}",
            manufacturer_name=settings.manufacturer,
            model_name=identity.MODEL_NAME,
            serial_number=settings.device_serial_number,
        ),
    )


def _document(
    series: SourceSeries,
    entries: Sequence[_Entry],
    settings: Settings,
    versions: str,
    observation_context: hd.sr.ObservationContext,
    seg: Dataset | None,
    description: str,
    series_number: int,
    not_analysable: str | None = None,
    **sr_kwargs,
) -> Dataset:
    report = hd.sr.MeasurementReport(
        observation_context=observation_context,
        procedure_reported=codes.PROCEDURE_REPORTED,
        imaging_measurements=_groups(entries, series, seg, not_analysable),
        title=codes.REPORT_TITLE,
    )
    _fix_code_meanings(report[0])
    evidence = list(series.datasets) + ([seg] if seg is not None else [])
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=report[0],
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=settings.manufacturer,
        institution_name=settings.institution_name,
        **sr_kwargs,
    )
    identity.stamp_identity(sr, settings, versions, description)
    identity.copy_patient_study(sr, series.first)
    return sr


def _check_seg(seg: Dataset, series: SourceSeries) -> None:
    if str(seg.get("StudyInstanceUID")) != series.study_instance_uid:
        raise EncodingError("The SEG belongs to another study than the source series.")
    if str(seg.get("FrameOfReferenceUID")) != series.frame_of_reference_uid:
        raise EncodingError("The SEG has another frame of reference than the source series.")


def encode_sr(
    sources: Sequence[Dataset], findings: Findings, settings: Settings, seg: Dataset | None = None
) -> Dataset:
    """The AI's TID 1500 report of ``findings`` (device observer, unverified), referencing ``seg`` if given."""
    series = check_sources(sources, findings.shape)
    check_findings_match(findings, series)
    if seg is not None:
        _check_seg(seg, series)
    segments = segments_by_level(seg) if seg is not None else {}
    entries = []
    for disc in sorted(findings.discs, key=lambda d: LEVELS.index(d.level)):
        uid = segments.get(disc.level, (None, None))[1] or hd.UID()
        entries.append(
            _Entry(disc.level, disc.slice_index, tuple(disc.box), disc.herniation, disc.probability, str(uid))
        )
    if len({e.level for e in entries}) != len(entries):
        raise EncodingError("The findings report the same disc level twice.")
    versions = identity.software_versions(findings.models)
    return _document(
        series,
        entries,
        settings,
        versions,
        hd.sr.ObservationContext(observer_device_context=_device_observer(settings, versions)),
        seg,
        identity.SR_SERIES_DESCRIPTION,
        identity.SR_SERIES_NUMBER,
        not_analysable=findings.not_analysable,
        is_complete=True,
        is_final=False,
        is_verified=False,
    )


def encode_reviewed_sr(
    sources: Sequence[Dataset],
    ai_sr: Dataset,
    corrections: Sequence[ReviewedDisc],
    reviewer: Reviewer,
    settings: Settings,
) -> Dataset:
    """A new, VERIFIED TID 1500 report of the radiologist's corrected discs, succeeding ``ai_sr``.

    Levels the AI also reported keep the AI report's tracking UIDs (same tracked finding); the corrected box,
    slice and herniation evaluation replace the AI's. The person observer is the reviewer, the device observer
    the algorithm that made the AI report.
    """
    from ai_service.encoders.sr_reader import read_sr_findings

    series = check_sources(sources)
    if str(ai_sr.get("StudyInstanceUID")) != series.study_instance_uid:
        raise EncodingError("The AI report belongs to another study than the source series.")
    ai_discs = {d.level: d for d in read_sr_findings(ai_sr)}
    entries = []
    for c in sorted(corrections, key=lambda c: LEVELS.index(c.level)):
        check_slice(c.slice_index, series, c.level)
        box = check_box(c.box, series, c.level)
        uid = ai_discs[c.level].tracking_uid if c.level in ai_discs else hd.UID()
        entries.append(_Entry(c.level, int(c.slice_index), box, bool(c.herniation), c.probability, str(uid)))
    if len({e.level for e in entries}) != len(entries):
        raise EncodingError("The corrections list the same disc level twice.")
    versions = str(ai_sr.get("SoftwareVersions", "unknown"))
    if not isinstance(ai_sr.get("SoftwareVersions"), str) and ai_sr.get("SoftwareVersions") is not None:
        versions = "\\".join(ai_sr.SoftwareVersions)
    person = hd.sr.ObserverContext(
        observer_type=dcm_codes.DCM.Person,
        observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
            name=reviewer.name, login_name=reviewer.id, organization_name=reviewer.organization
        ),
    )
    context = hd.sr.ObservationContext(
        observer_person_context=person, observer_device_context=_device_observer(settings, versions)
    )
    organization = reviewer.organization or settings.institution_name or "Unknown"
    return _document(
        series,
        entries,
        settings,
        versions,
        context,
        None,
        identity.REVIEWED_SR_SERIES_DESCRIPTION,
        identity.REVIEWED_SR_SERIES_NUMBER,
        is_complete=True,
        is_final=True,
        is_verified=True,
        verifying_observer_name=reviewer.name,
        verifying_organization=organization,
        previous_versions=[ai_sr],
    )
