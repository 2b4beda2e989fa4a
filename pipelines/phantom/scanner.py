"""Scanner geometry of one series: matrix, spacing, slices and where the field of view sits on the patient.

FOV edges are placed inside vertebral bodies (never through a disc), so every disc level is either wholly in
the image or wholly out of it, and truth's ``present`` is unambiguous.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .anatomy import Anatomy
from .profile import PhantomProfile
from .render import Grid, disc_outline

_TOP_BODY = {"T10": 0, "T11": 1, "T12": 2, "L1": 3, "L2": 4}
_MARGIN = 3.0  # mm between an FOV edge and the nearest disc


@dataclass(frozen=True)
class Acquisition:
    grid: Grid
    n_slices: int
    slice_thickness: float
    slice_spacing: float
    r0: float                      # lateral position (mm toward patient right) of slice 0
    patient_offset: tuple[float, float, float]   # LPS mm added to anatomy coordinates
    fov_rule: str

    def slice_positions(self) -> np.ndarray:
        return self.r0 + self.slice_spacing * np.arange(self.n_slices)

    @property
    def spacing(self) -> tuple[float, float, float]:
        return (self.grid.spacing, self.grid.spacing, self.slice_spacing)

    @property
    def origin(self) -> tuple[float, float, float]:
        """LPS of voxel (0, 0, 0): x = -r (slices go to patient right), y = a (posterior), z = -s (superior)."""
        x, y, z = self.patient_offset
        return (round(x - self.r0, 4), round(y + self.grid.a0, 4), round(z - self.grid.s0, 4))


def disc_intervals(anat: Anatomy) -> list[tuple[float, float]]:
    """s-extent (mm) of every disc at midline, top to bottom, widened by the margin."""
    out = []
    for d in anat.discs:
        res = disc_outline(anat, d, float(anat.lateral_shift(d.centre[1])))
        s = res[0][:, 1]
        out.append((float(s.min()) - _MARGIN, float(s.max()) + _MARGIN))
    return out


def _pick(rng: np.random.Generator, probs) -> str:
    names = list(probs)
    p = np.asarray([probs[n] for n in names], dtype=float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _matrix(rng, profile: PhantomProfile) -> tuple[int, int, float]:
    lo, hi = profile.matrix
    rows = int(rng.integers(lo // 16, hi // 16 + 1)) * 16
    sp_lo = max(profile.pixel_spacing[0], profile.fov_mm[0] / rows)
    sp_hi = min(profile.pixel_spacing[1], profile.fov_mm[1] / rows)
    spacing = round(float(rng.uniform(sp_lo, max(sp_lo, sp_hi))), 4)
    cols = rows
    if rng.random() < profile.rectangular_prob:
        want = max(lo, int(np.ceil(220.0 / spacing / 16)) * 16)
        cols = int(rng.integers(min(want, rows) // 16, rows // 16 + 1)) * 16
    return rows, cols, spacing


def sample_acquisition(rng: np.random.Generator, profile: PhantomProfile, anat: Anatomy) -> Acquisition:
    rows, cols, spacing = _matrix(rng, profile)
    n = int(rng.integers(profile.slices[0], profile.slices[1] + 1))
    thick = round(float(rng.uniform(*profile.slice_thickness)), 2)
    gap = thick * float(rng.uniform(*profile.slice_gap_fraction))
    step = round(min(thick + gap, profile.max_slice_spacing), 2)

    # vertical placement: the top edge inside the chosen body, the bottom edge below L5-S1 and not in a disc
    intervals = disc_intervals(anat)          # T10-T11 ... L5-S1
    bodies = anat.bodies
    rule = _pick(rng, profile.fov_top_probs)
    j = _TOP_BODY[rule]
    height = rows * spacing
    tail = anat.sacrum[-1].centre[1] + 40.0      # radiographers centre on the lumbar spine, not the pelvis
    while j > 0 and intervals[j - 1][1] + height > tail + 60.0 and rng.random() < 0.8:
        j -= 1
    hi_s = intervals[j][0]
    lo_s = intervals[j - 1][1] if j > 0 else bodies[0].centre[1] - 0.3 * bodies[0].half_height
    top = float(rng.uniform(lo_s, max(lo_s, hi_s)))
    need = intervals[-1][1] + 2.0 - height
    if top < need:
        top = need + float(rng.uniform(0.0, 10.0))
    for _ in range(len(intervals)):
        bad = [iv for iv in intervals if iv[0] < top < iv[1]]   # the bottom is already below every disc
        if not bad:
            break
        top = max(iv[1] for iv in bad) + float(rng.uniform(0.5, 4.0))
    top_body = next((b.name for b, iv in zip(bodies, intervals) if top < iv[0]), "L5")

    # AP placement: posterior skin near the right edge (sometimes touching it)
    w = anat.wall
    skin = w.points + (w.post_skin + w.paraspinal_bulge)[:, None] * w.normals
    inside = (skin[:, 1] > top) & (skin[:, 1] < top + height)
    a_max = float(skin[inside, 0].max()) + float(rng.uniform(-4.0, 40.0))
    a0 = round(a_max - (cols - 0.5) * spacing, 3)
    s0 = round(top + 0.5 * spacing, 3)

    offset = float(rng.uniform(*profile.lateral_offset_mm))
    r0 = round(-(n - 1) / 2 * step + offset, 3)
    patient = (round(float(rng.uniform(-5, 5)), 1), round(float(rng.uniform(-30, 30)), 1),
               round(float(rng.uniform(-60, 60)), 1))
    return Acquisition(Grid(rows, cols, a0, s0, spacing), n, thick, step, r0, patient, f"top in {top_body}")
