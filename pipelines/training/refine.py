"""Train a segmentation version's input-grid disc refiner (``ldh train refine``).

The U-Net decides on a ~1 mm canvas; mapped back, most of its disc errors are the one input pixel along each
boundary. The refiner (``ai_service.networks.build_refiner``) reads the full-resolution image beside the mapped
probabilities and moves that boundary. It is trained on the serving path of one segmentation version: its canvas,
smoothing and level naming decide the rectangle and the probabilities it sees, so it belongs to that version and
ships inside a new one (``pipelines.training.card.refined_seg_version``).
"""

from __future__ import annotations

import cv2
import numpy as np

from ai_service import labels as L
from ai_service import preprocess as P
from ai_service.engine import canvas_probabilities, locate_discs, named_region
from ai_service.runtime import SegServing
from pipelines.training.data import CanonicalCase
from pipelines.training.seg import cosine_rate, mask_dice

PATCH = 48  # training patch side, input-grid pixels (the refiner sees 9 x 9 px around each)
BAND = np.ones((5, 5), np.uint8)  # truth boundary band the patch centres are drawn from: ±2 px
UNSURE_MARGIN = 3.0  # ... or wherever the U-Net's disc arg-max margin is this close to a tie


def _truth_discs(labels: np.ndarray) -> np.ndarray:
    return (labels >= L.disc_label(L.LEVELS[0])) & (labels <= L.disc_label(L.LEVELS[-1]))


def refine_samples(cc: CanonicalCase, seg_fn, serving: SegServing, rng: np.random.Generator, per_slice: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Patches (N, PATCH, PATCH, REFINE_FEATURES) float16 and their truth disc masks (N, PATCH, PATCH, 1) uint8,
    centred on the truth disc boundaries and the U-Net's unsure pixels inside the named discs' rectangle."""
    probs, affine = canvas_probabilities(seg_fn, cc.norm, cc.spacing, serving)
    _, region = named_region(probs, affine, cc.norm.shape, cc.spacing)
    if region is None:
        return _empty()
    (r0, r1, c0, c1), mapped = region
    feats = P.refine_features(cc.norm[:, r0:r1, c0:c1], mapped)
    truth = _truth_discs(cc.labels[:, r0:r1, c0:c1]).astype(np.uint8)
    pad = ((0, 0), (0, max(0, PATCH - feats.shape[1])), (0, max(0, PATCH - feats.shape[2])))
    feats, truth = np.pad(feats, pad + ((0, 0),), mode="edge"), np.pad(truth, pad, mode="edge")
    xs, ys = [], []
    _, h, w, _ = feats.shape
    for s in range(len(feats)):
        band = cv2.dilate(truth[s], BAND) != cv2.erode(truth[s], BAND)
        rr, cc_ = np.nonzero(band | (np.abs(feats[s, ..., -1]) < UNSURE_MARGIN))
        if not len(rr):
            continue
        for k in rng.integers(0, len(rr), per_slice):
            y0 = int(np.clip(rr[k] - PATCH // 2, 0, h - PATCH))
            x0 = int(np.clip(cc_[k] - PATCH // 2, 0, w - PATCH))
            xs.append(feats[s, y0 : y0 + PATCH, x0 : x0 + PATCH])
            ys.append(truth[s, y0 : y0 + PATCH, x0 : x0 + PATCH])
    if not xs:
        return _empty()
    return np.stack(xs).astype(np.float16), np.stack(ys)[..., None]


def _empty() -> tuple[np.ndarray, np.ndarray]:
    return (np.zeros((0, PATCH, PATCH, P.REFINE_FEATURES), np.float16), np.zeros((0, PATCH, PATCH, 1), np.uint8))


def train_refiner(x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, *, channels: int, epochs: int,
                  batch: int, lr: float, seed: int, verbose: int = 1):
    """Fit the refiner on boundary patches: per-pixel binary cross-entropy on its disc logit, cosine-decayed rate."""
    import keras

    from ai_service.networks import build_refiner

    keras.utils.set_random_seed(seed)
    model = build_refiner(channels)
    model.compile(optimizer=keras.optimizers.Adam(cosine_rate(lr, epochs, len(x), batch)),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True))
    history = model.fit(x.astype(np.float32), y.astype(np.float32), validation_data=(xv.astype(np.float32),
                        yv.astype(np.float32)), batch_size=batch, epochs=epochs, shuffle=True, verbose=verbose)
    return model, {k: [float(v) for v in vals] for k, vals in history.history.items()}


def grid_disc_dice(cases, seg_fn, serving: SegServing, refiners: dict) -> dict[str, float]:
    """Mean disc Dice on the input grid over ``cases`` through the serving path (as ``ldh evaluate`` scores it), once
    per entry of ``refiners`` (name -> refiner runner, or None for the U-Net's arg-max)."""
    dice: dict[str, list[float]] = {name: [] for name in refiners}
    for cc in cases:
        for name, refine in refiners.items():
            pred = locate_discs(seg_fn, cc.norm, cc.spacing, serving=serving, refine=refine).label_map
            for level in L.LEVELS:
                truth = cc.labels == L.disc_label(level)
                if truth.any():
                    dice[name].append(mask_dice(truth, pred == L.disc_label(level)))
    return {name: float(np.mean(v)) if v else float("nan") for name, v in dice.items()}
