"""Step 3: train the candidate classifier on the feedback dataset mixed with replayed original training phantoms.

Replay (the phantoms of the production classifier's own distribution, through the production segmentation's
masks like its training) keeps old skills; the feedback crops teach the new domain. With ``warm_start`` the
search fine-tunes production's weights (learning rate searched), else it searches the architecture from scratch.
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ai_service.registry import CLS_MODEL, SEG_MODEL, ModelRef, ModelRegistry
from ai_service.storage import Storage, is_remote
from pipelines.retrain.config import RetrainConfig
from pipelines.retrain.dataset import concat, load_split
from pipelines.training.data import ClsData, build_cls

REPLAY_SEED = 22  # the shipped classifiers' training seed (pipelines.training.cli.TRAIN_SEED_DEFAULTS["cls"])
REPLAY_VAL_SEED = REPLAY_SEED + 1000


@dataclass
class Candidate:
    model: object  # keras.Model
    training_card: dict  # architecture, training, data, metrics: merged into the model card at registration


def cache_dir(cfg: RetrainConfig) -> Path:
    """Where generated phantoms are kept between runs: beside local data; a bucket's runs use this machine's temp
    dir (regenerated when empty: they come from fixed seeds)."""
    if is_remote(cfg.data_dir):
        return Path(tempfile.gettempdir()) / "ldh-pipeline-cache"
    return Path(cfg.data_dir) / "pipelines" / "cache"


def replay(cfg: RetrainConfig, seg: ModelRef, *, validation: bool) -> ClsData:
    count = max(2, cfg.replay_cases // 4) if validation else cfg.replay_cases
    return build_cls(REPLAY_VAL_SEED if validation else REPLAY_SEED, count, seg=seg,
                     augment=not validation, cache=cache_dir(cfg), workers=cfg.workers)


def train_candidate(storage: Storage, cfg: RetrainConfig, dataset_version: str, verbose: int = 2) -> Candidate:
    import keras

    from pipelines.training.cls import train_cls

    registry = ModelRegistry(cfg.model_store)
    seg = registry.resolve(SEG_MODEL, "production")
    prod = registry.resolve(CLS_MODEL, "production")
    train, _ = load_split(storage, dataset_version, "train")
    val, _ = load_split(storage, dataset_version, "val")
    parts, val_parts = [train], [val]
    if cfg.replay_cases:
        print(f"replaying {cfg.replay_cases} original-distribution phantoms (cached in {cache_dir(cfg)})",
              file=sys.stderr, flush=True)
        parts.append(replay(cfg, seg, validation=False))
        val_parts.append(replay(cfg, seg, validation=True))
    data, valid = concat(*parts), concat(*val_parts)
    if not len(data.y) or not len(valid.y):
        raise ValueError(f"dataset {dataset_version} has no {'training' if not len(data.y) else 'validation'} crops "
                         "and no replay phantoms are configured (LDH_PIPELINE_REPLAY_CASES=0)")
    print(f"training crops: {len(train.y)} feedback + {len(data.y) - len(train.y)} replay; validation "
          f"{len(valid.y)}", file=sys.stderr, flush=True)
    init = keras.saving.load_model(prod.model_file, compile=False) if cfg.warm_start else None
    with tempfile.TemporaryDirectory(prefix="ldh-tuner-") as work:
        model, hps, threshold, metrics, history = train_cls(
            data, valid, epochs=cfg.epochs, batch=cfg.batch, trials=cfg.tuner_trials, seed=cfg.seed,
            workdir=Path(work), verbose=verbose, init=init)
    card = {
        "task": "P(herniation) of one disc on one sagittal slice; disc P = max over its slices",
        "architecture": {"type": "CNN", "hyperparameters": hps,
                         "search": {"tuner": "keras_tuner.RandomSearch", "trials": cfg.tuner_trials},
                         "warm_start": f"{CLS_MODEL}:{prod.version}" if cfg.warm_start else None},
        "operating_threshold": threshold,
        "operating_point": "highest threshold keeping validation disc-level sensitivity >= 0.95",
        "training": {"epochs": cfg.epochs, "batch": cfg.batch, "crops": int(len(data.y)), "history": history,
                     "seed": cfg.seed},
        "data": {"dataset_version": dataset_version, "feedback_crops": int(len(train.y)),
                 "replay": {"generator": "pipelines.phantom (synthetic lumbar MRI phantoms)", "profile": "default",
                            "seed": REPLAY_SEED, "count": cfg.replay_cases, "validation_seed": REPLAY_VAL_SEED},
                 "disc_masks": f"predicted by {SEG_MODEL}:{seg.version} (the serving path)"},
        "metrics": {"validation": metrics},
    }
    return Candidate(model, card)


def save_candidate(candidate: Candidate, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    candidate.model.save(folder / "model.keras")
    (folder / "training.json").write_text(json.dumps(candidate.training_card, indent=2) + "\n")


def load_candidate(folder: Path) -> Candidate:
    import keras

    return Candidate(keras.saving.load_model(Path(folder) / "model.keras", compile=False),
                     json.loads((Path(folder) / "training.json").read_text()))
