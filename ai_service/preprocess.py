"""Preprocessing shared by training and serving: the *only* place that decides what a network sees.

Training (``pipelines.training``) and inference (``ai_service.engine``) both call these functions, so the two
can never drift. All arrays here are canonical: ``(slices, rows, columns)`` with rows head→feet and columns
anterior→posterior (see :mod:`ai_service.volume`).
"""

from __future__ import annotations

import cv2
import numpy as np

from ai_service import labels as L

SEG_SIZE = 256  # default canvas side: the network sees size x size, 3 channels = slice and its two neighbours;
# a segmentation version records its own side in its card (runtime.SegServing), so rollbacks keep theirs
SEG_CLASSES = ("background", "disc", "vertebra", "sacrum")
CROP_SIZE = 64  # classifier input: CROP_SIZE x CROP_SIZE, channels = image, this disc's mask
CROP_MM_PER_PX = 1.0
CROP_POSTERIOR_SHIFT_MM = 12.0  # crop centre sits behind the disc centre so the canal is in view
CLS_SLAB_MM = 4.0  # the classifier reads thin-slice series as slabs this thick (the phantoms' 3-5 mm sections)
MIN_SLICE_AREA_FRACTION = 0.25  # a disc is classified on slices holding at least this share of its largest section
MIN_SECTION_ON_OUTLINE = 0.5  # ... and at least this share of them on the disc's central outline
OUTLINE_GROW_PX = 3  # the central outline grown by this many pixels (1-3 mm): endplate wobble is not a scrap
REFINE_FEATURES = 5  # refiner input per input-grid pixel: image, P(disc, vertebra, sacrum), disc arg-max margin
REFINER_DEPTH = 4  # 3x3 convolutions in the refiner: a voxel's decision reads this many pixels around it


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


def seg_affine(rows: int, cols: int, row_mm: float, col_mm: float, size: int = SEG_SIZE,
               min_field_mm: float = 0.0) -> np.ndarray:
    """2x3 affine from input pixel (col, row) to the square ``size``² network canvas, aspect kept, centred.

    The field of view fills the canvas, but the canvas never spans less than ``min_field_mm``: a small field (a
    221 mm real exam) is padded rather than magnified past the scales the network learnt (~0.8-1.4 mm per canvas
    pixel), which cost real exams their lowest disc (see the card's ``preprocess``).
    """
    side_mm = max(rows * row_mm, cols * col_mm, min_field_mm)
    scale = size / side_mm
    sx, sy = col_mm * scale, row_mm * scale
    tx = (size - cols * sx) / 2.0
    ty = (size - rows * sy) / 2.0
    # pixel centres: input centre (c + 0.5) maps to canvas (x + 0.5)
    return np.array([[sx, 0.0, tx + 0.5 * sx - 0.5], [0.0, sy, ty + 0.5 * sy - 0.5]], dtype=np.float64)


