"""Everything one API app holds: settings, storage, jobs + worker, feedback store, engine, metrics, auth.

The engine is given (tests, ``ldh serve`` sharing the DICOM node's) or loaded in a background thread at
start-up; ``/readyz`` says when it is there. The worker analyses uploaded series (:mod:`ai_service.results`).

Two paths for an upload, one seam (``submit_series``): stand-alone, the series is stored under ``studies/`` and
the API's worker analyses it; with the DICOM node in the same process (``use_node``, done by ``ldh serve``), the
series enters the node's inbox like a C-STORE and the node assembles, routes, analyses and exports it, while
the API's job waits for the node's and adds the page images (:mod:`ai_service.api.node_bridge`). Reviewed SRs
of studies that went through the node are queued in its outbox (``export_review``).
"""

from __future__ import annotations

import logging
import shutil
import threading

from ai_service.api.auth import Authenticator
from ai_service.api.metrics import Metrics
from ai_service.config import Settings
from ai_service.engine import InferenceEngine
from ai_service.errors import InputError
from ai_service.feedback import FeedbackStore
from ai_service.findings import ModelVersions
from ai_service.ingest import PreparedSeries, store_series
from ai_service.jobs import Job, JobStore, Worker
from ai_service.registry import CLS_MODEL, SEG_MODEL, ModelRegistry
from ai_service.results import add_page_images, analyze_stored_series, series_prefix
from ai_service.storage import Storage, storage_for

log = logging.getLogger(__name__)
UPLOAD_ORIGIN = "upload"
STAGING_PREFIXES = ("upload-", "ldh-job-", "ldh-page-", "review-")


class AppState:
    def __init__(self, settings: Settings, engine: InferenceEngine | None = None, storage: Storage | None = None):
        self.settings = settings
        self.auth = Authenticator(settings)
        self.storage = storage or storage_for(settings.data_dir)
        self.tmp_root = settings.local_dir / "tmp"
        self.tmp_root.mkdir(parents=True, exist_ok=True)
        for stale in self.tmp_root.iterdir():  # staging left by a killed process: never part of the data
            if stale.name.startswith(STAGING_PREFIXES):
                shutil.rmtree(stale, ignore_errors=True)
        self.jobs = JobStore(settings.local_dir / "api-jobs.sqlite")
        self.feedback = FeedbackStore(self.storage)
        self.metrics = Metrics()
        self.registry = ModelRegistry(settings.model_store)
        self._engine = engine
        self.engine_error: str | None = None
        self._engine_ready = threading.Event()
        if engine is not None:
            self._engine_ready.set()
            self.versions = engine.versions
        else:
            seg = self.registry.resolve(SEG_MODEL, settings.seg_model)
            cls = self.registry.resolve(CLS_MODEL, settings.cls_model)
            self.versions = ModelVersions(seg.version, cls.version)
        self.worker = Worker(self.jobs, self._run_job, on_finish=self._job_finished)
        self.bridge = None  # NodeBridge when the DICOM node runs in this process (use_node)
        self._swap_callbacks = []
        self.reloader = None  # EngineReloader (ai_service/hot_reload.py) once started

    def use_node(self, node) -> None:
        """Send uploads through the DICOM node's inbox / routing / jobs / exporter from now on."""
        from ai_service.api.node_bridge import NodeBridge

        self.bridge = NodeBridge(node)

    # ------------------------------------------------------------------------------------------- engine
    @property
    def engine(self) -> InferenceEngine | None:
        return self._engine

    def start(self) -> None:
        if self._engine is None:
            threading.Thread(target=self._load_engine, name="ldh-engine-load", daemon=True).start()
        self.metrics.engine_ready.set(1 if self._engine is not None else 0)
        self.worker.start()
        if self.settings.pipeline_hot_reload_s > 0:
            from ai_service.hot_reload import EngineReloader

            self.reloader = EngineReloader(self.settings, lambda: self.versions, self.swap_engine,
                                           self.settings.pipeline_hot_reload_s).start()

    def stop(self) -> None:
        if self.reloader is not None:
            self.reloader.stop()
        self.worker.stop()

    def on_engine_swap(self, callback) -> None:
        self._swap_callbacks.append(callback)

    def swap_engine(self, engine: InferenceEngine) -> None:
        """Use ``engine`` from the next job on; jobs holding the old one finish on it (hot reload)."""
        self._engine = engine
        self.versions = engine.versions
        self._engine_ready.set()
        for callback in self._swap_callbacks:
            callback(engine)

    def _load_engine(self) -> None:
        try:
            engine = InferenceEngine(self.settings)
            engine.warm_up()
            self._engine = engine
            self.metrics.engine_ready.set(1)
            self._engine_ready.set()
        except Exception as exc:  # noqa: BLE001
            self.engine_error = f"models could not be loaded: {exc}"
            log.exception("engine load failed")

    def wait_engine(self) -> InferenceEngine:
        while not self._engine_ready.wait(1.0):
            if self.engine_error:
                raise RuntimeError(self.engine_error)
        return self._engine

    # --------------------------------------------------------------------------------------------- jobs
    def submit_series(self, prepared: PreparedSeries) -> tuple[Job, bool]:
        """Store an uploaded series and queue its analysis: through the node's inbox when it runs here."""
        version = f"{self.versions.segmentation}+{self.versions.classification}"  # the node's job key too
        if self.bridge is not None:
            from ai_service.api.node_bridge import NODE_ORIGIN

            key = self.bridge.submit(prepared)
            return self.jobs.submit(prepared.study_uid, prepared.series_uid, version, f"upload-{prepared.kind}",
                                    NODE_ORIGIN, key)
        key = store_series(self.storage, prepared)
        return self.jobs.submit(prepared.study_uid, prepared.series_uid, version, f"upload-{prepared.kind}",
                                UPLOAD_ORIGIN, key)

    def _run_job(self, job: Job, report) -> str:
        if self.bridge is not None and job.origin == "node":
            prefix = self.bridge.wait_for_result(job, report)
            add_page_images(self.storage, self.settings, job.series_prefix, prefix, report)
            return prefix
        engine = self.wait_engine()
        key = job.series_prefix or series_prefix(job.study_uid, job.series_uid)
        try:
            return analyze_stored_series(self.storage, self.settings, engine, job.study_uid, job.series_uid, key,
                                         report)
        except InputError:
            if job.origin == UPLOAD_ORIGIN:  # an upload the engine refuses leaves nothing behind
                self.storage.delete_prefix(key)
            raise

    def series_key(self, job: Job) -> str:
        return job.series_prefix or series_prefix(job.study_uid, job.series_uid)

    def export_review(self, job: Job, record: dict) -> list[str] | None:
        """Send a reviewed SR where the study's results went (the node's destinations); None for plain uploads."""
        if self.bridge is None or job.origin != "node" or not record.get("reviewed_sr"):
            return None
        return self.bridge.export_reviewed_sr(job.study_uid, self.storage.local_path(record["reviewed_sr"]))

    def _job_finished(self, job: Job) -> None:
        self.metrics.jobs.labels(job.state).inc()
        if job.started and job.finished:
            self.metrics.job_seconds.observe(job.finished - job.started)
