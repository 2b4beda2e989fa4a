"""``ldh evaluate``: the shipped (or configured) models against a phantom hold-out, end to end.

Every case goes through the same engine as ``ldh analyze``; the figures describe synthetic phantoms only.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ai_service import labels as L
from ai_service.config import Settings
from pipelines.training.cls import auc, sens_spec
from pipelines.training.data import case_seed
from pipelines.training.seg import mask_dice


@dataclass
class Tally:
    dice: dict[str, list[float]] = field(default_factory=lambda: {lv: [] for lv in L.LEVELS})
    levels_total: int = 0
    levels_right: int = 0
    false_levels: int = 0
    scores: list[float] = field(default_factory=list)
    truth: list[float] = field(default_factory=list)
    score_levels: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def _generate(args):
    from pipelines.phantom import generate_case

    seed, rate, profile = args
    return generate_case(seed, herniation_rate=rate, profile=profile)


def score_case(case, analysis, threshold_probs: Tally) -> None:
    """Compare one analysis with its phantom's truth and add to the tally."""
    t = threshold_probs
    truth = {lv["level"]: lv for lv in case.truth["levels"]}
    pred = analysis.label_map
    predicted = {d.level: d for d in analysis.findings.discs}
    for level in L.LEVELS:
        value = L.disc_label(level)
        gt = case.labels == value
        if not truth[level]["present"]:
            if level in predicted:
                t.false_levels += 1
            continue
        pr = pred == value
        t.dice[level].append(mask_dice(gt, pr))
        t.levels_total += 1
        if pr.any():
            # right when the predicted component overlaps this truth disc more than any other truth disc
            overlaps = {lv: int(((case.labels == L.disc_label(lv)) & pr).sum()) for lv in L.LEVELS}
            t.levels_right += int(max(overlaps, key=overlaps.get) == level and overlaps[level] > 0)
        t.scores.append(predicted[level].probability if level in predicted else 0.0)
        t.truth.append(float(truth[level]["herniation"]))
        t.score_levels.append(level)


def metrics_of(t: Tally, threshold: float) -> dict:
    scores, truth = np.asarray(t.scores), np.asarray(t.truth)
    sens, spec = sens_spec(scores, truth, threshold)
    all_dice = [d for v in t.dice.values() for d in v]
    per_level_auc = {}
    for level in L.LEVELS:
        sel = np.asarray(t.score_levels) == level
        per_level_auc[level] = auc(scores[sel], truth[sel]) if sel.any() else float("nan")
    return {
        "data": "synthetic phantom hold-out (not clinical data)",
        "mean_disc_dice": float(np.mean(all_dice)) if all_dice else float("nan"),
        "dice_per_level": {lv: float(np.mean(v)) if v else float("nan") for lv, v in t.dice.items()},
        "level_assignment_accuracy": t.levels_right / max(1, t.levels_total),
        "levels_evaluated": t.levels_total,
        "false_levels": t.false_levels,
        "herniation_auc": auc(scores, truth),
        "herniation_auc_per_level": per_level_auc,
        "operating_threshold": threshold,
        "sensitivity": sens,
        "specificity": spec,
        "discs": int(len(scores)),
        "herniated_discs": int(truth.sum()),
        "median_seconds_per_case": float(np.median(t.seconds)) if t.seconds else float("nan"),
    }


def plots(t: Tally, threshold: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores, truth = np.asarray(t.scores), np.asarray(t.truth)
    thresholds = np.unique(np.concatenate([[0.0, 1.0 + 1e-9], scores]))[::-1]
    tpr = [float((scores[truth > 0.5] >= th).mean()) if truth.any() else 0.0 for th in thresholds]
    fpr = [float((scores[truth <= 0.5] >= th).mean()) if (truth <= 0.5).any() else 0.0 for th in thresholds]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr, lw=2, label=f"AUC = {auc(scores, truth):.3f}")
    s, sp = sens_spec(scores, truth, threshold)
    ax.plot([1 - sp], [s], "o", label=f"operating point (t={threshold:.2f})")
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="Herniation ROC (synthetic phantoms)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "roc.png", dpi=100)
    plt.close(fig)

    bins = np.linspace(0, 1, 11)
    idx = np.clip(np.digitize(scores, bins) - 1, 0, 9)
    mean_p = [scores[idx == b].mean() if (idx == b).any() else np.nan for b in range(10)]
    frac = [truth[idx == b].mean() if (idx == b).any() else np.nan for b in range(10)]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.plot(mean_p, frac, "o-")
    ax.set(xlabel="predicted P(herniation)", ylabel="observed fraction herniated",
           title="Calibration (synthetic phantoms)")
    fig.tight_layout()
    fig.savefig(out / "calibration.png", dpi=100)
    plt.close(fig)


def evaluate(settings: Settings, *, count: int, seed: int, herniation_rate: float = 0.35, profile: str = "default",
             workers: int = 1, progress=None) -> tuple[dict, Tally]:
    import time

    from ai_service.engine import InferenceEngine
    from ai_service.volume import Volume

    engine = InferenceEngine(settings)
    engine.warm_up()
    tally = Tally()
    jobs = [(case_seed(seed, i), herniation_rate, profile) for i in range(count)]
    with mp.get_context("spawn").Pool(max(1, workers)) as pool:
        for i, case in enumerate(pool.imap(_generate, jobs)):
            volume = Volume(case.image.astype(np.float32), case.spacing, case.origin, case.direction, "mha")
            t0 = time.perf_counter()
            analysis = engine.analyze(volume)
            tally.seconds.append(time.perf_counter() - t0)
            score_case(case, analysis, tally)
            if progress:
                progress(i + 1, count)
    metrics = metrics_of(tally, engine.threshold)
    metrics["models"] = {"segmentation": engine.seg_ref.version, "classification": engine.cls_ref.version}
    metrics["holdout"] = {"count": count, "seed": seed, "profile": profile, "herniation_rate": herniation_rate}
    return metrics, tally


def run_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from pipelines.training.cli import _progress

    args.out.mkdir(parents=True, exist_ok=True)
    metrics, tally = evaluate(settings, count=args.count, seed=args.seed, herniation_rate=args.herniation_rate,
                              profile=args.profile, workers=args.workers, progress=_progress("hold-out phantoms"))
    plots(tally, metrics["operating_threshold"], args.out)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print("Hold-out of synthetic phantoms (not clinical data):")
    for level in L.LEVELS:
        print(f"  {level}: Dice {metrics['dice_per_level'][level]:.3f}  AUC {metrics['herniation_auc_per_level'][level]:.3f}")
    print(f"  mean disc Dice {metrics['mean_disc_dice']:.4f}")
    print(f"  level assignment {metrics['level_assignment_accuracy'] * 100:.2f}% of {metrics['levels_evaluated']} "
          f"levels, {metrics['false_levels']} false levels")
    print(f"  herniation AUC {metrics['herniation_auc']:.4f}; at threshold {metrics['operating_threshold']:.3f}: "
          f"sensitivity {metrics['sensitivity']:.3f}, specificity {metrics['specificity']:.3f}")
    print(f"wrote {args.out / 'metrics.json'}, {args.out / 'roc.png'}, {args.out / 'calibration.png'}", file=sys.stderr)
    return 0
