"""Spec of the DICOM encoders (SEG, TID 1500 SR, reviewed SR, SC preview) without external tools."""

from __future__ import annotations

import copy

import highdicom as hd
import numpy as np
import pytest
from pydicom.uid import SegmentationStorage

from ai_service.encoders import (
    EncodingError,
    ReviewedDisc,
    Reviewer,
    encode_preview,
    encode_reviewed_sr,
    encode_seg,
    encode_sr,
    read_sr_findings,
)
from ai_service.encoders import codes
from ai_service.encoders.identity import PATIENT_STUDY_KEYWORDS
from ai_service.encoders.sr import box_to_scoord, scoord_to_box
from ai_service.labels import LEVELS

from conftest import make_case, make_mr_series, to_compressed, to_enhanced

COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"


def _groups(sr):
    container = next(i for i in sr.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "126010")
    return list(container.ContentSequence)


def _items(group, value_type):
    return [i for i in group.ContentSequence if i.ValueType == value_type]


@pytest.fixture(scope="module")
def settings_m():
    from ai_service.config import Settings

    return Settings(manufacturer="LDH Assist test", device_serial_number="T-42", institution_name="Test Hospital",
                    _env_file=None)


SOURCES = {
    "classic": lambda: make_mr_series(),
    "enhanced": lambda: to_enhanced(make_mr_series()),
    "rle": lambda: to_compressed(make_mr_series(), "rle"),
    "jpegls": lambda: to_compressed(make_mr_series(), "jpegls"),
}


@pytest.fixture(scope="module", params=sorted(SOURCES))
def encoded(request, settings_m):
    case = make_case(sources=SOURCES[request.param]())
    seg = encode_seg(case.sources, case.labels, case.findings, settings_m)
    sr = encode_sr(case.sources, case.findings, settings_m, seg)
    return request.param, case, seg, sr


def test_seg_has_one_segment_per_detected_level_coded_as_intervertebral_disc(encoded):
    _, case, seg, _ = encoded
    assert seg.SOPClassUID == SegmentationStorage and seg.SegmentationType == "BINARY"
    assert [s.SegmentLabel for s in seg.SegmentSequence] == [f"{lv} disc" for lv in LEVELS]
    for item, level in zip(seg.SegmentSequence, LEVELS):
        assert item.SegmentedPropertyCategoryCodeSequence[0].CodeValue == codes.ANATOMICAL_STRUCTURE.value
        assert item.SegmentedPropertyTypeCodeSequence[0].CodeValue == codes.DISC[level].value
        assert item.AnatomicRegionSequence[0].CodeValue == codes.LUMBAR_SPINE.value
        assert item.SegmentAlgorithmType == "AUTOMATIC"
        algorithm = item.SegmentationAlgorithmIdentificationSequence[0]
        assert algorithm.AlgorithmVersion == case.findings.models.segmentation
        assert algorithm.AlgorithmFamilyCodeSequence[0].CodeMeaning == "Artificial Intelligence"


