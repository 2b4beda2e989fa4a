"""The retraining pipeline end to end on a tiny dataset: phantom studies through the API, simulated reviews,
kfp's local SubprocessRunner (real, offline), de-identified patient-split dataset, registration, gate, report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from ai_service.registry import CLS_MODEL, ModelRegistry
from pipelines.retrain.collect import dataset_versions
from pipelines.retrain.config import RetrainConfig
from pipelines.retrain.deid import identifiers_of
from pipelines.retrain.runner import PipelineSetupError, run_local
from tests.api_support import client_for, settings_for
from tests.retrain_support import DEID_KEY, review_phantoms, seeds_for_splits, writable_store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory):
    """A data dir with 4 reviewed phantom studies (2 train, 1 val, 1 test patients) and a writable store."""
    mp = pytest.MonkeyPatch()
    mp.setenv("LDH_PIPELINE_DEID_KEY", DEID_KEY)
    root = tmp_path_factory.mktemp("retrain")
    store = writable_store(root)
    settings = settings_for(root / "data", model_store=store, pipeline_hot_reload_s=0)
    with client_for(settings) as client:
        cases = review_phantoms(client, seeds_for_splits({"train": 2, "val": 1, "test": 1}))
    yield settings, cases
    mp.undo()


def tiny(settings, **kw) -> RetrainConfig:
    values = dict(min_new_records=4, tuner_trials=1, epochs=1, replay_cases=2, frozen_eval_cases=2, batch=64)
    values.update(kw)
    return RetrainConfig.from_settings(settings, **values)


def test_not_enough_feedback_ends_early(reviewed):
    settings, _ = reviewed
    summary = run_local(tiny(settings, min_new_records=5), "run-too-few")
    assert summary["outcome"] == "not enough new feedback"
    assert "4 new record(s)" in summary["message"] and "5 needed" in summary["message"]
    assert dataset_versions(__import__("ai_service.storage", fromlist=["x"]).storage_for(settings.data_dir)) == []


def test_local_pipeline_end_to_end(reviewed):
    settings, cases = reviewed
    store = ModelRegistry(settings.model_store)
    before = store.aliases(CLS_MODEL)["production"]
    summary = run_local(tiny(settings), "run-e2e")
    assert summary["outcome"] in ("promoted", "kept production")
    # registered candidate: immutable version with its lineage, whatever the gate said
    card = store.resolve(CLS_MODEL, summary["candidate"]).card
    assert card["lineage"]["dataset_version"] == summary["dataset"]
    assert card["lineage"]["pipeline_run_id"] == "run-e2e"
    assert card["lineage"]["code_version"].startswith("ldh-assist")
    assert "lr" in card["lineage"]["hyperparameters"]
    assert card["evaluation"]["gate"]["reasons"]
    assert "not for clinical use" in card["disclaimer"]
    promoted = store.aliases(CLS_MODEL)["production"] == summary["candidate"]
    assert promoted == (summary["outcome"] == "promoted") and (promoted or store.aliases(CLS_MODEL)["production"] == before)
    # run report with ROC / confusion PNGs
    run = Path(settings.data_dir) / "pipelines" / "runs" / "run-e2e"
    assert {"report.md", "summary.json", "roc.png", "confusion.png", "evaluation.json"} <= {p.name for p in run.iterdir()}
    assert "not" in (run / "report.md").read_text() and "clinical" in (run / "report.md").read_text()

    dataset = Path(settings.data_dir) / "datasets" / summary["dataset"]
    rows = list(csv.DictReader((dataset / "labels.csv").open()))
    assert rows and set(rows[0]) == {"file", "label", "level", "slice", "split", "patient", "disc_label"}
    # patient-level split: no patient in two splits, and all three splits used
    splits = {}
    for r in rows:
        splits.setdefault(r["patient"], set()).add(r["split"])
    assert all(len(s) == 1 for s in splits.values()) and len(splits) == 4
    assert {next(iter(s)) for s in splits.values()} == {"train", "val", "test"}
    # de-identification: no identifier of any source series in any exported file's name or bytes
    identifiers = set()
    for source in Path(settings.data_dir, "studies").rglob("*.dcm"):
        identifiers.update(identifiers_of(source).values())
    for case in cases:
        identifiers.add(case.truth["patient_id"])
    assert any(v.startswith("PH") for v in identifiers) and len(identifiers) > 10
    exported = [p for p in dataset.rglob("*") if p.is_file()]
    assert len(exported) == len(rows) + 2
    for path in exported:
        data = path.read_bytes()
        for value in identifiers:
            assert value not in path.name and value.encode() not in data, (path.name, value)
    # the dataset is the watermark: the same records are not new any more
    summary = run_local(tiny(settings), "run-again")
    assert summary["outcome"] == "not enough new feedback" and "0 new record(s)" in summary["message"]


def test_local_run_refuses_the_shipped_store(tmp_path):
    from ai_service.config import Settings

    cfg = RetrainConfig.from_settings(Settings(_env_file=None, data_dir=tmp_path))
    with pytest.raises(PipelineSetupError, match="LDH_MODEL_STORE"):
        run_local(cfg)
