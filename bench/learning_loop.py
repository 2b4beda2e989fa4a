"""Closed-loop benchmark: does feedback from a shifted domain make the classifier better there, and does the gate
refuse a careless reviewer? Synthetic phantoms only; nothing here is a clinical figure.

1. production (cls-v2, trained on the ``default`` phantom profile) is measured on a ``shifted`` hold-out
   (different contrast, scanner and herniation shapes);
2. ``--studies`` shifted studies go through the real API (upload, analysis) and get corrections from the phantom
   truth (pipelines.retrain.simulate), then ``ldh pipeline run``'s code runs locally (kfp SubprocessRunner);
3. the new candidate is measured on the same shifted hold-out; the gate's decision is reported;
4. control: the same with ``--flip`` of the labels flipped, in a fresh data dir and store: the gate must refuse.

``python -m bench.learning_loop`` writes bench/results/learning_loop.json. Both arms and later runs share one phantom
cache (``--cache``; its entries are keyed by seed, generator code and segmentation weights); ``--work`` keeps the data
dirs (run reports, ``evaluation.json``) instead of a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from ai_service.config import SHIPPED_MODEL_STORE, Settings
from ai_service.registry import CLS_MODEL, SEG_MODEL, ModelRegistry
from bench.common import write_result

HOLDOUT_SEED = 4242
STUDY_SEED = 990_000
KEY = "bench-learning-loop"
CACHE = Path(__file__).resolve().parent.parent / ".cache" / "learning-loop"


def store_copy(root: Path) -> Path:
    store = root / "models"
    for name in (SEG_MODEL, CLS_MODEL):
        version = json.loads((SHIPPED_MODEL_STORE / name / "aliases.json").read_text())["production"]
        shutil.copytree(SHIPPED_MODEL_STORE / name / version, store / name / version)
        shutil.copy(SHIPPED_MODEL_STORE / name / "aliases.json", store / name / "aliases.json")
    return store


def review(settings: Settings, count: int, flip: float) -> None:
    from fastapi.testclient import TestClient

    from ai_service.api import create_app
    from pipelines.phantom import generate_case, write_case
    from pipelines.retrain.simulate import corrections_from_truth

    headers = {"Authorization": "Bearer bench"}
    rng = np.random.default_rng(7)
    with TestClient(create_app(settings)) as client, tempfile.TemporaryDirectory() as tmp:
        for i in range(count):
            case = generate_case(STUDY_SEED + i, herniation_rate=0.4, profile="shifted")
            folder = write_case(case, Path(tmp) / str(i), formats=("dicom",))
            files = [("files", (p.name, p.read_bytes(), "application/dicom")) for p in sorted((folder / "dicom").iterdir())]
            r = client.post("/api/studies?wait=300", headers=headers, files=files)
            assert r.status_code in (200, 201), r.text
            study = case.truth["study_instance_uid"]
            findings = client.get(f"/api/studies/{study}/findings", headers=headers).json()
            r = client.post(f"/api/studies/{study}/feedback", headers=headers, json={
                "action": "corrections", "corrections": corrections_from_truth(findings, case, flip, rng)})
            assert r.status_code in (200, 201), r.text
            print(f"\rreviewed {i + 1}/{count}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)


def shifted_auc(store: Path, version: str, cases: int, cache: Path) -> float:
    import keras

    from pipelines.training.cls import auc, disc_scores
    from pipelines.training.data import build_cls

    registry = ModelRegistry(store)
    data = build_cls(HOLDOUT_SEED, cases, seg=registry.resolve(SEG_MODEL), augment=False,
                     profile="shifted", herniation_rate=0.4, cache=cache)
    model = keras.saving.load_model(registry.resolve(CLS_MODEL, version).model_file, compile=False)
    return auc(*disc_scores(model.predict(data.x.astype(np.float32), batch_size=256, verbose=0)[:, 0], data))


def loop(root: Path, args, flip: float) -> dict:
    from pipelines.retrain.config import RetrainConfig
    from pipelines.retrain.runner import run_local

    store = store_copy(root)
    cache = root / "data" / "pipelines" / "cache"  # where the pipeline's steps look (pipelines.retrain.train)
    cache.parent.mkdir(parents=True)
    cache.symlink_to(Path(args.cache).resolve(), target_is_directory=True)
    settings = Settings(_env_file=None, data_dir=root / "data", model_store=store, api_keys="bench:bench:reviewer",
                        log_level="WARNING", pipeline_hot_reload_s=0)
    production = ModelRegistry(store).resolve(CLS_MODEL).version
    review(settings, args.studies, flip)
    cfg = RetrainConfig.from_settings(settings, min_new_records=args.studies, tuner_trials=args.trials,
                                      epochs=args.epochs, replay_cases=args.replay, frozen_eval_cases=args.frozen)
    summary = run_local(cfg, f"bench-flip{int(flip * 100)}")
    return {"label_flip": flip, "studies": args.studies, "production": production, "candidate": summary["candidate"],
            "decision": summary["outcome"], "gate": summary["decision"]["reasons"],
            "shifted_holdout_auc_before": shifted_auc(store, production, args.holdout, cache),
            "shifted_holdout_auc_candidate": shifted_auc(store, summary["candidate"], args.holdout, cache),
            "pipeline_holdout_auc": {m: summary["metrics"][m]["holdout"]["auc"] for m in ("production", "candidate")},
            "pipeline_holdout_gain": summary["metrics"]["candidate"]["holdout"]["vs_production"],
            "frozen_auc": {m: summary["metrics"][m]["frozen"]["auc"] for m in ("production", "candidate")}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--studies", type=int, default=50)
    p.add_argument("--holdout", type=int, default=30, help="shifted hold-out phantoms (seed 4242)")
    p.add_argument("--trials", type=int, default=1)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--replay", type=int, default=30)
    p.add_argument("--frozen", type=int, default=20)
    p.add_argument("--flip", type=float, default=0.4)
    p.add_argument("--no-control", action="store_true")
    p.add_argument("--cache", default=str(CACHE), help="phantom cache shared by both arms and later runs")
    p.add_argument("--work", help="keep the arms' data dirs here (default: a temporary folder)")
    args = p.parse_args(argv)
    os.environ.setdefault("LDH_PIPELINE_DEID_KEY", KEY)
    Path(args.cache).mkdir(parents=True, exist_ok=True)
    with (nullcontext(args.work) if args.work else tempfile.TemporaryDirectory(prefix="ldh-learning-loop-")) as tmp:
        result = {"data": "synthetic phantoms only (default -> shifted profile); not clinical performance",
                  "settings": vars(args), "loop": loop(Path(tmp) / "loop", args, 0.0)}
        result["loop"]["auc_gain"] = (result["loop"]["shifted_holdout_auc_candidate"]
                                      - result["loop"]["shifted_holdout_auc_before"])
        if not args.no_control:
            result["control"] = loop(Path(tmp) / "control", args, args.flip)
    path = write_result("learning_loop", result)
    print(json.dumps(result, indent=2, default=float))
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
