"""From fine-class maps to an MR-like image: tissue contrast, texture, partial volume, PSF, bias and noise.

Contrast is SynthSeg-style: each tissue's mean is drawn around a T2 prior (or, with some probability, fully at
random) so a model has to learn shapes, not one scanner's grey levels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter

from . import tissues as T
from .anatomy import Anatomy
from .profile import PhantomProfile


@dataclass(frozen=True)
class Contrast:
    mean: np.ndarray        # (256,) float32 mean signal per fine class
    tex: np.ndarray         # (256,) float32 texture amplitude x mean per fine class
    random: bool            # means drawn at random instead of around the prior
    snr: float
    psf_sigma_px: float
    bias_log_std: float
    coil_gradient: float
    max_value: float


def sample_contrast(rng: np.random.Generator, profile: PhantomProfile, anat: Anatomy) -> Contrast:
    priors = profile.intensity_priors
    random = bool(rng.random() < profile.random_contrast_prob)
    tissue_mean = {}
    for name in sorted(priors):
        if random:
            tissue_mean[name] = float(rng.uniform(0.0, 0.25 if name == "air" else 1.0))
        else:
            jitter = float(np.exp(rng.normal(0.0, profile.intensity_jitter)))
            tissue_mean[name] = float(np.clip(priors[name] * jitter + rng.normal(0.0, 0.015), 0.0, 1.2))
    scale = float(rng.uniform(*profile.texture_scale))
    mean = np.zeros(256, np.float32)
    tex = np.zeros(256, np.float32)
    for code in T.FINE_CODES:
        tissue = T.TISSUE_OF[code]
        mean[code] = tissue_mean[tissue]
        tex[code] = profile.texture[tissue] * scale
    # per-structure variation: marrow of each vertebra, each disc's hydration, herniated material
    for v in range(7):
        mean[T.vertebra_marrow(v)] *= float(rng.uniform(0.88, 1.12))
    for k in range(1, 5):
        mean[T.sacral_segment_marrow(k)] *= float(rng.uniform(0.75, 1.05))
    mean[T.PSOAS] *= float(rng.uniform(0.9, 1.1))
    annulus, nucleus = tissue_mean["annulus"], tissue_mean["nucleus"]
    for d in anat.discs:
        if d.degenerated:
            nuc = annulus + (nucleus - annulus) * float(rng.uniform(0.0, 0.3))
        else:
            nuc = nucleus * float(rng.uniform(0.85, 1.05))
        mean[d.nucleus] = nuc
        if d.index >= 0:
            mean[d.transition] = (nuc + annulus) / 2
        mean[d.annulus] = annulus * float(rng.uniform(0.85, 1.15))
        if d.index >= 0:
            mix = float(rng.uniform(0.25, 1.0))
            mean[d.herniation_code] = annulus + (nuc - annulus) * mix
            tex[d.herniation_code] = 0.12 * scale
    return Contrast(mean, mean * tex, random, float(rng.uniform(*profile.snr)),
                    float(rng.uniform(*profile.psf_sigma_px)), float(rng.uniform(*profile.bias_log_std)),
                    float(rng.uniform(*profile.coil_gradient)), float(rng.uniform(*profile.max_value)))


def texture_field(rng: np.random.Generator, rows: int, cols: int, spacing: float) -> np.ndarray:
    """Zero-mean, unit-ish texture: a coarse blotchy field (~15 mm) plus fine grain (~1.5 mm)."""
    coarse = rng.standard_normal((max(rows // 24, 2), max(cols // 24, 2)), dtype=np.float32)
    field = cv2.resize(coarse, (cols, rows), interpolation=cv2.INTER_CUBIC)
    fine = rng.standard_normal((rows, cols), dtype=np.float32)
    sigma = max(0.6, 0.8 / spacing)
    fine = cv2.GaussianBlur(fine, (0, 0), sigma) * (1.5 * sigma)
    return 0.6 * field + 0.5 * fine


def partial_volume(subs: list[np.ndarray], contrast: Contrast, field: np.ndarray) -> np.ndarray:
    """Mean signal of the sub-slices across the slice thickness (through-slice partial volume)."""
    img = np.zeros(subs[0].shape, np.float32)
    for sub in subs:
        img += contrast.mean[sub]
        img += contrast.tex[sub] * field
    return img / len(subs)


def finish(volume: np.ndarray, foreground: np.ndarray, contrast: Contrast, rng: np.random.Generator) -> np.ndarray:
    """PSF blur, smooth bias field (incl. posterior coil gain), Rician noise, scaling to uint16 0..4095."""
    n, rows, cols = volume.shape
    for k in range(n):
        cv2.GaussianBlur(volume[k], (0, 0), contrast.psf_sigma_px, dst=volume[k])
    low = rng.standard_normal((n + 4, 6, 6)).astype(np.float32)
    low = gaussian_filter(low, (1.5, 1.0, 1.0))[2:-2]
    low *= contrast.bias_log_std / max(float(low.std()), 1e-6)
    coil = np.linspace(-0.5, 0.5, cols, dtype=np.float32)[None, :] * contrast.coil_gradient
    lateral = -0.15 * np.linspace(-1, 1, n) ** 2
    for k in range(n):
        bias = cv2.resize(low[k], (cols, rows), interpolation=cv2.INTER_CUBIC) + coil + np.float32(lateral[k])
        volume[k] *= np.exp(bias)
    ref = float(volume[foreground].mean()) if foreground.any() else float(volume.mean())
    sigma = np.float32(max(ref, 1e-3) / contrast.snr)
    re = rng.standard_normal(volume.shape, dtype=np.float32)
    re *= sigma
    re += volume
    im = rng.standard_normal(volume.shape, dtype=np.float32)
    im *= sigma
    np.hypot(re, im, out=re)
    bright = float(np.percentile(re[::2, ::3, ::3], 99.7))
    gain = np.float32(contrast.max_value / max(bright, 1e-6))
    re *= gain
    np.clip(re, 0, 4095, out=re)
    return np.rint(re).astype(np.uint16)