def test_seg_shares_frame_of_reference_omits_empty_frames_and_references_every_source(encoded):
    _, case, seg, _ = encoded
    src = case.sources[0]
    assert seg.FrameOfReferenceUID == src.FrameOfReferenceUID
    assert int(seg.NumberOfFrames) == 3 * len(LEVELS)  # 5 discs x slices 1..3; slices 0 and 4 are empty
    referenced = {i.ReferencedSOPInstanceUID for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {ds.SOPInstanceUID for ds in case.sources}


def test_seg_pixels_equal_the_disc_label_map_on_the_right_source_slices(encoded):
    _, case, seg, _ = encoded
    pixels = seg.pixel_array.reshape(int(seg.NumberOfFrames), seg.Rows, seg.Columns)
    by_uid = {ds.SOPInstanceUID: i for i, ds in enumerate(case.sources)}
    rebuilt = np.zeros_like(case.labels)
    for frame, item in zip(pixels, seg.PerFrameFunctionalGroupsSequence):
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        source = item.DerivationImageSequence[0].SourceImageSequence[0]
        if "ReferencedFrameNumber" in source:  # multi-frame source: frame i+1 is slice i
            index = int(source.ReferencedFrameNumber) - 1
        else:
            index = by_uid[source.ReferencedSOPInstanceUID]
        rebuilt[index][frame > 0] = 200 + number
    expected = np.where((case.labels >= 201) & (case.labels <= 205), case.labels, 0)
    assert np.array_equal(rebuilt, expected)


def test_sr_is_tid1500_comprehensive_3d_sr_with_device_observer_and_procedure(encoded, settings_m):
    _, case, _, sr = encoded
    assert sr.SOPClassUID == COMPREHENSIVE_3D_SR
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert sr.VerificationFlag == "UNVERIFIED" and sr.CompletionFlag == "COMPLETE"
    names = {i.ConceptNameCodeSequence[0].CodeMeaning: i for i in sr.ContentSequence}
    assert names["Observer Type"].ConceptCodeSequence[0].CodeMeaning == "Device"
    assert case.findings.models.label in names["Device Observer Name"].TextValue
    assert names["Procedure reported"].ConceptCodeSequence[0].CodeValue == codes.PROCEDURE_REPORTED.value


def test_sr_round_trip_yields_the_encoded_findings(encoded):
    _, case, _, sr = encoded
    got = read_sr_findings(sr, case.sources)
    expected = [(d.level, d.box, d.slice_index, d.probability, d.herniation, d.sop_instance_uid, d.frame_number)
                for d in case.findings.discs]
    assert [(g.level, g.box, g.slice_index, g.probability, g.herniation, g.sop_instance_uid, g.frame_number)
            for g in got] == expected


def test_sr_box_groups_carry_a_closed_polyline_and_no_num_so_ohif_hydrates_them(encoded):
    _, case, _, sr = encoded
    box_groups = [g for g in _groups(sr) if _items(g, "SCOORD")]
    assert len(box_groups) == len(LEVELS)
    for group, disc in zip(box_groups, case.findings.discs):
        assert not _items(group, "NUM")
        scoord = _items(group, "SCOORD")[0]
        assert scoord.GraphicType == "POLYLINE"
        x0, y0, x1, y1 = disc.box
        assert np.allclose(np.reshape(scoord.GraphicData, (-1, 2)),
                           [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]])
        qualitative = _items(group, "CODE")[-1]
        assert qualitative.ConceptNameCodeSequence[0].CodeValue == codes.HERNIATION.value
        expected = codes.PRESENT if disc.herniation else codes.ABSENT
        assert qualitative.ConceptCodeSequence[0].CodeValue == expected.value


def test_sr_probability_group_references_the_seg_segment_under_the_same_tracking_uid(encoded):
    _, _, seg, sr = encoded
    segment_uids = {int(s.SegmentNumber): s.TrackingUID for s in seg.SegmentSequence}
    prob_groups = [g for g in _groups(sr) if _items(g, "NUM")]
    assert len(prob_groups) == len(LEVELS)
    for group in prob_groups:
        image = _items(group, "IMAGE")[0].ReferencedSOPSequence[0]
        assert image.ReferencedSOPInstanceUID == seg.SOPInstanceUID
        uid = _items(group, "UIDREF")[0].UID
        assert segment_uids[int(image.ReferencedSegmentNumber)] == uid


def test_every_object_copies_patient_and_study_and_gets_new_uids(encoded, settings_m):
    _, case, seg, sr = encoded
    src = case.sources[0]
    preview = encode_preview(case.sources, case.findings, np.zeros((64, 64, 3), np.uint8), settings_m)
    for obj in (seg, sr, preview):
        for keyword in PATIENT_STUDY_KEYWORDS:
            if keyword in src:
                assert obj[keyword].value == src[keyword].value, keyword
        assert obj.SeriesInstanceUID != src.SeriesInstanceUID and obj.SOPInstanceUID != src.SOPInstanceUID
    assert seg.SeriesDescription == "LDH Assist discs (AI)"
    assert sr.SeriesDescription == "LDH Assist report (AI)"


