"""Seeded random streams: one independent PCG64 stream per concern, all derived from the case seed only.

Independent streams mean that changing one knob (e.g. ``herniation_rate``) leaves the anatomy, the scanner
and the noise of a case untouched, which is what makes with/without-herniation pairs comparable.
"""

from __future__ import annotations

import numpy as np

_STREAMS = {"anatomy": 1, "scanner": 2, "herniation": 3, "contrast": 4, "texture": 5, "noise": 6, "dicom": 7}


def stream(seed: int, name: str) -> np.random.Generator:
    """Generator for one concern of one case."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), _STREAMS[name]])))


def derive_seed(seed: int, index: int) -> int:
    """Seed of case ``index`` of a data set generated from ``seed`` (31 bits, stable across platforms)."""
    state = np.random.SeedSequence([int(seed), int(index), 0x1D4]).generate_state(1, dtype=np.uint32)[0]
    return int(state) & 0x7FFFFFFF
