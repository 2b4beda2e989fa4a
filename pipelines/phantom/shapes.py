"""Small 2D geometry helpers in physical mm (sagittal plane: a = toward posterior, s = toward inferior).

A local frame has x toward posterior and y toward inferior of a structure tilted by ``tilt`` radians (its up
axis leaning anteriorly for a positive tilt); ``to_world`` maps local points into the plane.
"""

from __future__ import annotations

import numpy as np

_T = np.linspace(0.0, 2.0 * np.pi, 56, endpoint=False)
_COS, _SIN = np.cos(_T), np.sin(_T)


def rotation(tilt: float) -> np.ndarray:
    """Local (x, y) -> world (a, s) rotation matrix."""
    c, s = np.cos(tilt), np.sin(tilt)
    return np.array([[c, s], [-s, c]])


def to_world(points: np.ndarray, centre: np.ndarray, tilt: float) -> np.ndarray:
    return points @ rotation(tilt).T + centre


def up(tilt: float) -> np.ndarray:
    """Unit vector along a structure's superior axis."""
    return np.array([-np.sin(tilt), -np.cos(tilt)])


def posterior(tilt: float) -> np.ndarray:
    """Unit vector along a structure's posterior axis."""
    return np.array([np.cos(tilt), -np.sin(tilt)])


def superellipse(ant: float, post: float, top: float, bottom: float, n: float = 4.0,
                 concavity: float = 0.0) -> np.ndarray:
    """Rounded rectangle (|x|^n + |y|^n = 1 per quadrant) with its own half-size on each side.

    ``concavity`` pushes the middle of the top and bottom sides inward (vertebral endplates are concave).
    """
    e = 2.0 / n
    cx, sy = np.abs(_COS) ** e, np.abs(_SIN) ** e
    x = np.where(_COS >= 0, post, ant) * np.sign(_COS) * cx
    y = np.where(_SIN >= 0, bottom, top) * np.sign(_SIN) * sy
    if concavity > 0:
        half = np.where(x >= 0, post, ant)
        xn = np.clip(np.abs(x) / np.maximum(half, 1e-6), 0, 1)
        yn = np.abs(_SIN) ** 6
        y = y - np.sign(y) * concavity * (1 - xn ** 2) * yn
    return np.stack([x, y], axis=1)


def ellipse(rx: float, ry: float, cx: float = 0.0, cy: float = 0.0) -> np.ndarray:
    return np.stack([cx + rx * _COS, cy + ry * _SIN], axis=1)


def quad_bezier(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, n: int = 8) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2


def lateral(r: float, half_width: float, power: float = 2.0) -> float:
    """Fraction of a structure's midline AP size left at lateral offset r (superellipse cross-section)."""
    u = abs(r) / half_width
    return float((1.0 - u ** power) ** (1.0 / power)) if u < 1.0 else 0.0


def lateral_array(r: np.ndarray, half_width: float | np.ndarray, power: float = 2.0) -> np.ndarray:
    u = np.minimum(np.abs(r) / half_width, 1.0)
    return (1.0 - u ** power) ** (1.0 / power)


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Half-open index ranges of consecutive True values."""
    m = np.concatenate([[False], mask, [False]]).astype(np.int8)
    d = np.diff(m)
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))


def herniation_outline(base_x: float, size: float, base_half: float, tip_half: float, migration: float,
                       power: float, n: int = 14) -> np.ndarray:
    """Disc material pushed posteriorly beyond ``base_x`` (disc-local frame) by ``size`` mm.

    The half-height goes from ``base_half`` at the neck to ``tip_half`` at the dome (an extrusion has a dome
    wider than its neck), and the dome drifts by ``migration`` mm (positive = inferior).
    """
    t = np.linspace(0.0, 1.0, n)
    x = base_x - 1.5 + (size + 1.5) * t
    half = (base_half + (tip_half - base_half) * np.sqrt(t)) * (1.0 - t ** power) ** (1.0 / power)
    centre = migration * t ** 1.5
    top = np.stack([x, centre - half], axis=1)
    bottom = np.stack([x, centre + half], axis=1)[::-1]
    return np.concatenate([top, bottom])
