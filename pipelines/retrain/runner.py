"""Running the pipeline: locally with kfp's SubprocessRunner (offline, this interpreter), compiling it to YAML,
submitting and scheduling it on Vertex AI Pipelines. One module so ``ldh pipeline`` and ``ldh serve``'s scheduler
share it."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from ai_service.config import SHIPPED_MODEL_STORE, Settings
from ai_service.storage import is_remote
from pipelines.retrain.config import RetrainConfig
from pipelines.retrain.pipeline import PIPELINE_NAME, build_pipeline
from pipelines.retrain.steps import run_file


class PipelineSetupError(ValueError):
    """The settings do not allow this pipeline action (message says which setting)."""


def new_run_id() -> str:
    return time.strftime("run-%Y%m%d-%H%M%S", time.gmtime())


def check_local(cfg: RetrainConfig) -> None:
    if Path(cfg.model_store).resolve() == SHIPPED_MODEL_STORE.resolve():
        raise PipelineSetupError(
            "the model store is the shipped read-only one; point LDH_MODEL_STORE at a writable store "
            f"(e.g. `cp -r {SHIPPED_MODEL_STORE} <data-dir>/models` and LDH_MODEL_STORE=<data-dir>/models)")


def run_local(cfg: RetrainConfig, run_id: str | None = None, pipeline_root: Path | None = None) -> dict:
    """Run the whole pipeline here, each step in its own process; returns the run's ``summary.json``. With gs://
    data and model store the steps share only the bucket, as on Vertex AI (a rehearsal before ``submit``)."""
    from kfp import local

    check_local(cfg)
    run_id = run_id or new_run_id()
    root = pipeline_root or (Path(tempfile.gettempdir()) / "ldh-kfp-local" if is_remote(cfg.data_dir)
                             else Path(cfg.data_dir) / "pipelines" / "kfp-local")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    build_pipeline("python:3.11")(config_json=cfg.model_dump_json(), run_id=run_id)
    return json.loads(run_file(cfg.model_dump_json(), run_id, "summary.json"))


def compile_pipeline(settings: Settings, out: Path) -> Path:
    from kfp import compiler

    compiler.Compiler().compile(build_pipeline(settings.pipeline_image), str(out), pipeline_name=PIPELINE_NAME)
    return out


def _vertex_job(settings: Settings, cfg: RetrainConfig, template: Path, run_id: str | None):
    from google.cloud import aiplatform

    missing = [n for n, v in (("LDH_VERTEX_PROJECT", settings.vertex_project),
                              ("LDH_VERTEX_PIPELINE_ROOT", settings.vertex_pipeline_root),
                              ("LDH_VERTEX_SERVICE_ACCOUNT", settings.vertex_service_account)) if not v]
    if missing:
        raise PipelineSetupError(f"Vertex AI needs {', '.join(missing)} (see README, Configuration)")
    local = [f"{n}={v}" for n, v in (("LDH_VERTEX_PIPELINE_ROOT", settings.vertex_pipeline_root),
                                     ("LDH_DATA_DIR", cfg.data_dir), ("LDH_MODEL_STORE", cfg.model_store))
             if not is_remote(v)]
    if local:  # each step runs on its own machine: what they share must be in a bucket
        raise PipelineSetupError(f"on Vertex AI these must be gs:// URIs: {', '.join(local)}")
    if settings.pipeline_deid_key and not cfg.deid_key_secret:  # the steps would hash patients with another key
        raise PipelineSetupError("LDH_PIPELINE_DEID_KEY cannot go to a Vertex run (its parameters are shown in the "
                                 "console): set LDH_PIPELINE_DEID_KEY_SECRET to the Secret Manager secret version "
                                 "that holds the key")
    aiplatform.init(project=settings.vertex_project, location=settings.vertex_location)
    params = {"config_json": cfg.model_dump_json()}
    if run_id:
        params["run_id"] = run_id
    return aiplatform.PipelineJob(display_name=PIPELINE_NAME, template_path=str(template),
                                  pipeline_root=settings.vertex_pipeline_root, parameter_values=params,
                                  job_id=run_id, enable_caching=False)


def submit(settings: Settings, cfg: RetrainConfig, template: Path, run_id: str | None = None):
    """One run on Vertex AI Pipelines as the configured service account; returns the PipelineJob."""
    run_id = run_id or new_run_id()
    job = _vertex_job(settings, cfg, template, run_id)
    job.submit(service_account=settings.vertex_service_account)
    return job


def schedule(settings: Settings, cfg: RetrainConfig, template: Path, cron: str):
    """A Vertex AI schedule (at most one run at a time); every run gets its own job name as run id."""
    job = _vertex_job(settings, cfg, template, None)
    return job.create_schedule(cron=cron, display_name=f"{PIPELINE_NAME}-schedule", max_concurrent_run_count=1,
                               service_account=settings.vertex_service_account)