def seg_inputs(norm: np.ndarray, row_mm: float, col_mm: float, size: int = SEG_SIZE, min_field_mm: float = 0.0
               ) -> tuple[np.ndarray, np.ndarray]:
    """Network input (slices, size, size, 3) from a normalised canonical volume, and the affine used."""
    s, rows, cols = norm.shape
    m = seg_affine(rows, cols, row_mm, col_mm, size, min_field_mm)
    canvas = np.stack(
        [cv2.warpAffine(sl, m, (size, size), flags=cv2.INTER_AREA if m[0, 0] < 1 else cv2.INTER_LINEAR)
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


def seg_targets(classes: np.ndarray, affine: np.ndarray, size: int = SEG_SIZE) -> np.ndarray:
    """Soft training targets on the canvas: the share of each canvas pixel that each class covers, as uint8 0…255.

    Shape (slices, size, size, len(SEG_CLASSES)). The one-hot class map is warped like the image (area
    averaging when shrinking), not nearest-neighbour: hard canvas labels throw away where a boundary falls inside
    a canvas pixel, which capped mean disc Dice back on the input grid at ~0.96 even for a perfect network; with
    fractional targets the network's probabilities, mapped back bilinearly, keep it (~0.997 for perfect output).
    """
    k = len(SEG_CLASSES)
    flag = cv2.INTER_AREA if affine[0, 0] < 1 else cv2.INTER_LINEAR
    out = np.empty((len(classes), size, size, k), dtype=np.uint8)
    for i, c in enumerate(classes):
        onehot = (c[..., None] == np.arange(k, dtype=c.dtype)).astype(np.float32)
        for c0 in range(0, k, 4):  # cv2 warps at most 4 channels at once
            warped = cv2.warpAffine(np.ascontiguousarray(onehot[..., c0 : c0 + 4]), affine, (size, size), flags=flag)
            out[i, ..., c0 : c0 + 4] = np.rint(warped.reshape(size, size, -1) * 255)
    return out


def smooth_probabilities(probs: np.ndarray, slice_weight: float, sigma_px: float) -> np.ndarray:
    """Canvas class probabilities (slices, S, S, K) averaged with the neighbouring slices' (``slice_weight`` each)
    and blurred in-plane (Gaussian, ``sigma_px`` canvas pixels); zeros leave them as they are.

    Why: the U-Net decides each slice on its own and its stride-2 up-sampling leaves a 2-pixel grain in the
    probabilities; on phantom validation cases (seed 7070) smoothing both raised mean disc Dice by ~0.002.
    One slice at a time with OpenCV (it stays in cache): ~4x faster than whole-volume NumPy arithmetic.
    """
    if slice_weight <= 0 and sigma_px <= 0:
        return probs
    n, k = len(probs), probs.shape[-1]
    out = np.empty_like(probs)
    for i in range(n):
        p = probs[i]
        if slice_weight > 0 and n > 1:
            both = cv2.addWeighted(probs[max(i - 1, 0)], slice_weight, probs[min(i + 1, n - 1)], slice_weight, 0.0)
            p = cv2.scaleAdd(p, 1.0 - 2.0 * slice_weight, both)
        if sigma_px > 0:
            for c0 in range(0, k, 4):  # cv2 filters at most 4 channels at once
                chunk = np.ascontiguousarray(p[..., c0 : c0 + 4])
                out[i, ..., c0 : c0 + 4] = cv2.GaussianBlur(chunk, (0, 0), sigma_px).reshape(chunk.shape)
        else:
            out[i] = p
    return out


def canvas_pixel_mm(affine: np.ndarray, col_mm: float) -> float:
    """Size in mm of one canvas pixel (square: the canvas keeps the aspect ratio)."""
    return col_mm / float(affine[0, 0])


def grid_roi(canvas_mask: np.ndarray, affine: np.ndarray, rows: int, cols: int, margin: int = 2
             ) -> tuple[int, int, int, int] | None:
    """Input-grid rectangle ``(r0, r1, c0, c1)`` covering a canvas mask (any slice), or None when it is empty."""
    proj = canvas_mask.any(axis=0) if canvas_mask.ndim == 3 else canvas_mask
    rr, cc = np.nonzero(proj.any(axis=1))[0], np.nonzero(proj.any(axis=0))[0]
    if not len(rr):
        return None
    inverse = cv2.invertAffineTransform(affine)
    corners = np.array([[cc[0] - 0.5, rr[0] - 0.5, 1.0], [cc[-1] + 0.5, rr[-1] + 0.5, 1.0]]) @ inverse.T
    (x0, y0), (x1, y1) = corners.min(axis=0), corners.max(axis=0)
    return (max(0, int(np.floor(y0)) - margin), min(rows, int(np.ceil(y1)) + 1 + margin),
            max(0, int(np.floor(x0)) - margin), min(cols, int(np.ceil(x1)) + 1 + margin))


def _roi_affine(affine: np.ndarray, rows: int, cols: int, roi) -> tuple[np.ndarray, tuple[int, int]]:
    """The affine seen from the top-left corner of ``roi`` on the input grid, and the ROI size (width, height)."""
    r0, r1, c0, c1 = roi if roi is not None else (0, rows, 0, cols)
    shifted = affine.copy()
    shifted[:, 2] += affine[:, 0] * c0 + affine[:, 1] * r0
    return shifted, (c1 - c0, r1 - r0)


def probabilities_to_grid(probs: np.ndarray, affine: np.ndarray, rows: int, cols: int, roi=None) -> np.ndarray:
    """Map canvas class probabilities (slices, S, S, K) back onto the input grid (slices, rows, cols, K), bilinear.

    ``roi`` ``(r0, r1, c0, c1)`` limits the output to that input-grid rectangle (its shape then is the ROI's).
    """
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    m, (width, height) = _roi_affine(affine, rows, cols, roi)
    k = probs.shape[-1]
    out = np.empty((probs.shape[0], height, width, k), dtype=np.float32)
    for i, p in enumerate(probs):
        for c0 in range(0, k, 4):  # cv2 warps at most 4 channels at once
            chunk = np.ascontiguousarray(p[..., c0 : c0 + 4])
            warped = cv2.warpAffine(chunk, m, (width, height), flags=flags, borderMode=cv2.BORDER_REPLICATE)
            out[i, ..., c0 : c0 + 4] = warped.reshape(height, width, -1)
    return out


def refine_features(image: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Refiner input (slices, rows, cols, REFINE_FEATURES) float32 from a normalised input-grid image (slices, rows,
    cols) and the canvas probabilities mapped onto the same pixels (``probabilities_to_grid``).

    The last channel is the disc's arg-max margin, log P(disc) - log max P(other class): positive exactly where the
    U-Net alone would call the pixel disc, so a refiner that adds nothing reproduces the U-Net's decision.
    """
    eps = 1e-4
    others = np.maximum(np.maximum(probs[..., 0], probs[..., 2]), probs[..., 3])
    margin = np.log(np.maximum(probs[..., 1], eps)) - np.log(np.maximum(others, eps))
    return np.concatenate([image[..., None], probs[..., 1:], margin[..., None]], axis=-1, dtype=np.float32)


def labels_to_grid(labels: np.ndarray, affine: np.ndarray, rows: int, cols: int, roi=None) -> np.ndarray:
    """Map a canvas label map (slices, S, S) uint8 onto the input grid (or its ``roi``), nearest neighbour."""
    flags = cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
    m, size = _roi_affine(affine, rows, cols, roi)
    return np.stack([cv2.warpAffine(sl, m, size, flags=flags) for sl in labels])


def _section_pose(mask2d: np.ndarray, row_mm: float, col_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Centre (row, col in mm) and unit long axis (d_row, d_col, posterior) of one 2D section: its PCA."""
    rr, cc = np.nonzero(mask2d)
    pts = np.stack([rr * row_mm, cc * col_mm], axis=1)
    centre = pts.mean(axis=0)
    cov = np.cov((pts - centre).T) if len(pts) > 2 else np.eye(2)
    evals, evecs = np.linalg.eigh(cov)
    axis = evecs[:, int(np.argmax(evals))]
    return centre, (-axis if axis[1] < 0 else axis)


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, 0.5 * cum[-1])])


