"""Preprocessing shared by training and serving: the *only* place that decides what a network sees.

Training (``pipelines.training``) and inference (``ai_service.engine``) both call these functions, so the two
can never drift. All arrays here are canonical: ``(slices, rows, columns)`` with rows head→feet and columns
anterior→posterior (see :mod:`ai_service.volume`).
"""

from __future__ import annotations

import cv2
import numpy as np

from ai_service import labels as L

SEG_SIZE = 256  # segmentation network input: SEG_SIZE x SEG_SIZE, 3 channels = slice and its two neighbours
SEG_CLASSES = ("background", "disc", "vertebra", "sacrum")
CROP_SIZE = 64  # classifier input: CROP_SIZE x CROP_SIZE, channels = image, this disc's mask
CROP_MM_PER_PX = 1.0
CROP_POSTERIOR_SHIFT_MM = 12.0  # crop centre sits behind the disc centre so the canal is in view
MIN_SLICE_AREA_FRACTION = 0.25  # a disc is classified on slices holding at least this share of its largest section


def normalize_volume(volume: np.ndarray) -> np.ndarray:
    """Robust per-volume intensity scaling to ~[0, 1] (0.5th/99.5th percentiles), float32.

    The percentiles come from every other row and column (a quarter of the voxels): the same numbers to well
    under a grey level, four times cheaper on a 512² series.
    """
    sample = volume[..., ::2, ::2] if volume.ndim == 3 else volume[::2, ::2]
    lo, hi = np.percentile(sample, [0.5, 99.5])
    if hi - lo < 1e-6:
        return np.zeros_like(volume, dtype=np.float32)
    return np.clip((volume.astype(np.float32) - lo) / (hi - lo), 0.0, 1.0)


def seg_affine(rows: int, cols: int, row_mm: float, col_mm: float) -> np.ndarray:
    """2x3 affine from input pixel (col, row) to the square network canvas, aspect kept, centred."""
    side_mm = max(rows * row_mm, cols * col_mm)
    scale = SEG_SIZE / side_mm
    sx, sy = col_mm * scale, row_mm * scale
    tx = (SEG_SIZE - cols * sx) / 2.0
    ty = (SEG_SIZE - rows * sy) / 2.0
    # pixel centres: input centre (c + 0.5) maps to canvas (x + 0.5)
    return np.array([[sx, 0.0, tx + 0.5 * sx - 0.5], [0.0, sy, ty + 0.5 * sy - 0.5]], dtype=np.float64)


