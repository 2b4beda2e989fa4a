"""Preview image: one slice with each disc's box, level name and P(herniation), labelled as AI output.

Rendered on the input grid (the boxes' own coordinates), scaled up so the text stays readable.
"""

from __future__ import annotations

import cv2
import numpy as np

from ai_service.findings import Findings
from ai_service.labels import LEVELS
from ai_service.preprocess import normalize_volume

# BGR-free RGB colours, one per level, distinguishable for common colour-vision deficiencies
LEVEL_COLOURS = {
    "L1-L2": (0, 114, 178),
    "L2-L3": (86, 180, 233),
    "L3-L4": (0, 158, 115),
    "L4-L5": (230, 159, 0),
    "L5-S1": (204, 121, 167),
}
HERNIATION_COLOUR = (213, 94, 0)
BANNER = "LDH Assist - AI output, not a diagnosis"
MIN_SIDE = 640


def preview_slice(findings: Findings) -> int:
    """The slice shown: the median of the discs' key slices (the mid-sagittal plane in practice)."""
    if not findings.discs:
        return findings.shape[0] // 2
    return int(np.median([d.slice_index for d in findings.discs]))


def render_preview(array: np.ndarray, findings: Findings, slice_index: int | None = None) -> np.ndarray:
    """RGB uint8 image of one input-grid slice with every disc's box drawn on it."""
    index = preview_slice(findings) if slice_index is None else slice_index
    grey = (normalize_volume(array[index]) * 255).astype(np.uint8)
    rows, cols = grey.shape
    scale = max(1.0, MIN_SIDE / min(rows, cols))
    grey = cv2.resize(grey, (round(cols * scale), round(rows * scale)), interpolation=cv2.INTER_LINEAR)
    rgb = cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)
    thickness = max(1, round(scale))
    font = cv2.FONT_HERSHEY_SIMPLEX
    for disc in sorted(findings.discs, key=lambda d: LEVELS.index(d.level)):
        x0, y0, x1, y1 = (round(v * scale) for v in disc.box)
        colour = HERNIATION_COLOUR if disc.herniation else LEVEL_COLOURS[disc.level]
        cv2.rectangle(rgb, (x0, y0), (x1 - 1, y1 - 1), colour, thickness + (1 if disc.herniation else 0))
        text = f"{disc.level} P={disc.probability:.2f}{' LDH' if disc.herniation else ''}"
        if disc.slice_index != index:
            text += f" (slice {disc.slice_index + 1})"
        _label(rgb, text, (x1 + 4, (y0 + y1) // 2), colour, font)
    _banner(rgb, BANNER, font)
    _banner(rgb, f"models {findings.models.label}  threshold {findings.operating_threshold:.2f}", font, bottom=True)
    if not findings.discs:
        _label(rgb, "no lumbar disc found", (10, rgb.shape[0] // 2), (255, 255, 255), font)
    return rgb


def _label(rgb, text, origin, colour, font, scale=0.5) -> None:
    (w, h), base = cv2.getTextSize(text, font, scale, 1)
    x = min(max(0, origin[0]), rgb.shape[1] - w - 2)
    y = min(max(h + 2, origin[1] + h // 2), rgb.shape[0] - base - 2)
    cv2.rectangle(rgb, (x - 2, y - h - 2), (x + w + 2, y + base), (0, 0, 0), -1)
    cv2.putText(rgb, text, (x, y), font, scale, colour, 1, cv2.LINE_AA)


def _banner(rgb, text, font, bottom: bool = False) -> None:
    h = 22
    y0 = rgb.shape[0] - h if bottom else 0
    rgb[y0 : y0 + h] = (rgb[y0 : y0 + h] * 0.3).astype(np.uint8)
    cv2.putText(rgb, text, (6, y0 + 16), font, 0.5, (255, 255, 0) if not bottom else (220, 220, 220), 1, cv2.LINE_AA)
