"""Both storage backends pass the same tests: the local folder, and GCS through gcp-storage-emulator (a real HTTP
server started on 127.0.0.1, driven by the real google-cloud-storage client; see tests/storage_support.py). The
retraining pipeline's run files and de-identification key go through the same interface, so its steps need no
shared disk (Vertex AI)."""

from __future__ import annotations

import json

import pytest

from ai_service.storage import NotFound, storage_for
from tests.storage_support import race


@pytest.fixture
def storage(location):
    return storage_for(location)


def test_write_read_overwrite_and_missing(storage, tmp_path):
    storage.write_bytes("results/1.2/v1/findings.json", b"{}")
    storage.write_bytes("results/1.2/v1/findings.json", b'{"discs": []}')
    assert storage.read_bytes("results/1.2/v1/findings.json") == b'{"discs": []}'
    source = tmp_path / "crop.npy"
    source.write_bytes(bytes(range(256)) * 36_864)  # 9 MiB: above 8 MiB the client uploads in resumable chunks
    storage.write_file("datasets/ds-1/crops/p-L4-L5-s003.npy", source)
    assert storage.read_bytes("datasets/ds-1/crops/p-L4-L5-s003.npy") == source.read_bytes()
    assert storage.exists("results/1.2/v1/findings.json") and not storage.exists("results/1.2/v2/findings.json")
    with pytest.raises(NotFound):
        storage.read_bytes("results/1.2/v2/findings.json")


def test_list_is_recursive_sorted_relative_and_prefix_exact(storage):
    for key in ("feedback/corrections/1.2/b.json", "feedback/corrections/1.2/a.json", "feedback/accepted/1.3/c.json",
                "feedback-old/x.json"):
        storage.write_bytes(key, b"x")
    assert storage.list("feedback") == ["feedback/accepted/1.3/c.json", "feedback/corrections/1.2/a.json",
                                        "feedback/corrections/1.2/b.json"]
    assert storage.list("feedback/corrections/") == ["feedback/corrections/1.2/a.json",
                                                     "feedback/corrections/1.2/b.json"]
    assert storage.list("nothing") == []


def test_delete_and_download(storage, tmp_path):
    storage.write_bytes("studies/1.2/s/1.dcm", b"one")
    storage.write_bytes("studies/1.2/s/2.dcm", b"two")
    files = storage.download("studies/1.2", tmp_path / "copy")
    assert sorted(p.relative_to(tmp_path / "copy").as_posix() for p in files) == ["s/1.dcm", "s/2.dcm"]
    storage.delete("studies/1.2/s/1.dcm")
    storage.delete("studies/1.2/s/1.dcm")  # absent is fine
    assert storage.list("studies") == ["studies/1.2/s/2.dcm"]
    storage.delete_prefix("studies")
    assert storage.list("studies") == []


def test_keys_are_checked_and_locations_parsed(storage):
    from ai_service.storage_gcs import parse_location

    with pytest.raises(ValueError):
        storage.write_bytes("../escape", b"x")
    assert parse_location("gs://bucket") == ("bucket", "")
    assert parse_location("gs://bucket/a/b/") == ("bucket", "a/b")
    with pytest.raises(ValueError, match="names no bucket"):
        parse_location("gs:///a")


def test_location_settings_keep_gs_urls_whole_and_local_paths_as_paths(monkeypatch):
    from pathlib import Path

    from ai_service.config import SHIPPED_MODEL_STORE, Settings
    from pipelines.retrain.config import RetrainConfig

    assert (Settings(_env_file=None).data_dir, Settings(_env_file=None).model_store) == (Path("ldh-data"),
                                                                                         SHIPPED_MODEL_STORE)
    monkeypatch.setenv("LDH_DATA_DIR", "gs://bucket/ldh/data")
    monkeypatch.setenv("LDH_MODEL_STORE", "/srv/models")
    settings = Settings(_env_file=None)
    assert (settings.data_dir, settings.model_store) == ("gs://bucket/ldh/data", Path("/srv/models"))
    cfg = RetrainConfig.from_settings(settings)  # what every pipeline step is given
    assert (cfg.data_dir, cfg.model_store) == ("gs://bucket/ldh/data", "/srv/models")


def test_pipeline_run_files_are_stored_where_the_data_lives(location, storage):
    from pipelines.retrain import steps
    from pipelines.retrain.config import RetrainConfig

    config = RetrainConfig(data_dir=location, model_store="/unused").model_dump_json()
    steps.not_enough(config, "run-1", "not enough new feedback: 0 new record(s)")
    assert storage.list("pipelines/runs") == ["pipelines/runs/run-1/report.md", "pipelines/runs/run-1/summary.json"]
    assert '"outcome": "not enough new feedback"' in steps.run_file(config, "run-1", "summary.json")