def seg_inputs(norm: np.ndarray, row_mm: float, col_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Network input (slices, SEG_SIZE, SEG_SIZE, 3) from a normalised canonical volume, and the affine used."""
    s, rows, cols = norm.shape
    m = seg_affine(rows, cols, row_mm, col_mm)
    canvas = np.stack(
        [cv2.warpAffine(sl, m, (SEG_SIZE, SEG_SIZE), flags=cv2.INTER_AREA if m[0, 0] < 1 else cv2.INTER_LINEAR)
         for sl in norm]
    )
    padded = np.concatenate([canvas[:1], canvas, canvas[-1:]])
    stacked = np.stack([padded[:-2], padded[1:-1], padded[2:]], axis=-1)
    return stacked.astype(np.float32), m


def seg_classes(label_map: np.ndarray) -> np.ndarray:
    """Training target classes from a canonical label map (any disc, any vertebral body, sacrum)."""
    out = np.zeros(label_map.shape, dtype=np.uint8)
    out[(label_map >= L.UPPER_DISC) & (label_map <= L.DISC_BASE + len(L.LEVELS))] = 1
    out[(label_map >= L.UPPER_VERTEBRA) & (label_map < L.SACRUM)] = 2
    out[label_map == L.SACRUM] = 3
    return out


def seg_targets(classes: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Class map warped to the canvas (nearest neighbour), (slices, SEG_SIZE, SEG_SIZE) uint8."""
    return np.stack(
        [cv2.warpAffine(c, affine, (SEG_SIZE, SEG_SIZE), flags=cv2.INTER_NEAREST) for c in classes]
    )


def probabilities_to_grid(probs: np.ndarray, affine: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Map canvas class probabilities (slices, S, S, K) back onto the input grid (slices, rows, cols, K)."""
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    k = probs.shape[-1]
    out = np.empty((probs.shape[0], rows, cols, k), dtype=np.float32)
    for i, p in enumerate(probs):
        for c0 in range(0, k, 4):  # cv2 warps at most 4 channels at once
            chunk = np.ascontiguousarray(p[..., c0 : c0 + 4])
            warped = cv2.warpAffine(chunk, affine, (cols, rows), flags=flags, borderMode=cv2.BORDER_REPLICATE)
            out[i, ..., c0 : c0 + 4] = warped.reshape(rows, cols, -1)
    return out


def disc_pose(mask: np.ndarray, row_mm: float, col_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Centre (row, col in pixels) and unit long axis (d_row, d_col in mm space, pointing posterior) of a disc.

    ``mask`` is the disc's 3D mask; the in-plane pose comes from its projection over slices, so every slice of
    one disc is cropped with the same frame.
    """
    proj = mask.any(axis=0) if mask.ndim == 3 else mask
    rr, cc = np.nonzero(proj)
    pts = np.stack([rr * row_mm, cc * col_mm], axis=1)
    centre = pts.mean(axis=0)
    cov = np.cov((pts - centre).T) if len(pts) > 2 else np.eye(2)
    evals, evecs = np.linalg.eigh(cov)
    axis = evecs[:, int(np.argmax(evals))]
    if axis[1] < 0:
        axis = -axis
    return np.array([centre[0] / row_mm, centre[1] / col_mm]), axis


def classified_slices(mask: np.ndarray) -> np.ndarray:
    """Indices of the slices of a 3D disc mask that the classifier looks at."""
    areas = mask.sum(axis=(1, 2))
    return np.nonzero(areas >= MIN_SLICE_AREA_FRACTION * areas.max())[0]


def disc_crop(
    norm_slice: np.ndarray, disc_mask_slice: np.ndarray, centre: np.ndarray, axis: np.ndarray,
    row_mm: float, col_mm: float,
) -> np.ndarray:
    """Classifier input (CROP_SIZE, CROP_SIZE, 2): the disc and the canal behind it, disc axis horizontal."""
    e1 = np.asarray(axis, dtype=np.float64)  # (d_row, d_col) in mm, posterior
    e2 = np.array([e1[1], -e1[0]])  # perpendicular; points to the feet when the disc is horizontal
    if e2[0] < 0:
        e2 = -e2
    half = CROP_SIZE / 2.0
    # crop pixel (u, v) -> physical mm (row, col) relative to the disc centre
    c_mm = np.array([centre[0] * row_mm, centre[1] * col_mm]) + CROP_POSTERIOR_SHIFT_MM * e1
    # crop pixel (u, v) -> input pixel (col, row) = (c_mm + (u+0.5-half)*s*e1 + (v+0.5-half)*s*e2) / spacing
    s = CROP_MM_PER_PX
    m = np.array(
        [
            [s * e1[1] / col_mm, s * e2[1] / col_mm, (c_mm[1] + (0.5 - half) * s * (e1[1] + e2[1])) / col_mm],
            [s * e1[0] / row_mm, s * e2[0] / row_mm, (c_mm[0] + (0.5 - half) * s * (e1[0] + e2[0])) / row_mm],
        ]
    )
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    image = cv2.warpAffine(norm_slice.astype(np.float32), m, (CROP_SIZE, CROP_SIZE), flags=flags)
    mask = cv2.warpAffine(disc_mask_slice.astype(np.float32), m, (CROP_SIZE, CROP_SIZE), flags=flags)
    return np.stack([image, mask], axis=-1)
