"""The retraining pipeline end to end on a tiny dataset: phantom studies through the API, simulated reviews,
kfp's local SubprocessRunner (real, offline), de-identified patient-split dataset, registration, gate, report; and
the same run as on Vertex AI: gs:// data and model store (GCS emulator), steps sharing nothing else."""

from __future__ import annotations

import csv
import io
import tempfile
import uuid
from pathlib import Path

import pytest

from ai_service.registry import CLS_MODEL, SEG_MODEL, ModelRegistry
from ai_service.storage import storage_for
from pipelines.retrain.collect import dataset_versions
from pipelines.retrain.config import RetrainConfig
from pipelines.retrain.deid import identifiers_of, patient_key
from pipelines.retrain.runner import PipelineSetupError, run_local
from tests.api_support import client_for, settings_for
from tests.retrain_support import DEID_KEY, review_phantoms, seeds_for_splits, writable_store
from tests.storage_support import BUCKET

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


def test_as_on_vertex_the_steps_share_only_the_bucket(reviewed, gcs_emulator, monkeypatch, tmp_path):
    settings, cases = reviewed
    monkeypatch.delenv("LDH_PIPELINE_DEID_KEY")  # the key must come from the bucket, created by the first run
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # each step's model cache and phantoms: this test's "machines"
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    root = f"gs://{BUCKET}/{uuid.uuid4().hex[:8]}"
    local, remote = storage_for(settings.data_dir), storage_for(f"{root}/data")
    for key in local.list("feedback") + local.list("studies") + local.list("results"):  # what the service stored
        remote.write_bytes(key, local.read_bytes(key))
    shipped, registry = ModelRegistry(settings.model_store), ModelRegistry(f"{root}/models")
    for name in (SEG_MODEL, CLS_MODEL):
        ref = shipped.resolve(name)
        registry.publish(name, ref.version, ref.path)
        registry.set_alias(name, "production", ref.version)
    before = registry.version_of(CLS_MODEL)

    summary = run_local(tiny(settings.model_copy(update={"data_dir": f"{root}/data", "model_store": f"{root}/models"})),
                        "run-vertex")

    assert summary["outcome"] in ("promoted", "kept production")
    card = ModelRegistry(f"{root}/models", cache=tmp_path / "serving").resolve(CLS_MODEL, summary["candidate"]).card
    assert card["lineage"]["pipeline_run_id"] == "run-vertex" and card["onnx"]["file"] == "model.onnx"
    assert registry.version_of(CLS_MODEL) == (summary["candidate"] if summary["outcome"] == "promoted" else before)
    assert {"report.md", "summary.json", "roc.png", "evaluation.json"} <= {
        k.rsplit("/", 1)[1] for k in remote.list("pipelines/runs/run-vertex")}
    key = remote.read_bytes("pipelines/deid.key")
    labels = remote.read_bytes(f"datasets/{summary['dataset']}/labels.csv").decode()
    patients = {row["patient"] for row in csv.DictReader(io.StringIO(labels))}
    assert patients == {patient_key(key, case.truth["patient_id"]) for case in cases}


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


def test_an_empty_hold_out_split_keeps_production_and_says_why(tmp_path_factory, monkeypatch):
    """Few reviewed patients can leave the keyed patient split without a test patient: the run still ends, and
    the gate refuses for want of evidence instead of crashing on an empty hold-out."""
    monkeypatch.setenv("LDH_PIPELINE_DEID_KEY", DEID_KEY)
    root = tmp_path_factory.mktemp("retrain-no-holdout")
    settings = settings_for(root / "data", model_store=writable_store(root), pipeline_hot_reload_s=0)
    with client_for(settings) as client:
        review_phantoms(client, seeds_for_splits({"train": 3, "val": 1}, start=881_000))
    store = ModelRegistry(settings.model_store)
    before = store.version_of(CLS_MODEL)
    summary = run_local(tiny(settings), "run-no-holdout")
    assert summary["outcome"] == "kept production" and store.version_of(CLS_MODEL) == before
    reasons = store.resolve(CLS_MODEL, summary["candidate"]).card["evaluation"]["gate"]["reasons"]
    assert any(r.startswith("FAILED: hold-out AUC gain lower bound +nan") for r in reasons), reasons
