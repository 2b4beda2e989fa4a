"""Scores on real exams (``pipelines.importers.real_spine``): what ``bench/real.py`` reports and the tests check.

Every figure is computed on the manual mask's own 1 mm grid: a prediction on any resampling of the exam is moved
back there in patient space (nearest), as a reader would compare it with the mask.

- IVD exams (discs labelled): per level disc Dice; a level is named right when the predicted disc of that name
  overlaps the manual disc of that name more than any other, and vice versa.
- VB2 exams (bodies labelled, T11 … L5): a predicted disc is named right when its centre lies between the centres
  of the two bodies its name says (L5-S1: below L5's centre, within one body spacing).
- Both: herniation calls at the operating threshold (every disc of these healthy volunteers is a negative), or the
  "not analysable" reason when the product declined the exam.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ai_service import labels as L
from ai_service.errors import InputError
from ai_service.volume import load_volume
from pipelines.importers.real_spine import IVD, RealExam, clinical_like, native_volume, to_grid_of

# how the benchmark shows each exam to the product: as given (1 mm), in the files' own array order, and as a
# thick-slice PACS series (4 mm slices, 0.43 mm pixels like the IVD acquisition; 3.5 mm, 0.8 mm)
VARIANTS = ("given", "native", "4mm", "3.5mm")


@dataclass
class ExamScore:
    exam: str
    variant: str
    analysable: bool
    reason: str | None = None
    dice: dict[str, float] = field(default_factory=dict)  # IVD only
    levels_correct: dict[str, bool] = field(default_factory=dict)
    herniation_calls: int = 0
    wrong_levels: int = 0  # levels reported under a wrong name: the error "not analysable" exists to prevent
    probabilities: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def variant_of(exam: RealExam, variant: str):
    """The volume the product is given for ``variant``."""
    if variant == "given":
        return exam.volume
    if variant == "native":  # through a file, as a converter's MHA arrives (the loader sorts the axes)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{exam.name}.mha"
            volume = native_volume(exam)
            sitk.WriteImage(volume.to_sitk(), str(path))
            return load_volume(path)
    if variant == "4mm":
        return clinical_like(exam, 4.0, 0.43).volume
    if variant == "3.5mm":
        return clinical_like(exam, 3.5, 0.8).volume
    raise ValueError(f"unknown variant {variant!r}; one of {', '.join(VARIANTS)}")


def score_exam(engine, exam: RealExam, variant: str) -> ExamScore:
    volume = variant_of(exam, variant)
    try:
        analysis = engine.analyze(volume)
    except InputError as exc:
        return ExamScore(exam.name, variant, False, reason=str(exc),
                         levels_correct=dict.fromkeys(L.LEVELS, False))
    findings = analysis.findings
    predicted = to_grid_of(exam, volume, analysis.label_map)
    score = ExamScore(exam.name, variant, findings.not_analysable is None, reason=findings.not_analysable,
                      herniation_calls=sum(d.herniation for d in findings.discs),
                      probabilities={d.level: d.probability for d in findings.discs})
    if exam.dataset == IVD:
        score.dice, score.levels_correct = _ivd_scores(predicted, exam.labels)
    else:
        score.levels_correct = _vb2_levels(predicted, exam.labels)
    score.wrong_levels = sum(1 for d in findings.discs if not score.levels_correct[d.level])
    return score


def _ivd_scores(predicted: np.ndarray, truth: np.ndarray) -> tuple[dict[str, float], dict[str, bool]]:
    dice, correct = {}, {}
    values = [L.disc_label(level) for level in L.LEVELS]
    overlap = np.array([[np.count_nonzero((predicted == p) & (truth == t)) for t in values] for p in values])
    for i, level in enumerate(L.LEVELS):
        p, t = predicted == values[i], truth == values[i]
        total = np.count_nonzero(p) + np.count_nonzero(t)
        dice[level] = round(2.0 * overlap[i, i] / total, 4) if total else 1.0
        correct[level] = bool(overlap[i, i] > 0 and overlap[i].argmax() == i and overlap[:, i].argmax() == i)
    return dice, correct


def _vb2_levels(predicted: np.ndarray, truth: np.ndarray) -> dict[str, bool]:
    bodies = {name: L.vertebra_label(name) for name in ("L1", "L2", "L3", "L4", "L5")}
    centre = {name: float(np.nonzero(truth == v)[1].mean()) for name, v in bodies.items()}  # canonical rows
    spacing = float(np.mean(np.diff([centre[n] for n in ("L1", "L2", "L3", "L4", "L5")])))
    out = {}
    for level in L.LEVELS:
        rows = np.nonzero(predicted == L.disc_label(level))[1]
        if not len(rows):
            out[level] = False
            continue
        upper, lower = level.split("-")
        top = centre[upper]
        bottom = centre[lower] if lower in centre else top + spacing
        out[level] = bool(top < float(rows.mean()) < bottom)
    return out


def summarise(scores: list[ExamScore]) -> dict:
    """Figures per variant: mean and worst per-level Dice (IVD), share of levels named right, herniation calls."""
    out = {}
    for variant in sorted({s.variant for s in scores}, key=VARIANTS.index):
        mine = [s for s in scores if s.variant == variant]
        dice = [v for s in mine for v in s.dice.values()]
        per_level = {lv: float(np.mean([s.dice[lv] for s in mine if s.dice])) for lv in L.LEVELS
                     if any(s.dice for s in mine)}
        levels = [v for s in mine for v in s.levels_correct.values()]
        out[variant] = {
            "exams": len(mine),
            "not_analysable": sum(not s.analysable for s in mine),
            "mean_disc_dice": float(np.mean(dice)) if dice else None,
            "worst_level_dice": min(per_level.values()) if per_level else None,
            "disc_dice_by_level": per_level,
            "levels_correct": float(np.mean(levels)) if levels else 0.0,
            "wrong_levels_reported": int(sum(s.wrong_levels for s in mine)),
            "herniation_calls": int(sum(s.herniation_calls for s in mine)),
        }
    return out
