"""Real VB2 exams as segmentation training samples with partial labels (``ldh train seg --real-bodies``).

VB2 masks mark seven vertebral bodies (T11 … L5) and nothing else, so most of an exam is *unknown*, not
background. What the masks do say, and what this module turns into targets:

- body voxels are vertebra (class 2);
- between two consecutive bodies, on every sagittal slice and image column where both have an endplate, the
  voxels from one endplate to the next are the intervertebral disc (class 1): the disc fills the space between
  the bodies it joins; columns where only one body reaches (the disc's front and back rim) are unknown;
- around and between the labelled bodies (from the top of T11 to the bottom of L5, on slices where the bodies
  are seen) everything else is background (class 0): spinal canal, posterior elements, soft tissue;
- unknown (ignored by the loss): above T11 (T10 and up are not marked), below L5's lower endplate (L5-S1 disc
  and sacrum are not marked), a rim of :data:`RIM_MM` around each pseudo-disc's front and back, the zone where a
  herniation would lie (:data:`HERNIATION_ZONE_MM` behind each pseudo-disc, from :data:`RIM_MM` above it to as far
  below), and all but the marked bodies on slices where fewer than :data:`MIN_BODIES_ON_SLICE` bodies show
  (lateral: pedicles, disc rims).

Why the herniation zone: these are healthy volunteers, so every canal behind their discs is empty, and as known
background it would teach the U-Net that no disc material lies behind a disc, the one thing the product must
see; healthy exams say nothing about what a herniation looks like, so the zone is left to the phantoms. (The
fine-tunes do lose herniated voxels: on 10 phantom hold-out cases seg-v7 misses 27 % of them, seg-r2's U-Net 49 %,
seg-r4's 36 %; seg-r5, the same run as seg-r4 with the zone unknown, 43 %: one run each, so the zone is not shown
to be the cause.)

Below L5 a *teacher* (the phantom-trained U-Net the fine-tune starts from) may fill in what it is sure of
(:data:`TEACHER_P`): background, the L5-S1 disc and the sacrum, never a body (on real exams it takes S1 for one
now and then). Without it, real bone below L5 was never "sacrum" in any target, and a fine-tune (seg-r1, no
teacher) stopped finding the sacrum on real exams at all, so every held-out exam became not analysable.

Unknown voxels get an all-zero soft target (``preprocess.seg_targets`` one-hot of a class value it does not
know), which the loss (``seg.seg_loss``) leaves out of both its cross-entropy and its Dice terms.
Only :data:`pipelines.training.real_cls.CLS_TRAIN_EXAMS` are used; the others stay held out for ``bench/real.py``.
"""

from __future__ import annotations

import numpy as np

from ai_service import labels as L
from ai_service import preprocess as P
from ai_service.volume import canonical_of
from pipelines.importers.real_spine import VB2, VB2_BODIES, RealExam, clinical_like
from pipelines.training.data import seg_input_bytes

IGNORE = 255  # label value (and class value) of unknown voxels
BELOW = 254  # label value of the unknown voxels below L5, where a teacher may label (L5-S1 disc, sacrum)
TEACHER_P = 0.9
TEACHER_CLASSES = (0, 1, 3)  # background, disc, sacrum: the teacher's body calls below L5 are not trusted
MAX_DISC_MM = 20.0  # a gap between endplates taller than this in a column is not a disc (a missed body edge)
RIM_MM = 3.0  # unknown margin around a pseudo-disc's front and back
HERNIATION_ZONE_MM = 15.0  # unknown behind a pseudo-disc (posterior: higher columns on the canonical grid)
MIN_BODIES_ON_SLICE = 5
TRAIN_VARIANTS = ((None, None), (4.0, 0.43), (3.5, 0.8))  # as given, and two clinical-like thick-slice series