def test_write_if_absent_creates_once_under_concurrency(location):
    won = race(lambda i: storage_for(location).write_if_absent("pipelines/deid.key", f"key-{i}".encode()))
    assert won.count(True) == 1
    assert storage_for(location).read_bytes("pipelines/deid.key") == f"key-{won.index(True)}".encode()
    assert storage_for(location).list("pipelines") == ["pipelines/deid.key"]


def test_update_loses_no_concurrent_change(location):
    def add(i):
        return storage_for(location).update("models/m/aliases.json", lambda old: json.dumps(
            json.loads(old or b"[]") + [i]).encode())

    race(add)
    assert sorted(json.loads(storage_for(location).read_bytes("models/m/aliases.json"))) == list(range(8))


def test_the_deid_key_is_created_once_in_storage_and_read_by_every_run(location, monkeypatch):
    from pipelines.retrain.deid import deid_key

    monkeypatch.delenv("LDH_PIPELINE_DEID_KEY", raising=False)
    keys = race(lambda i: deid_key(storage_for(location)))
    assert len(set(keys)) == 1 and len(keys[0]) == 64
    assert deid_key(storage_for(location)) == keys[0] == storage_for(location).read_bytes("pipelines/deid.key")
    assert deid_key(storage_for(location), "configured") == b"configured"


def gate_input(auc: float) -> dict:
    """One model's evaluation metrics per set, as the evaluate step writes them (hold-out gain bound included)."""
    one = {"auc": auc, "sensitivity": 0.9, "operating_specificity": 0.8, "brier": 0.1, "ece": 0.05, "discs": 40,
           "herniated_discs": 15, "vs_production": {"lower_bound": 0.03, "confidence": 0.95, "patients": 12}}
    return {name: dict(one) for name in ("holdout", "frozen", "pooled")}


def test_the_gate_step_publishes_and_promotes_in_the_model_store_it_is_given(location, tmp_path):
    import keras

    from ai_service.registry import CLS_MODEL, ModelRegistry
    from pipelines.retrain import steps
    from pipelines.retrain.config import RetrainConfig
    from pipelines.retrain.promotion import history, rollback
    from pipelines.retrain.train import Candidate, save_candidate

    store = f"{location}/models"
    registry = ModelRegistry(store, cache=tmp_path / "cache")
    folder = tmp_path / "saved" / "cls-v0"
    folder.mkdir(parents=True)
    (folder / "model.keras").write_bytes(b"production weights")
    (folder / "card.json").write_text("{}")
    registry.publish(CLS_MODEL, "cls-v0", folder)
    registry.set_alias(CLS_MODEL, "production", "cls-v0")
    inputs = keras.Input((64, 64, 2))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(inputs)))
    save_candidate(Candidate(model, {"architecture": {"hyperparameters": {"lr": 1e-3}}, "metrics": {}}),
                   tmp_path / "candidate")
    storage_for(location).write_bytes("pipelines/runs/run-1/evaluation.json", json.dumps(
        {"production_version": "cls-v0", "metrics": {"candidate": gate_input(0.9), "production": gate_input(0.85)}}
    ).encode())

    config = RetrainConfig(data_dir=location, model_store=store).model_dump_json()
    summary = steps.register_and_gate(config, "ds-1", str(tmp_path / "candidate"), "run-1")

    assert summary["outcome"] == "promoted"
    fresh = ModelRegistry(store, cache=tmp_path / "other-machine")  # e.g. the serving side
    ref = fresh.resolve(CLS_MODEL, "production")
    assert ref.version == summary["candidate"] and set(fresh.versions(CLS_MODEL)) == {"cls-v0", ref.version}
    assert ref.card["lineage"]["pipeline_run_id"] == "run-1" and ref.card["onnx"]["file"] == "model.onnx"
    assert keras.saving.load_model(ref.model_file, compile=False).count_params() == model.count_params()
    assert [(h["from"], h["to"]) for h in history(fresh, CLS_MODEL)] == [("cls-v0", ref.version)]
    assert "**Outcome: promoted**" in steps.run_file(config, "run-1", "report.md")
    assert rollback(fresh, CLS_MODEL)["to"] == "cls-v0" == registry.version_of(CLS_MODEL)
