"""The pipeline's steps as plain functions of JSON-able arguments: what each KFP component calls.

Kept apart from the KFP wrappers so tests and the local runner exercise the same code, and so a component's
embedded source stays a one-line import.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from ai_service.config import Settings
from ai_service.registry import CLS_MODEL, ModelRegistry
from ai_service.storage import storage_for
from pipelines.retrain.config import RetrainConfig


def _say(text: str) -> None:
    print(f"[ldh pipeline] {text}", file=sys.stderr, flush=True)


def _config(config_json: str) -> tuple[RetrainConfig, Settings]:
    cfg = RetrainConfig.model_validate_json(config_json)
    settings = Settings(_env_file=None, data_dir=cfg.data_dir, model_store=cfg.model_store)
    return cfg, settings


def collect(config_json: str) -> tuple[bool, int, str]:
    from pipelines.retrain.collect import collect as run

    cfg, _ = _config(config_json)
    c = run(storage_for(cfg.data_dir), cfg.min_new_records)
    _say(c.message)
    return c.enough, len(c.new_ids), c.message


def build_dataset(config_json: str) -> str:
    from pipelines.retrain.collect import collect as run
    from pipelines.retrain.dataset import build_dataset as build
    from pipelines.retrain.deid import deid_key

    cfg, settings = _config(config_json)
    storage = storage_for(cfg.data_dir)
    c = run(storage, cfg.min_new_records)
    info = build(storage, c, settings, deid_key(storage, secret=cfg.deid_key_secret), holdout=cfg.holdout_fraction,
                 val=cfg.val_fraction, progress=lambda i, n: _say(f"dataset: record {i}/{n}") if i == n or i % 10 == 0
                 else None)
    _say(f"dataset {info.version}: " + ", ".join(f"{s} {v['discs']} discs/{v['patients']} patients"
                                                 for s, v in info.counts.items())
         + (f"; skipped {info.skipped}" if info.skipped else ""))
    return info.version


def train(config_json: str, dataset_version: str, model_dir: str) -> None:
    from pipelines.retrain.train import save_candidate, train_candidate

    cfg, _ = _config(config_json)
    _say(f"training on {dataset_version} ({cfg.tuner_trials} tuner trial(s), {cfg.epochs} epochs)")
    save_candidate(train_candidate(storage_for(cfg.data_dir), cfg, dataset_version), Path(model_dir))


def evaluate(config_json: str, dataset_version: str, model_dir: str, run_id: str) -> dict:
    """Metrics of both models (also stored as the run's ``evaluation.json`` + PNGs, for the gate step)."""
    from pipelines.retrain.evaluate import compare, evaluation_sets, production_classifier
    from pipelines.retrain.report import plots, run_files
    from pipelines.retrain.train import load_candidate

    cfg, _ = _config(config_json)
    storage = storage_for(cfg.data_dir)
    ref, production = production_classifier(cfg)
    candidate = load_candidate(Path(model_dir))
    sets = evaluation_sets(storage, cfg, dataset_version)
    metrics, curves = compare(sets, candidate.model, production, float(ref.card.get("operating_threshold", 0.5)))
    result = {"production_version": ref.version, "metrics": metrics,
              "curves": {k: {m: [float(x) for x in v] for m, v in c.items()} for k, c in curves.items()}}
    with run_files(storage, run_id) as out:
        plots(curves, metrics, out)
        (out / "evaluation.json").write_text(json.dumps(result, indent=2) + "\n")
    for name in ("holdout", "frozen"):
        _say(f"{name}: AUC candidate {metrics['candidate'][name]['auc']:.4f} vs production "
             f"{metrics['production'][name]['auc']:.4f} (gain lower bound "
             f"{metrics['candidate'][name]['vs_production']['lower_bound']:+.4f})")
    return result


def register_and_gate(config_json: str, dataset_version: str, model_dir: str, run_id: str) -> dict:
    """Register the candidate (immutable, with its lineage and evaluation), apply the gate, promote or not."""
    from pipelines.retrain.lineage import code_version
    from pipelines.retrain.promotion import GateSettings, gate, set_production
    from pipelines.retrain.report import run_files, run_key, write_report
    from pipelines.retrain.train import load_candidate
    from pipelines.training.card import new_version, save_model

    cfg, _ = _config(config_json)
    storage = storage_for(cfg.data_dir)
    evaluation = json.loads(storage.read_bytes(run_key(run_id, "evaluation.json")))
    metrics = evaluation["metrics"]
    decision = gate(metrics["candidate"], metrics["production"],
                    GateSettings(cfg.min_auc_gain, cfg.max_sens_loss, cfg.max_frozen_auc_loss,
                                 cfg.min_gain_lower_bound, cfg.min_holdout_auc))
    candidate = load_candidate(Path(model_dir))
    version = new_version("cls")
    card = candidate.training_card | {
        "lineage": {"dataset_version": dataset_version, "pipeline_run_id": run_id, "code_version": code_version(),
                    "compared_with": f"{CLS_MODEL}:{evaluation['production_version']}",
                    "hyperparameters": candidate.training_card["architecture"]["hyperparameters"]},
        "evaluation": {"candidate": metrics["candidate"], "production": metrics["production"],
                       "gate": decision.as_dict()},
    }
    card["metrics"] = card["metrics"] | {"evaluation": metrics["candidate"]}
    registry = ModelRegistry(cfg.model_store)
    with tempfile.TemporaryDirectory(prefix="ldh-candidate-") as tmp:  # saved here, then published to the store
        registry.publish(CLS_MODEL, version, save_model(candidate.model, Path(tmp), CLS_MODEL, version, card,
                                                        production=False))
    if decision.promote:
        set_production(registry, CLS_MODEL, version, action="promote", reason="passed the gate: "
                       + "; ".join(decision.reasons), run_id=run_id)
    outcome = "promoted" if decision.promote else "kept production"
    message = (f"{CLS_MODEL}:{version} is now production" if decision.promote
               else f"{CLS_MODEL}:{version} registered, production stays {evaluation['production_version']}")
    summary = {"run_id": run_id, "outcome": outcome, "message": message, "dataset": dataset_version,
               "candidate": version, "production_before": evaluation["production_version"],
               "code_version": code_version(), "metrics": metrics, "decision": decision.as_dict()}
    with run_files(storage, run_id) as out:
        write_report(out, summary)
    _say(f"{outcome}: {message}")
    for reason in decision.reasons:
        _say(f"  {reason}")
    return summary


def not_enough(config_json: str, run_id: str, message: str) -> None:
    from pipelines.retrain.report import run_files, write_report

    cfg, _ = _config(config_json)
    with run_files(storage_for(cfg.data_dir), run_id) as out:
        write_report(out, {"run_id": run_id, "outcome": "not enough new feedback", "message": message})
    _say(f"ended early: {message}")


def run_file(config_json: str, run_id: str, name: str) -> str:
    """One of the run's files as text (the report, the summary), wherever the data lives."""
    from pipelines.retrain.report import run_key

    return storage_for(_config(config_json)[0].data_dir).read_bytes(run_key(run_id, name)).decode()
