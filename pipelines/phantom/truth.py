"""Per-level ground truth read back from the label map itself, so truth.json and labels.mha always agree."""

from __future__ import annotations

import numpy as np

from ai_service.labels import LEVELS, disc_label
from .anatomy import Herniation


def bbox(mask2d: np.ndarray) -> list[int]:
    """[x0, y0, x1, y1] in pixel-edge coordinates (columns x0..x1-1, rows y0..y1-1)."""
    rows = np.flatnonzero(mask2d.any(axis=1))
    cols = np.flatnonzero(mask2d.any(axis=0))
    return [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1]


def level_truth(labels: np.ndarray, herniated: np.ndarray, herniations: list[Herniation],
                degenerated: dict[str, bool]) -> list[dict]:
    """One entry per reported level (L1-L2 ... L5-S1).

    ``herniated`` flags voxels whose majority sub-slice material was herniated; the key slice of a herniated
    disc is the one with most herniated voxels, otherwise the one with the largest disc area.
    """
    by_level = {LEVELS[h.disc - 1]: h for h in herniations}
    out = []
    for level in LEVELS:
        mask = labels == disc_label(level)
        area = mask.sum(axis=(1, 2))
        entry = {"level": level, "present": bool(area.any()), "herniation": False, "herniation_side": None,
                 "herniation_size_mm": 0, "herniation_type": None, "migration_mm": 0,
                 "degenerated": bool(degenerated[level]), "slice_index": None, "box": None}
        if entry["present"]:
            h = by_level.get(level)
            h_area = (mask & herniated).sum(axis=(1, 2)) if h is not None else None
            if h is not None and h_area.any():
                key = int(np.argmax(h_area))
                entry.update(herniation=True, herniation_side=h.side, herniation_size_mm=round(h.size, 2),
                             herniation_type=h.kind,
                             migration_mm=round(h.migration, 2))
            else:
                key = int(np.argmax(area))
            entry["slice_index"] = key
            entry["box"] = bbox(mask[key])
        out.append(entry)
    return out
