"""Herniation sampling: which present levels herniate, on which side, how big, and what shape.

Parameters are drawn for every level whether or not it herniates, from a stream of their own, so the same seed
with a different ``herniation_rate`` keeps identical anatomy and only adds or removes herniated material.
"""

from __future__ import annotations

import numpy as np

from ai_service.labels import LEVELS
from .anatomy import Anatomy, Herniation
from .profile import PhantomProfile


def sample_herniations(rng: np.random.Generator, profile: PhantomProfile, anat: Anatomy, rate: float,
                       present: dict[str, bool]) -> list[Herniation]:
    out = []
    sides = list(profile.herniation_side_probs)
    p = np.asarray([profile.herniation_side_probs[s] for s in sides], float)
    for i, level in enumerate(LEVELS):
        u = float(rng.random())
        side = sides[int(rng.choice(len(sides), p=p / p.sum()))]
        size = float(rng.uniform(*profile.herniation_size_mm))
        half_width = float(rng.uniform(*profile.herniation_half_width_mm))
        offset = float(rng.uniform(*profile.paracentral_offset_mm))
        central = float(rng.uniform(-1.5, 1.5))
        extrusion = bool(rng.random() < profile.extrusion_prob)
        base = float(rng.uniform(0.3, 0.5)) * (0.6 if extrusion else 1.0)
        tip = float(rng.uniform(0.55, 1.1)) if extrusion else float(rng.uniform(0.2, 0.45))
        migrate = bool(rng.random() < profile.migration_prob)
        migration = float(rng.uniform(*profile.migration_mm)) * float(rng.choice([-1.0, 1.0])) if migrate else 0.0
        power = float(rng.uniform(2.2, 4.0))
        if not present.get(level, False) or u >= rate:
            continue
        centre = {"central": central, "left": -offset, "right": offset}[side]   # r is toward patient right
        out.append(Herniation(i + 1, side, centre, half_width, size, base, tip, migration, power,
                              "extrusion" if extrusion else "protrusion"))
    return out


def keep_inside(anat: Anatomy, herniations: list[Herniation], s_top: float, s_bottom: float) -> None:
    """Drop a migration that would carry herniated material across an FOV edge."""
    for h in herniations:
        d = anat.disc_by_level(h.disc - 1)
        reach = abs(h.migration) + h.tip_half * d.height + 2.0
        if d.centre[1] - reach < s_top or d.centre[1] + reach > s_bottom:
            h.migration = 0.0