def disc_pose(mask: np.ndarray, row_mm: float, col_mm: float, slices: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """Centre (row, col in pixels) and unit long axis (d_row, d_col in mm space, pointing posterior) of a disc.
    ``slices``: its :func:`classified_slices`, when the caller has them already (they cost a dilation).

    One frame for every slice of a disc: the area-weighted median of its classified sections' centres and
    angles. Not the PCA of its projection over slices: on real exams a few lateral sections run off into the
    foramen or a neighbour (vb2-18 L2-L3, vb2-20 L3-L4), and their union tilted the frame by 40-70 degrees, so
    the classifier saw a rotated disc and called it herniated.
    """
    if mask.ndim == 2:
        centre, axis = _section_pose(mask, row_mm, col_mm)
        return np.array([centre[0] / row_mm, centre[1] / col_mm]), axis
    poses = [(_section_pose(mask[s], row_mm, col_mm), float(mask[s].sum()))
             for s in (classified_slices(mask) if slices is None else slices)]
    weights = np.array([w for _, w in poses])
    angles = np.array([np.arctan2(a[0], a[1]) for (_, a), _ in poses])  # within ±pi/2: axis[1] >= 0
    angle = _weighted_median(angles, weights)
    row = _weighted_median(np.array([c[0] for (c, _), _ in poses]), weights)
    col = _weighted_median(np.array([c[1] for (c, _), _ in poses]), weights)
    return np.array([row / row_mm, col / col_mm]), np.array([np.sin(angle), np.cos(angle)])


def classified_slices(mask: np.ndarray) -> np.ndarray:
    """Indices of the slices of a 3D disc mask that the classifier looks at: sections holding at least
    :data:`MIN_SLICE_AREA_FRACTION` of the largest one, at least :data:`MIN_SECTION_ON_OUTLINE` of them on the
    disc's central outline (the union of its middle third of sections, grown :data:`OUTLINE_GROW_PX`).

    Why the outline: on real thin-slice exams the network calls lateral structures disc (facet joints, the
    foramen's contents), naming carries them onto the nearest disc, and a section made mostly of such scraps
    looked herniated to the classifier (ivd-42 L2-L3: P 0.9998 on a section 20 % on the disc). A herniation only
    adds a bulge to a section that is mostly disc, so herniated sections stay.
    """
    areas = mask.sum(axis=(1, 2))
    large = np.nonzero(areas >= MIN_SLICE_AREA_FRACTION * areas.max())[0]
    third = max(1, (int(large[-1]) - int(large[0]) + 1) // 3)
    middle = int(round(np.average(large, weights=areas[large])))
    first = max(0, middle - third // 2)
    outline = cv2.dilate(mask[first : first + third].any(axis=0).astype(np.uint8),
                         np.ones((2 * OUTLINE_GROW_PX + 1,) * 2, np.uint8)) > 0
    on_outline = (mask[large] & outline).sum(axis=(1, 2)) / areas[large]
    kept = large[on_outline >= MIN_SECTION_ON_OUTLINE]
    return kept if len(kept) else large


def slab_slices(slice_mm: float) -> int:
    """How many slices of this spacing make one classifier section of about :data:`CLS_SLAB_MM` (1 for 3 mm and
    thicker slices: those are read one by one, as the classifier learnt them)."""
    return max(1, int(round(CLS_SLAB_MM / slice_mm)))


def slabs(slices: np.ndarray, per_slab: int) -> list[np.ndarray]:
    """The sorted ``slices`` in runs of about ``per_slab`` consecutive ones (nearly equal runs, none left thin)."""
    slices = np.asarray(slices)
    count = max(1, int(np.floor(len(slices) / per_slab + 0.5)))
    return [run for run in np.array_split(slices, count) if len(run)]


def crop_affine(centre: np.ndarray, axis: np.ndarray, row_mm: float, col_mm: float) -> np.ndarray:
    """2x3 map from classifier crop pixel (u, v) to input pixel (col, row): disc axis horizontal, the canal in view."""
    e1 = np.asarray(axis, dtype=np.float64)  # (d_row, d_col) in mm, posterior
    e2 = np.array([e1[1], -e1[0]])  # perpendicular; points to the feet when the disc is horizontal
    if e2[0] < 0:
        e2 = -e2
    half = CROP_SIZE / 2.0
    # crop pixel (u, v) -> physical mm (row, col) relative to the disc centre
    c_mm = np.array([centre[0] * row_mm, centre[1] * col_mm]) + CROP_POSTERIOR_SHIFT_MM * e1
    # crop pixel (u, v) -> input pixel (col, row) = (c_mm + (u+0.5-half)*s*e1 + (v+0.5-half)*s*e2) / spacing
    s = CROP_MM_PER_PX
    return np.array(
        [
            [s * e1[1] / col_mm, s * e2[1] / col_mm, (c_mm[1] + (0.5 - half) * s * (e1[1] + e2[1])) / col_mm],
            [s * e1[0] / row_mm, s * e2[0] / row_mm, (c_mm[0] + (0.5 - half) * s * (e1[0] + e2[0])) / row_mm],
        ]
    )


def disc_crop(
    norm_slice: np.ndarray, disc_mask_slice: np.ndarray, centre: np.ndarray, axis: np.ndarray,
    row_mm: float, col_mm: float,
) -> np.ndarray:
    """Classifier input (CROP_SIZE, CROP_SIZE, 2): the disc and the canal behind it, disc axis horizontal."""
    m = crop_affine(centre, axis, row_mm, col_mm)
    # only the input window the crop samples (+2 px for the interpolation taps) is converted to float: the same
    # samples as warping the whole slice, without copying a 512² slice twice per crop
    corners = m @ np.array([[0, 0, CROP_SIZE - 1, CROP_SIZE - 1], [0, CROP_SIZE - 1, 0, CROP_SIZE - 1], [1, 1, 1, 1]])
    rows, cols = norm_slice.shape
    c0, c1 = max(0, int(np.floor(corners[0].min())) - 2), min(cols, int(np.ceil(corners[0].max())) + 3)
    r0, r1 = max(0, int(np.floor(corners[1].min())) - 2), min(rows, int(np.ceil(corners[1].max())) + 3)
    if c0 >= c1 or r0 >= r1:  # the crop lies wholly outside the slice
        return np.zeros((CROP_SIZE, CROP_SIZE, 2), np.float32)
    m[:, 2] -= (c0, r0)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    image = cv2.warpAffine(np.asarray(norm_slice[r0:r1, c0:c1], np.float32), m, (CROP_SIZE, CROP_SIZE), flags=flags)
    mask = cv2.warpAffine(disc_mask_slice[r0:r1, c0:c1].astype(np.float32), m, (CROP_SIZE, CROP_SIZE), flags=flags)
    return np.stack([image, mask], axis=-1)