def test_seg_and_sr_name_the_processing_algorithm_in_contributing_equipment(encoded, settings_m):
    _, case, seg, sr = encoded
    uids = set()
    for obj in (seg, sr):
        item = obj.ContributingEquipmentSequence[-1]
        purpose = item.PurposeOfReferenceCodeSequence[0]
        assert (purpose.CodeValue, purpose.CodingSchemeDesignator) == ("Newcode1", "99IHE")
        assert purpose.CodeMeaning == "Processing Algorithm"
        assert item.Manufacturer == settings_m.manufacturer and item.ManufacturerModelName == "LDH Assist"
        assert item.SoftwareVersions == case.findings.models.label
        uids.add(item.DeviceUID)
        assert "99LDH" in {i.CodingSchemeDesignator for i in obj.CodingSchemeIdentificationSequence}
    assert len(uids) == 1


def test_highdicom_reads_back_both_objects(encoded):
    _, _, seg, sr = encoded
    assert hd.seg.Segmentation.from_dataset(copy.deepcopy(seg)).number_of_segments == len(LEVELS)
    report = hd.sr.Comprehensive3DSR.from_dataset(copy.deepcopy(sr)).content
    assert len(report.get_planar_roi_measurement_groups()) == len(LEVELS)
    assert len(report.get_volumetric_roi_measurement_groups()) == len(LEVELS)


def test_scoord_convention_is_pixel_edges_column_first():
    pts = box_to_scoord((3, 5, 10, 9))
    assert pts[0].tolist() == [3, 5] and pts[2].tolist() == [10, 9]  # (column, row); (0,0) = top-left corner
    assert scoord_to_box(pts.ravel()) == (3, 5, 10, 9)


def test_some_levels_missing_gives_segments_and_groups_only_for_found_levels(settings_m):
    case = make_case(levels=("L3-L4", "L5-S1"), herniated=("L5-S1",))
    seg = encode_seg(case.sources, case.labels, case.findings, settings_m)
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["L3-L4 disc", "L5-S1 disc"]
    sr = encode_sr(case.sources, case.findings, settings_m, seg)
    assert [(d.level, d.herniation) for d in read_sr_findings(sr)] == [("L3-L4", False), ("L5-S1", True)]


def test_no_disc_found_gives_no_seg_and_an_sr_that_says_so(settings_m):
    case = make_case(levels=())
    assert encode_seg(case.sources, case.labels, case.findings, settings_m) is None
    sr = encode_sr(case.sources, case.findings, settings_m, None)
    assert read_sr_findings(sr) == []
    (group,) = _groups(sr)
    evaluation = _items(group, "CODE")[-1]
    assert evaluation.ConceptNameCodeSequence[0].CodeValue == codes.DISC_DETECTION.value
    assert evaluation.ConceptCodeSequence[0].CodeValue == codes.ABSENT.value


def test_not_analysable_gives_an_sr_that_says_why(settings_m):
    case = make_case(levels=())
    case.findings.not_analysable = "only 1 lumbar disc found"
    sr = encode_sr(case.sources, case.findings, settings_m, None)
    assert read_sr_findings(sr) == []
    (group,) = _groups(sr)
    texts = [i.TextValue for i in _items(group, "TEXT")]
    assert "Not analysable: only 1 lumbar disc found" in texts
    evaluation = _items(group, "CODE")[-1]
    assert evaluation.ConceptNameCodeSequence[0].CodeValue == codes.ANALYSABLE.value
    assert evaluation.ConceptCodeSequence[0].CodeValue == codes.NO.value


def test_sr_without_seg_keeps_the_probability_in_a_tid1501_group(settings_m):
    case = make_case()
    sr = encode_sr(case.sources, case.findings, settings_m, None)
    got = read_sr_findings(sr)
    assert [g.probability for g in got] == [d.probability for d in case.findings.discs]
    assert all(g.segment_number is None for g in got)