def partial_labels(exam: RealExam) -> np.ndarray:
    """Our label values on the exam's canonical grid: bodies as marked, pseudo-discs between them (upper disc
    label for T11-T12 and T12-L1, the level's label below), background where known, :data:`IGNORE` elsewhere."""
    if exam.dataset != VB2:
        raise ValueError(f"{exam.name}: partial labels are made from VB2 body masks")
    lab = exam.labels
    row_mm, col_mm = exam.spacing[1], exam.spacing[2]
    out = np.full(lab.shape, IGNORE, np.uint8)
    disc_names = [L.UPPER_DISC, L.UPPER_DISC] + [L.disc_label(level) for level in L.LEVELS[:4]]
    max_gap = int(round(MAX_DISC_MM / row_mm))
    rim = max(1, int(round(RIM_MM / col_mm)))
    rim_rows = max(1, int(round(RIM_MM / row_mm)))
    zone = max(rim, int(round(HERNIATION_ZONE_MM / col_mm)))
    rows = np.arange(lab.shape[1])[:, None]
    for s in range(lab.shape[0]):
        plane = lab[s]
        body = np.isin(plane, VB2_BODIES)
        out[s][body] = plane[body]  # marked bodies are known on every slice
        if sum((plane == b).any() for b in VB2_BODIES) < MIN_BODIES_ON_SLICE:
            continue  # a lateral slice: pedicles and the discs' lateral rims are not marked
        top_body, bottom_body = plane == VB2_BODIES[0], plane == VB2_BODIES[-1]
        top = np.flatnonzero(top_body.any(axis=1))[0] if top_body.any() else np.flatnonzero(plane.any(axis=1))[0]
        known = np.broadcast_to(rows >= top, plane.shape).copy()
        # below L5's lower endplate (per column; columns L5 does not reach: below its lowest row) is unknown
        if bottom_body.any():
            lowest = np.where(bottom_body.any(axis=0),
                              bottom_body.shape[0] - 1 - np.argmax(bottom_body[::-1], axis=0),
                              np.flatnonzero(bottom_body.any(axis=1))[-1])
            below = rows > lowest[None, :]
        else:
            below = np.broadcast_to(rows > np.flatnonzero(plane.any(axis=1))[-1], plane.shape)
        known &= ~below
        out[s][below & ~body] = BELOW
        out[s][known] = 0
        for upper, lower, name in zip(VB2_BODIES[:-1], VB2_BODIES[1:], disc_names):
            a, b = plane == upper, plane == lower
            cols = np.flatnonzero(a.any(axis=0) & b.any(axis=0))
            if not len(cols):
                continue
            a_end = a.shape[0] - 1 - np.argmax(a[::-1, cols], axis=0)  # lower endplate of the upper body
            b_start = np.argmax(b[:, cols], axis=0)  # upper endplate of the lower body
            ok = (b_start > a_end + 1) & (b_start - a_end - 1 <= max_gap)
            disc = np.zeros(plane.shape, bool)
            for c, r0, r1 in zip(cols[ok], a_end[ok] + 1, b_start[ok]):
                disc[r0:r1, c] = True
            if not disc.any():
                continue
            band = np.zeros(plane.shape, bool)
            r_lo, r_hi = int(a_end.min()) + 1, int(b_start.max())
            c_lo, c_hi = int(cols[ok].min()), int(cols[ok].max()) + 1
            band[r_lo:r_hi, max(0, c_lo - rim):c_lo] = True
            band[max(0, r_lo - rim_rows):r_hi + rim_rows, c_hi:c_hi + zone] = True
            out[s][band & (plane == 0)] = IGNORE
            out[s][disc] = name
        out[s][body] = plane[body]
    return out


def seg_classes(labels: np.ndarray) -> np.ndarray:
    """Training classes with unknown voxels kept unknown (class value :data:`IGNORE`)."""
    classes = P.seg_classes(labels)
    classes[(labels == IGNORE) | (labels == BELOW)] = IGNORE
    return classes


def real_seg_samples(exams: list[RealExam], canvas: int, variants=TRAIN_VARIANTS, teacher=None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Canvas samples of ``exams`` (each as given and as clinical-like series) in ``data.seg_samples``' format:
    (n, canvas, canvas, 3) uint8 inputs, (n, canvas, canvas, classes) uint8 soft targets, zero where unknown.
    ``teacher``: canvas inputs (float 0…1) → class probabilities; labels below L5 where it is sure (see the
    module's docstring). Slices with no known pixel are left out."""
    xs, ys = [], []
    for exam in exams:
        labelled = type(exam)(exam.name, exam.dataset, exam.volume, partial_labels(exam), exam.labelled, exam.notes)
        for slice_mm, pixel_mm in variants:
            shown = labelled if slice_mm is None else clinical_like(labelled, slice_mm, pixel_mm)
            canon = canonical_of(shown.volume)  # as serving sees the series
            norm = P.normalize_volume(canon.forward(shown.volume.array))
            labels = canon.forward(shown.labels)
            x, affine = P.seg_inputs(norm, canon.spacing[1], canon.spacing[2], canvas)
            y = P.seg_targets(seg_classes(labels), affine, canvas)
            if teacher is not None:
                below = P.seg_targets((labels == BELOW).astype(np.uint8), affine, canvas)[..., 1] > 127
                _taught(y, np.asarray(teacher(np.clip(x, 0, 1))), below)
            keep = y.reshape(len(y), -1).any(axis=1)
            xs.append(seg_input_bytes(x[keep]))
            ys.append(y[keep])
    return np.concatenate(xs), np.concatenate(ys)


def _taught(y: np.ndarray, probs: np.ndarray, below: np.ndarray) -> None:
    """Set the targets of pixels below L5 that the teacher is sure of to its class (in place)."""
    best = probs.argmax(axis=-1)
    sure = below & (probs.max(axis=-1) >= TEACHER_P) & np.isin(best, TEACHER_CLASSES)
    y[sure] = 0
    y[sure, best[sure]] = 255
