"""The de-identification key of a Vertex run comes from Secret Manager by name (LDH_PIPELINE_DEID_KEY_SECRET, in
config_json), never as a parameter value. No Secret Manager runs offline: a local HTTP server answers its REST
``:access`` call as the API documents it (SECRET_MANAGER_EMULATOR_HOST), and kfp's SubprocessRunner runs the
pipeline as the scheduled Vertex run would, each step reading the key itself. Not checked here: the real API,
its OAuth and IAM (README, Deploy)."""

from __future__ import annotations

import base64
import csv
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import google_crc32c
import pytest

from ai_service.config import Settings
from ai_service.storage import storage_for
from pipelines.retrain import runner
from pipelines.retrain.config import RetrainConfig
from pipelines.retrain.deid import KEY, DeidError, deid_key, patient_key
from tests.api_support import client_for, settings_for
from tests.retrain_support import review_phantoms, seeds_for_splits, writable_store

SECRET = "projects/ldh-test/secrets/ldh-deid-key/versions/latest"
VALUE = b"key-from-secret-manager"


class SecretManager:
    """``GET /v1/{name}:access`` of the secrets it holds: 200 with base64 data + CRC32C (off by ``crc_error``),
    404 otherwise."""

    def __init__(self, secrets: dict[str, bytes]):
        self.secrets, self.requests, self.crc_error = secrets, [], 0
        manager = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                manager.requests.append(self.path)
                name = self.path.removeprefix("/v1/").removesuffix(":access")
                data = manager.secrets.get(name) if self.path.endswith(":access") else None
                if data is None:
                    body, status = {"error": {"code": 404, "message": f"Secret [{name}] not found"}}, 404
                else:
                    body, status = {"name": name, "payload": {"data": base64.b64encode(data).decode(),
                                                              "dataCrc32c": str(google_crc32c.value(data) ^ manager.crc_error)}}, 200
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def secret_manager(monkeypatch):
    manager = SecretManager({SECRET: VALUE + b"\n"})  # `echo KEY | gcloud secrets versions add` keeps the newline
    monkeypatch.setenv("SECRET_MANAGER_EMULATOR_HOST", manager.host)
    monkeypatch.delenv("LDH_PIPELINE_DEID_KEY", raising=False)
    yield manager
    manager.server.shutdown()


def test_the_key_comes_from_the_named_secret_and_no_key_is_made_in_the_bucket(secret_manager, tmp_path):
    storage = storage_for(tmp_path / "data")
    assert deid_key(storage, secret=SECRET) == VALUE
    assert secret_manager.requests == [f"/v1/{SECRET}:access"]
    assert not storage.exists(KEY)
    assert deid_key(storage, "from-the-environment\n", secret=SECRET) == b"from-the-environment"  # as Cloud Run has it
    assert len(secret_manager.requests) == 1


def test_a_secret_that_cannot_be_read_is_an_error_never_another_key(secret_manager, tmp_path):
    storage = storage_for(tmp_path / "data")
    missing = "projects/ldh-test/secrets/nope/versions/1"
    with pytest.raises(DeidError, match=f"Secret Manager answered 404 for {missing}"):
        deid_key(storage, secret=missing)
    secret_manager.secrets[SECRET] = b"  \n"
    with pytest.raises(DeidError, match="is empty"):
        deid_key(storage, secret=SECRET)
    assert not storage.exists(KEY)


def test_a_payload_that_fails_its_crc32c_is_refused(secret_manager, tmp_path):
    secret_manager.crc_error = 1
    with pytest.raises(DeidError, match="CRC32C mismatch"):
        deid_key(storage_for(tmp_path / "data"), secret=SECRET)


def test_vertex_runs_get_the_secret_name_and_refuse_a_bare_key(tmp_path):
    values = dict(vertex_project="proj", vertex_pipeline_root="gs://bucket/root", data_dir="gs://bucket/data",
                  vertex_service_account="pipelines@proj.iam.gserviceaccount.com", model_store="gs://bucket/models")
    named = Settings(_env_file=None, pipeline_deid_key="the-key", pipeline_deid_key_secret=SECRET, **values)
    sent = RetrainConfig.from_settings(named).model_dump_json()  # the run's config_json parameter
    assert SECRET in sent and "the-key" not in sent
    bare = Settings(_env_file=None, pipeline_deid_key="the-key", **values)
    template = runner.compile_pipeline(bare, tmp_path / "p.yaml")
    with pytest.raises(runner.PipelineSetupError, match="set LDH_PIPELINE_DEID_KEY_SECRET"):
        runner.submit(bare, RetrainConfig.from_settings(bare), template)
    with pytest.raises(ValueError, match="pipeline_deid_key_secret"):
        Settings(_env_file=None, pipeline_deid_key_secret="ldh-deid-key")  # a secret ID alone names no version


@pytest.mark.slow
def test_the_scheduled_run_hashes_patients_with_the_secret_key(secret_manager, tmp_path):
    """kfp's local runner, each step a process of its own with no key in its environment, as on Vertex."""
    store = writable_store(tmp_path)
    settings = settings_for(tmp_path / "data", model_store=store, pipeline_hot_reload_s=0,
                            pipeline_deid_key_secret=SECRET)
    with client_for(settings) as client:
        cases = review_phantoms(client, seeds_for_splits({"train": 2, "val": 1, "test": 1}))
    cfg = RetrainConfig.from_settings(settings, min_new_records=4, tuner_trials=1, epochs=1, replay_cases=2,
                                      frozen_eval_cases=2, batch=64)
    summary = runner.run_local(cfg, "run-secret")
    storage = storage_for(settings.data_dir)
    labels = storage.read_bytes(f"datasets/{summary['dataset']}/labels.csv").decode()
    patients = {row["patient"] for row in csv.DictReader(io.StringIO(labels))}
    assert patients == {patient_key(VALUE, case.truth["patient_id"]) for case in cases}
    assert not storage.exists(KEY) and f"/v1/{SECRET}:access" in secret_manager.requests
