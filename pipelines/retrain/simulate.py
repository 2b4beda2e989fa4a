"""A simulated radiologist for tests and the learning-loop benchmark: corrections from a phantom's ground truth.

For every AI box on a disc the phantom has, the reviewer sets herniation to the truth and, for a herniated disc,
puts the box on the slice that shows the most herniated material (where a radiologist would mark it); boxes on
levels the phantom lacks are deleted. ``flip`` (a probability) makes a careless reviewer for the gate's control.
"""

from __future__ import annotations

import numpy as np

from ai_service import labels as L


def corrections_from_truth(findings: dict, case, flip: float = 0.0, rng: np.random.Generator | None = None
                           ) -> list[dict]:
    """The ``corrections`` payload of ``POST /api/studies/{study}/feedback``."""
    truth = {lv["level"]: lv for lv in case.truth["levels"]}
    out = []
    for disc in findings["discs"]:
        level = disc["level"]
        if not truth.get(level, {}).get("present"):
            continue  # the AI's box on a disc that is not there: deleted
        herniated = bool(truth[level]["herniation"])
        slice_index = disc["slice_index"]
        if herniated:
            area = (case.herniation_mask & (case.labels == L.disc_label(level))).sum(axis=(1, 2))
            if area.any():
                slice_index = int(np.argmax(area))
        if flip and rng is not None and rng.random() < flip:
            herniated = not herniated
        out.append({"level": level, "slice_index": slice_index, "box": disc["box"], "herniation": herniated,
                    "ai_level": level})
    return out
