"""Step 4: candidate and production on the same data: the frozen phantom set and the dataset's new hold-out.

Operating specificity = production's specificity at its model-card threshold on the set in question; each model
is then read at the threshold that reaches that specificity, so sensitivities compare like with like.
Calibration = Brier score and expected calibration error (10 bins) of the disc probabilities.
Each set's candidate metrics also carry ``vs_production``: the AUC gain with its paired bootstrap lower bound over
patients (:mod:`.bootstrap`), which the gate reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ai_service.labels import LEVELS
from ai_service.registry import CLS_MODEL, SEG_MODEL, ModelRegistry
from ai_service.storage import Storage
from pipelines.retrain.bootstrap import paired_auc_gain
from pipelines.retrain.config import RetrainConfig
from pipelines.retrain.dataset import concat, load_split
from pipelines.retrain.train import cache_dir
from pipelines.training.cls import auc, disc_scores
from pipelines.training.data import ClsData, build_cls

FROZEN_SEED = 5050  # the frozen evaluation phantoms: never a training seed, the same for every run
SETS = ("holdout", "frozen", "pooled")


@dataclass
class EvalSet:
    data: ClsData
    levels: np.ndarray  # level per crop


def frozen_set(cfg: RetrainConfig) -> EvalSet:
    seg = ModelRegistry(cfg.model_store).resolve(SEG_MODEL, "production")
    data = build_cls(FROZEN_SEED, cfg.frozen_eval_cases, seg=seg, augment=False,
                     cache=cache_dir(cfg), workers=cfg.workers)
    return EvalSet(data, np.asarray([d.split(":", 1)[1] for d in data.disc]))


def holdout_set(storage: Storage, version: str) -> EvalSet:
    data, levels = load_split(storage, version, "test", for_evaluation=True)  # every slice of every disc, as served
    return EvalSet(data, np.asarray(levels))


def evaluation_sets(storage: Storage, cfg: RetrainConfig, version: str) -> dict[str, EvalSet]:
    holdout, frozen = holdout_set(storage, version), frozen_set(cfg)
    frozen.data.disc = np.asarray([f"frozen:{d}" for d in frozen.data.disc])
    pooled = EvalSet(concat(holdout.data, frozen.data), np.concatenate([holdout.levels, frozen.levels]))
    return {"holdout": holdout, "frozen": frozen, "pooled": pooled}


def predict(model, data: ClsData) -> np.ndarray:
    if not len(data.y):
        return np.zeros(0)
    return model.predict(data.x.astype(np.float32), batch_size=256, verbose=0)[:, 0]


def threshold_for_specificity(scores: np.ndarray, truth: np.ndarray, specificity: float) -> float:
    """Lowest threshold at which at least ``specificity`` of the negatives score below it."""
    neg = np.sort(scores[truth <= 0.5])
    if not len(neg):
        return 0.5
    k = int(np.ceil(specificity * len(neg) - 1e-9))
    return float(neg[k - 1] + 1e-9) if k > 0 else float(neg[0])


def calibration(scores: np.ndarray, truth: np.ndarray, bins: int = 10) -> dict:
    idx = np.clip((scores * bins).astype(int), 0, bins - 1)
    ece = sum(abs(scores[idx == b].mean() - truth[idx == b].mean()) * (idx == b).mean()
              for b in range(bins) if (idx == b).any())
    return {"brier": float(np.mean((scores - truth) ** 2)) if len(scores) else float("nan"), "ece": float(ece)}


def disc_level(disc_ids: np.ndarray, crop_levels: np.ndarray) -> np.ndarray:
    """The level of each disc in :func:`disc_scores`'s order (sorted unique disc ids)."""
    ids, first = np.unique(disc_ids, return_index=True)
    return crop_levels[first]


def disc_patient(disc_ids: np.ndarray) -> np.ndarray:
    """The patient (or phantom case) of each disc in :func:`disc_scores`'s order: the id without its level."""
    return np.asarray([d.rsplit(":", 1)[0] for d in np.unique(disc_ids)])


def set_metrics(scores: np.ndarray, truth: np.ndarray, levels: np.ndarray, specificity: float) -> dict:
    t = threshold_for_specificity(scores, truth, specificity)
    pos, neg = truth > 0.5, truth <= 0.5
    pred = scores >= t
    return {
        "auc": auc(scores, truth), "operating_specificity": specificity, "threshold": t,
        "sensitivity": float(pred[pos].mean()) if pos.any() else float("nan"),
        "specificity": float((~pred[neg]).mean()) if neg.any() else float("nan"),
        "confusion": [[int((~pred & neg).sum()), int((pred & neg).sum())],
                      [int((~pred & pos).sum()), int((pred & pos).sum())]],
        **calibration(scores, truth),
        "auc_per_level": {lv: auc(scores[levels == lv], truth[levels == lv]) for lv in LEVELS},
        "discs": int(len(truth)), "herniated_discs": int(truth.sum()),
    }


def compare(sets: dict[str, EvalSet], candidate, production, production_threshold: float) -> tuple[dict, dict]:
    """Metrics per set for both models, and the disc scores behind them (for plots)."""
    metrics, curves = {"candidate": {}, "production": {}}, {}
    for name, s in sets.items():
        levels = disc_level(s.data.disc, s.levels)
        p_scores, truth = disc_scores(predict(production, s.data), s.data)
        c_scores, _ = disc_scores(predict(candidate, s.data), s.data)
        neg = truth <= 0.5
        spec = float((p_scores[neg] < production_threshold).mean()) if neg.any() else 0.95
        metrics["production"][name] = set_metrics(p_scores, truth, levels, spec)
        metrics["candidate"][name] = set_metrics(c_scores, truth, levels, spec) | {"vs_production": paired_auc_gain(
            truth, c_scores, p_scores, disc_patient(s.data.disc)).as_dict()}
        curves[name] = {"truth": truth, "production": p_scores, "candidate": c_scores}
    return metrics, curves


def roc_points(scores: np.ndarray, truth: np.ndarray) -> tuple[list[float], list[float], list[float]]:
    """(fpr, tpr, thresholds) from the highest threshold down (what KFP's ClassificationMetrics takes)."""
    thresholds = np.unique(np.concatenate([[1.0 + 1e-6], scores]))[::-1]
    pos, neg = truth > 0.5, truth <= 0.5
    tpr = [float((scores[pos] >= t).mean()) if pos.any() else 0.0 for t in thresholds]
    fpr = [float((scores[neg] >= t).mean()) if neg.any() else 0.0 for t in thresholds]
    return fpr, tpr, [float(min(t, 1.0)) for t in thresholds]


def production_classifier(cfg: RetrainConfig):
    import keras

    ref = ModelRegistry(cfg.model_store).resolve(CLS_MODEL, "production")
    return ref, keras.saving.load_model(ref.model_file, compile=False)
