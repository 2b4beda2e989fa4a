"""The preprocessing both training and serving use: canvas mapping, soft targets, mapping back to the grid."""

import numpy as np
import pytest

from ai_service import preprocess as P


@pytest.mark.parametrize("rows,cols,row_mm,col_mm", [(512, 512, 0.5, 0.5), (300, 420, 0.9, 0.7), (200, 200, 1.3, 1.3)])
def test_roi_mapping_equals_the_same_rectangle_of_the_full_mapping(rows, cols, row_mm, col_mm):
    rng = np.random.default_rng(0)
    affine = P.seg_affine(rows, cols, row_mm, col_mm)
    probs = rng.random((2, P.SEG_SIZE, P.SEG_SIZE, 4)).astype(np.float32)
    labels = rng.integers(0, 6, (2, P.SEG_SIZE, P.SEG_SIZE)).astype(np.uint8)
    roi = (rows // 5, rows // 2 + 7, cols // 3, cols - 11)
    r0, r1, c0, c1 = roi
    full = P.probabilities_to_grid(probs, affine, rows, cols)
    part = P.probabilities_to_grid(probs, affine, rows, cols, roi)
    assert part.shape == (2, r1 - r0, c1 - c0, 4)
    # equal up to OpenCV's fixed-point sampling grid (1/32 pixel): random data changes by <= 1 per canvas pixel
    np.testing.assert_allclose(part, full[:, r0:r1, c0:c1], atol=1 / 32 + 1e-4)
    part_labels = P.labels_to_grid(labels, affine, rows, cols, roi)
    assert (part_labels == P.labels_to_grid(labels, affine, rows, cols)[:, r0:r1, c0:c1]).mean() > 0.98


def test_grid_roi_covers_every_input_pixel_of_a_canvas_blob():
    rows, cols, mm = 480, 360, 0.6
    affine = P.seg_affine(rows, cols, mm, mm)
    canvas = np.zeros((3, P.SEG_SIZE, P.SEG_SIZE), np.uint8)
    canvas[1, 100:121, 60:95] = 201
    r0, r1, c0, c1 = P.grid_roi(canvas, affine, rows, cols, margin=0)
    back = P.labels_to_grid(canvas, affine, rows, cols)
    rr, cc = np.nonzero(back.any(axis=0))
    assert r0 <= rr.min() and rr.max() < r1 and c0 <= cc.min() and cc.max() < c1
    assert (r1 - r0) < 1.2 * (rr.max() - rr.min() + 1) + 4  # and stays tight
    assert P.grid_roi(np.zeros_like(canvas), affine, rows, cols) is None
    assert P.canvas_pixel_mm(affine, mm) == pytest.approx(max(rows, cols) * mm / P.SEG_SIZE)


def test_a_small_field_is_padded_to_the_smallest_field_not_magnified():
    """221 mm of 1 mm pixels (a real exam) on a 288 canvas that spans at least 340 mm: 340/288 mm per canvas pixel,
    centred; a field larger than the minimum still fills the canvas."""
    rows = cols = 221
    affine = P.seg_affine(rows, cols, 1.0, 1.0, 288, min_field_mm=340.0)
    assert P.canvas_pixel_mm(affine, 1.0) == pytest.approx(340.0 / 288)
    image = np.ones((1, rows, cols), np.float32)
    x, m = P.seg_inputs(image, 1.0, 1.0, 288, min_field_mm=340.0)
    np.testing.assert_allclose(m, affine)
    inside = np.nonzero(x[0, :, :, 1].max(axis=0) > 0.5)[0]
    assert inside.size == pytest.approx(221 * 288 / 340, abs=2)
    assert inside[0] == pytest.approx(288 - inside[-1] - 1, abs=1)  # centred
    np.testing.assert_allclose(P.seg_affine(400, 400, 1.0, 1.0, 288, min_field_mm=340.0),
                               P.seg_affine(400, 400, 1.0, 1.0, 288))


def test_soft_targets_keep_sub_pixel_boundaries():
    """A disc edge half-way through a canvas pixel gives ~50 % targets there; the arg-max still matches."""
    rows = cols = 512
    affine = P.seg_affine(rows, cols, 0.5, 0.5)  # 2 input pixels per canvas pixel
    classes = np.zeros((1, rows, cols), np.uint8)
    classes[0, 201:301, 100:400] = 1  # starts on an odd row: half of canvas row 100 is disc
    soft = P.seg_targets(classes, affine)
    assert soft.shape == (1, P.SEG_SIZE, P.SEG_SIZE, len(P.SEG_CLASSES)) and soft.dtype == np.uint8
    assert np.all(np.abs(soft.astype(int).sum(axis=-1) - 255) <= 2)  # fractions of one pixel
    assert 100 <= soft[0, 100, 120, 1] <= 155  # the boundary pixel is about half disc
    assert soft[0, 110, 120, 1] == 255 and soft[0, 90, 120, 0] == 255
    back = np.argmax(P.probabilities_to_grid(soft.astype(np.float32) / 255, affine, rows, cols), axis=-1)
    dice = 2 * ((back == 1) & (classes == 1)).sum() / ((back == 1).sum() + (classes == 1).sum())
    assert dice > 0.995


def test_a_finer_canvas_keeps_the_field_of_view_with_smaller_pixels():
    norm = np.zeros((3, 300, 200), np.float32)
    x256, a256 = P.seg_inputs(norm, 1.0, 1.0)
    x288, a288 = P.seg_inputs(norm, 1.0, 1.0, 288)
    assert x256.shape == (3, 256, 256, 3) and x288.shape == (3, 288, 288, 3)
    assert P.canvas_pixel_mm(a288, 1.0) == pytest.approx(300 / 288)
    assert P.canvas_pixel_mm(a256, 1.0) == pytest.approx(300 / 256)
    classes = np.zeros((1, 300, 200), np.uint8)
    assert P.seg_targets(classes, a288, 288).shape == (1, 288, 288, len(P.SEG_CLASSES))


def test_probability_smoothing_shares_with_neighbouring_slices_and_blurs_in_plane():
    probs = np.zeros((3, 32, 32, 4), np.float32)
    probs[..., 0] = 1.0
    probs[1, 10:20, 10:20] = (0.0, 1.0, 0.0, 0.0)  # a disc square on the middle slice only
    assert P.smooth_probabilities(probs, 0.0, 0.0) is probs
    out = P.smooth_probabilities(probs, 0.2, 0.0)
    assert out[1, 15, 15, 1] == pytest.approx(0.6) and out[0, 15, 15, 1] == pytest.approx(0.2)
    assert out[2, 15, 15, 1] == pytest.approx(0.2) and out[0, 5, 5, 1] == 0.0
    np.testing.assert_allclose(out.sum(axis=-1), 1.0, atol=1e-6)  # still probabilities
    blurred = P.smooth_probabilities(probs, 0.0, 1.0)
    assert 0.0 < blurred[1, 15, 9, 1] < 0.5 < blurred[1, 15, 10, 1] < 1.0  # the edge softens, stays put
    assert blurred[1, 15, 15, 1] == pytest.approx(1.0, abs=1e-3)
    np.testing.assert_allclose(blurred.sum(axis=-1), 1.0, atol=1e-5)


def test_disc_crop_samples_only_its_window_yet_equals_warping_the_whole_slice():
    """disc_crop converts just the input window it samples; the crop must be the very same as warping the whole
    slice, for crops inside, across and beyond the slice edge."""
    import cv2

    rng = np.random.default_rng(5)
    norm = rng.random((300, 260), dtype=np.float32)
    mask = rng.random((300, 260)) > 0.5
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    for centre in ([150.0, 130.0], [5.0, 250.0], [-30.0, 120.0], [330.0, 300.0], [-200.0, -200.0]):
        for angle in (0.0, 0.4, -0.9):
            axis = np.array([np.sin(angle), np.cos(angle)])
            m = P.crop_affine(np.array(centre), axis, 0.7, 0.8)
            ref = np.stack([cv2.warpAffine(norm, m, (P.CROP_SIZE,) * 2, flags=flags),
                            cv2.warpAffine(mask.astype(np.float32), m, (P.CROP_SIZE,) * 2, flags=flags)], axis=-1)
            crop = P.disc_crop(norm, mask, np.array(centre), axis, 0.7, 0.8)
            assert crop.dtype == np.float32
            np.testing.assert_array_equal(crop, ref)


def test_disc_pose_follows_the_central_sections_not_lateral_pieces_running_off():
    # a horizontal disc (rows 46-53) on twelve slices; on the two outermost the mask also runs off diagonally (a
    # real exam's foramen or neighbour): the PCA of the projection tilts this frame ~38 degrees
    mask = np.zeros((12, 140, 140), bool)
    mask[:, 46:54, 40:90] = True
    for s in (0, 11):
        for k in range(40):
            mask[s, 50 + k : 53 + k, 60 + k : 66 + k] = True
    assert P.classified_slices(mask).tolist() == list(range(12))  # mostly disc: the runaway sections are read
    _, projected = P.disc_pose(mask.any(axis=0), 0.8, 0.8)
    assert abs(np.degrees(np.arctan2(projected[0], projected[1]))) > 30.0
    centre, axis = P.disc_pose(mask, 0.8, 0.8)
    assert abs(np.degrees(np.arctan2(axis[0], axis[1]))) < 2.0
    assert axis[1] > 0  # posterior
    np.testing.assert_allclose(centre, (49.5, 64.5), atol=1.0)
    # one section, or a regular disc: the same frame as its own PCA
    c2, a2 = P.disc_pose(mask[5], 0.8, 0.8)
    np.testing.assert_allclose(c2, (49.5, 64.5), atol=1e-6)
    np.testing.assert_allclose(np.abs(a2), (0.0, 1.0), atol=1e-6)


def test_sections_mostly_off_the_discs_central_outline_are_not_classified_but_herniated_ones_are():
    # a disc on 15 sections; lateral sections 0-1 are mostly a scrap beside it (real exams: facet joints and the
    # foramen called disc and named with it); section 12 carries a posterior herniation a quarter of its area
    mask = np.zeros((15, 140, 140), bool)
    mask[2:15, 46:56, 40:90] = True
    mask[0:2, 48:54, 60:80] = True
    mask[0:2, 20:44, 95:125] = True  # the scrap: 720 px beside 120 px of disc
    mask[12, 47:55, 90:110] = True  # herniation: 160 px beyond the posterior margin (col 90)
    assert P.classified_slices(mask).tolist() == list(range(2, 15))  # the herniated section 12 among them


def test_thin_slices_are_classified_as_slabs_of_about_4_mm_and_thick_ones_slice_by_slice():
    from ai_service.discs import NamedDisc
    from ai_service.engine import disc_crops

    rng = np.random.default_rng(3)
    for slice_mm, sections in ((1.0, 40), (4.0, 10)):
        norm = rng.random((sections + 4, 120, 120)).astype(np.float32)
        mask = np.zeros(norm.shape, bool)
        mask[2 : 2 + sections, 50:60, 30:90] = True
        box = (slice(2, 2 + sections), slice(50, 60), slice(30, 90))
        crops, owners = disc_crops(norm, [NamedDisc("L4-L5", mask, box)], (slice_mm, 0.8, 0.8))
        assert len(crops) == len(owners) == (10 if slice_mm == 1.0 else sections)
        assert all(i == 0 and mask[s].any() for i, s in owners)
        if slice_mm == 1.0:  # each crop is the mean of its four slices, the noise averaged down
            single = disc_crops(norm, [NamedDisc("L4-L5", mask, box)], (4.0, 0.8, 0.8))[0]
            inside = crops[..., 1] > 0.5
            assert crops[..., 0][inside].std() < 0.7 * single[..., 0][single[..., 1] > 0.5].std()
    assert [run.tolist() for run in P.slabs(np.arange(10), 4)] == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert [run.tolist() for run in P.slabs(np.arange(3), 4)] == [[0, 1, 2]]
    assert P.slab_slices(1.0) == 4 and P.slab_slices(3.0) == 1 and P.slab_slices(5.0) == 1
