"""Partial labels of real VB2 exams for the U-Net (pipelines.training.real_seg) and the loss that honours them."""

import os

import numpy as np
import pytest

from ai_service import labels as L
from pipelines.importers import real_spine as R
from pipelines.training import real_seg as RS


@pytest.fixture(scope="module")
def exam():
    paths = R.exam_paths(R.DEFAULT_ROOT, R.VB2)
    if not paths:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the real exams are required in CI: {R.DEFAULT_ROOT} is missing or empty")
        pytest.skip(f"no real exams at {R.DEFAULT_ROOT}")
    return R.load_exam(paths[2])  # vb2-05, a training exam


def _rows(labels, value):
    return np.nonzero(labels == value)[1]


def test_pseudo_discs_lie_between_the_bodies_they_join_and_the_unmarked_anatomy_is_unknown(exam):
    labels = RS.partial_labels(exam)
    # bodies are kept exactly as marked
    for body in R.VB2_BODIES:
        assert np.array_equal(labels == body, exam.labels == body)
    # each pseudo-disc between T12 and L5: below its upper body's centre, above its lower body's
    pairs = zip(R.VB2_BODIES[2:-1], R.VB2_BODIES[3:], L.LEVELS[:4])  # (L1, L2, L1-L2) … (L4, L5, L4-L5)
    for upper, lower, level in pairs:
        rows = _rows(labels, L.disc_label(level))
        assert len(rows) > 2000, level  # a disc of ~40 x 40 x 8 mm at 1 mm voxels has ~10,000
        assert _rows(exam.labels, upper).mean() < rows.mean() < _rows(exam.labels, lower).mean()
        assert not np.isin(exam.labels[labels == L.disc_label(level)], R.VB2_BODIES).any()
    # nothing is called L5-S1 or sacrum (unmarked); above T11 and below L5 is unknown, not background
    assert not (labels == L.disc_label("L5-S1")).any() and not (labels == L.SACRUM).any()
    top = _rows(exam.labels, R.VB2_BODIES[0]).min()
    bottom = _rows(exam.labels, R.VB2_BODIES[-1]).max()
    assert (labels[:, :top] == RS.IGNORE).all() and np.isin(labels[:, bottom + 1:], (RS.IGNORE, RS.BELOW)).all()
    assert (labels == RS.BELOW).any()  # where a teacher may label the sacrum and L5-S1
    # the spine's surroundings between T11 and L5 on the central slices are known background
    middle = labels[labels.shape[0] // 2, top:bottom]
    assert (middle == 0).mean() > 0.5
    # but not the canal behind a disc, where a herniation would lie (healthy exams cannot say it is empty):
    # unknown from the disc's back to HERNIATION_ZONE_MM behind it, while in front, past the rim, is background
    centre = labels[labels.shape[0] // 2]
    zone, rim = (int(mm / exam.spacing[2]) for mm in (RS.HERNIATION_ZONE_MM, RS.RIM_MM))
    for level in L.LEVELS[:4]:
        r, c = np.nonzero(centre == L.disc_label(level))
        rows = slice(int(np.median(r)) - 1, int(np.median(r)) + 2)
        behind = centre[rows, c.max() + 1 : c.max() + zone]
        unmarked = behind[~np.isin(behind, R.VB2_BODIES)]  # a body's corner may reach behind its disc
        assert len(unmarked) > 20 and (unmarked == RS.IGNORE).all(), level
        assert (centre[rows, c.min() - 3 * rim : c.min() - 2 * rim] == 0).all(), level  # in front, past the rim


def test_samples_give_unknown_pixels_no_target_and_the_loss_ignores_what_is_predicted_there(exam):
    import tensorflow as tf

    from pipelines.training.seg import seg_loss

    x, y = RS.real_seg_samples([exam], 128, variants=((4.0, 0.8),))
    assert x.dtype == np.uint8 and x.shape[:3] == y.shape[:3] and y.shape[-1] == 4
    known = y.sum(axis=-1) > 0
    assert 0.2 < known.mean() < 0.95  # partly labelled, as the masks are
    truth = tf.constant(y[:4] / 255.0, tf.float32)
    rng = np.random.default_rng(0)
    pred = rng.dirichlet(np.ones(4), size=truth.shape[:3]).astype(np.float32)
    other = pred.copy()
    unknown = ~known[:4]
    other[unknown] = rng.dirichlet(np.ones(4), size=int(unknown.sum()))  # change only unknown pixels
    a, b = (float(tf.reduce_mean(seg_loss(truth, tf.constant(p)))) for p in (pred, other))
    assert a == pytest.approx(b, abs=1e-6)
    changed = pred.copy()
    changed[known[:4]] = np.roll(changed[known[:4]], 1, axis=-1)  # a known pixel's change does count
    assert float(tf.reduce_mean(seg_loss(truth, tf.constant(changed)))) != pytest.approx(a, abs=1e-4)


def test_a_teacher_labels_only_below_l5_and_only_what_it_is_sure_of_and_never_a_body(exam):
    variants = ((4.0, 0.8),)
    _, plain = RS.real_seg_samples([exam], 128, variants=variants)

    def sure_of(cls, p=0.95):
        def teach(inputs):
            probs = np.full(inputs.shape[:3] + (4,), (1 - p) / 3, np.float32)
            probs[..., cls] = p
            return probs
        return teach

    _, sacrum = RS.real_seg_samples([exam], 128, variants=variants, teacher=sure_of(3))
    changed = (sacrum != plain).any(axis=-1)
    # only pixels mostly unknown (below L5; a boundary pixel may be partly known) were taught
    assert changed.any() and (plain.sum(axis=-1)[changed] <= 128).all()
    assert (sacrum[changed] == (0, 0, 0, 255)).all()
    rows = np.nonzero(changed)[1]
    assert rows.min() > np.nonzero(plain[..., 2] > 127)[1].min()  # below the bodies, not above them
    _, body = RS.real_seg_samples([exam], 128, variants=variants, teacher=sure_of(2))
    _, unsure = RS.real_seg_samples([exam], 128, variants=variants, teacher=sure_of(3, p=0.6))
    assert np.array_equal(body, plain) and np.array_equal(unsure, plain)
