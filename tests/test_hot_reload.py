"""Hot reload: a moved production alias swaps the engine while requests keep being served, none fails; the service
also follows a gs:// model store (GCS emulator), serving each version from a local cache."""

from __future__ import annotations

import shutil
import tempfile
import threading

import numpy as np
import pytest

from ai_service.config import SHIPPED_MODEL_STORE, Settings
from ai_service.findings import ModelVersions
from ai_service.hot_reload import EngineReloader
from ai_service.registry import CLS_MODEL, SEG_MODEL, ModelRegistry, default_cache
from ai_service.volume import Volume
from pipelines.retrain.promotion import set_production
from tests.api_support import R, client_for, phantom, settings_for
from tests.retrain_support import writable_store
from tests.storage_support import BUCKET

pytestmark = pytest.mark.slow


def test_hot_reload_under_concurrent_requests(tmp_path):
    store = writable_store(tmp_path)
    shutil.copytree(SHIPPED_MODEL_STORE / CLS_MODEL / "cls-v1", store / CLS_MODEL / "cls-v1")
    settings = settings_for(tmp_path / "data", model_store=store, pipeline_hot_reload_s=3600)  # checked by hand
    case, _ = phantom()
    volume = Volume(case.image.astype(np.float32), case.spacing, case.origin, case.direction, "mha")
    from ai_service.engine import InferenceEngine

    engine = InferenceEngine(settings)
    with client_for(settings, engine=engine) as client:
        state = client.app.state.ldh
        before = state.versions.classification
        errors, seen, stop = [], set(), threading.Event()

        def requests():
            while not stop.is_set():
                try:
                    seen.add(state.wait_engine().analyze(volume).findings.models.classification)
                    assert client.get("/api/models", headers=R).status_code == 200
                except Exception as exc:  # noqa: BLE001
                    errors.append(exc)

        threads = [threading.Thread(target=requests) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            assert not state.reloader.check_once()  # nothing moved: nothing reloaded
            set_production(ModelRegistry(store), CLS_MODEL, "cls-v1", action="promote", reason="test")
            assert state.reloader.check_once()
            while "cls-v1" not in seen and not errors:
                threading.Event().wait(0.05)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert not errors and before != "cls-v1"
        assert state.versions.classification == "cls-v1"
        assert state.wait_engine().analyze(volume).findings.models.classification == "cls-v1"
        assert "cls=cls-v1" in client.get("/api/models", headers=R).json()["version"]


def test_hot_reload_follows_a_gcs_model_store(gcs_emulator, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # this machine's model cache
    store = f"gs://{BUCKET}/{tmp_path.name}/models"
    registry = ModelRegistry(store)
    for name, versions in ((SEG_MODEL, ["seg-v3"]), (CLS_MODEL, ["cls-v1", "cls-v2"])):
        for version in versions:
            registry.publish(name, version, SHIPPED_MODEL_STORE / name / version)
        registry.set_alias(name, "production", versions[-1])
    engines = []
    reloader = EngineReloader(Settings(_env_file=None, model_store=store),
                              current=lambda: engines[-1].versions if engines else None, swap=engines.append,
                              interval_s=3600)
    assert reloader.check_once() and engines[-1].versions == ModelVersions("seg-v3", "cls-v2")
    assert not reloader.check_once()  # nothing moved: nothing downloaded or reloaded
    set_production(registry, CLS_MODEL, "cls-v1", action="promote", reason="test")
    assert reloader.check_once(), reloader.last_error
    assert engines[-1].versions == ModelVersions("seg-v3", "cls-v1")
    assert engines[-1].cls_ref.path == default_cache(store) / CLS_MODEL / "cls-v1"
    assert engines[-1].cls_ref.model_file.read_bytes() == (SHIPPED_MODEL_STORE / CLS_MODEL / "cls-v1" /
                                                           "model.keras").read_bytes()