def test_reviewed_sr_is_verified_by_the_radiologist_and_succeeds_the_ai_sr(settings_m):
    case = make_case()
    seg = encode_seg(case.sources, case.labels, case.findings, settings_m)
    ai_sr = encode_sr(case.sources, case.findings, settings_m, seg)
    ai = {d.level: d for d in read_sr_findings(ai_sr)}
    corrections = [
        ReviewedDisc("L4-L5", 2, (19, 39, 48, 46), herniation=False, probability=ai["L4-L5"].probability),
        ReviewedDisc("L5-S1", 3, (20, 50, 44, 57), herniation=True),
    ]
    reviewer = Reviewer(name="Doe^Jane", id="jdoe", organization="Test Hospital")
    reviewed = encode_reviewed_sr(case.sources, ai_sr, corrections, reviewer, settings_m)
    assert reviewed.VerificationFlag == "VERIFIED"
    assert reviewed.VerifyingObserverSequence[0].VerifyingObserverName == "Doe^Jane"
    assert reviewed.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0] \
        .ReferencedSOPInstanceUID == ai_sr.SOPInstanceUID
    texts = {i.ConceptNameCodeSequence[0].CodeMeaning: i for i in reviewed.ContentSequence}
    assert texts["Person Observer Name"].PersonName == "Doe^Jane"
    assert texts["Person Observer's Login Name"].TextValue == "jdoe"
    got = read_sr_findings(reviewed, case.sources)
    assert [(g.level, g.slice_index, g.box, g.herniation, g.probability) for g in got] == [
        (c.level, c.slice_index, c.box, c.herniation, c.probability) for c in corrections
    ]
    assert got[0].tracking_uid == ai["L4-L5"].tracking_uid  # same tracked disc across both reports


def test_preview_is_an_rgb_secondary_capture_labelled_as_ai_output(settings_m):
    case = make_case()
    rgb = np.full((64, 64, 3), 40, np.uint8)
    sc = encode_preview(case.sources, case.findings, rgb, settings_m)
    assert sc.PhotometricInterpretation == "RGB" and sc.BurnedInAnnotation == "YES"
    assert "AI" in sc.SeriesDescription and "not for diagnosis" in sc.ImageComments
    assert sc.pixel_array.shape == (64, 64, 3) and not np.array_equal(sc.pixel_array[:4], rgb[:4])  # banner


def _shifted(mutate):
    sources = make_mr_series()
    mutate(sources)
    return sources


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda s: setattr(s[3], "ImageOrientationPatient", [1, 0, 0, 0, 0, -1]), "different orientation"),
        (lambda s: setattr(s[3], "ImagePositionPatient", s[2].ImagePositionPatient), "same position"),
        (lambda s: s.reverse() or s.insert(0, s.pop(2)), "not sorted"),
        (lambda s: setattr(s[1], "FrameOfReferenceUID", "1.2.3.4"), "disagree on FrameOfReferenceUID"),
        (lambda s: setattr(s[1], "PixelSpacing", [0.5, 0.5]), "different pixel spacing"),
        (lambda s: s.pop(), "grid"),
    ],
    ids=["orientation", "duplicate-position", "unsorted", "frame-of-reference", "pixel-spacing", "slice-count"],
)
def test_inconsistent_source_geometry_raises_encoding_error(mutate, message, settings_m):
    case = make_case()
    sources = [copy.deepcopy(ds) for ds in case.sources]
    mutate(sources)
    for encode in (
        lambda: encode_seg(sources, case.labels, case.findings, settings_m),
        lambda: encode_sr(sources, case.findings, settings_m),
    ):
        with pytest.raises(EncodingError, match=message):
            encode()


def test_box_outside_the_image_raises_encoding_error(settings_m):
    case = make_case(levels=("L1-L2",))
    disc = case.findings.discs[0]
    case.findings.discs[0] = type(disc)(**{**disc.__dict__, "box": (50, 5, 70, 9)})
    with pytest.raises(EncodingError, match="does not fit"):
        encode_sr(case.sources, case.findings, settings_m)
