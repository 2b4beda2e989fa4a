"""The one configuration object. Every setting is an ``LDH_*`` environment variable (or a ``.env`` line).

Services receive the parts they need from here; nothing else reads the environment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ai_service.storage import Location

PACKAGE_DIR = Path(__file__).resolve().parent
SHIPPED_MODEL_STORE = PACKAGE_DIR / "model_store"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LDH_", env_file=".env", extra="ignore")

    # where everything lives (inbox/, studies/, results/, feedback/, datasets/, models/)
    data_dir: Location = Field(
        Path("./ldh-data"), description="Root of the data store: a local folder, or gs://bucket/prefix for the "
        "retraining pipeline's storage on Vertex AI.")
    model_store: Location = Field(
        SHIPPED_MODEL_STORE,
        description="Model registry root (<name>/<version>/ + <name>/aliases.json): a local folder (default: the "
        "shipped models) or gs://bucket/prefix (versions are downloaded into a local cache to be served).",
    )
    seg_model: str = Field("production", description="Segmentation model version or alias.")
    cls_model: str = Field("production", description="Herniation classifier version or alias.")
    operating_threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="P(herniation) threshold; default = the one in the classifier's model card."
    )
    default_pixel_spacing_mm: float = Field(
        0.75, gt=0.0, description="In-plane pixel spacing assumed for JPG/PNG slices (no header to read it from)."
    )
    default_slice_spacing_mm: float = Field(4.0, gt=0.0, description="Slice spacing assumed for JPG/PNG slices.")
    inference_threads: int = Field(2, ge=1, description="Intra-op threads for inference (TensorFlow / ONNX Runtime).")
    inference_runtime: Literal["auto", "tensorflow"] = Field(
        "auto", description="auto: ONNX Runtime where a model version ships a verified model.onnx, else TensorFlow "
                            "(XLA); tensorflow: always TensorFlow.")

    # identity written into every DICOM object we emit
    manufacturer: str = Field("LDH Assist open-source project", description="Manufacturer in emitted DICOM.")
    device_serial_number: str = Field("0001", description="DeviceSerialNumber in emitted DICOM.")
    institution_name: str | None = Field(None, description="InstitutionName in emitted DICOM, if set.")
    emit_preview: bool = Field(True, description="Also emit a Secondary Capture preview (burned-in AI boxes).")

    # ---------------------------------------------------------------- DICOM node (dicom_node/, `ldh serve`)
    node_ae_title: str = Field("LDHASSIST", min_length=1, max_length=16, description="Our AE title (SCP and SCU).")
    node_host: str = Field("0.0.0.0", description="Address the C-STORE SCP listens on.")
    node_port: int = Field(11112, ge=0, le=65535, description="DICOM port (0 = any free port).")
    node_max_associations: int = Field(10, ge=1, description="Concurrent inbound associations per receiver.")
    node_max_pdu: int = Field(
        262144, ge=0, description="Largest PDU we accept in bytes (0 = unlimited); large PDUs mean less overhead."
    )
    node_allowed_aets: str = Field(
        "", description="Comma-separated calling AE titles allowed to associate (empty = any caller)."
    )
    node_allowed_hosts: str = Field(
        "", description="Comma-separated peer IP addresses allowed to associate (empty = any host)."
    )
    node_tls_cert: Path | None = Field(None, description="PEM certificate: enables DICOM TLS on the SCP.")
    node_tls_key: Path | None = Field(None, description="PEM private key for node_tls_cert.")
    node_tls_ca: Path | None = Field(None, description="PEM CA bundle: when set, callers must present a certificate.")
    node_min_free_mb: int = Field(
        512, ge=0, description="Free-space floor under data_dir: below it C-STORE answers 0xA700, associations refused."
    )
    node_quiet_seconds: float = Field(
        3.0, ge=0.0, description="A series is complete when its associations ended and nothing arrived for this long."
    )
    node_routing_file: Path | None = Field(
        None, description="JSON routing rules (default: MR lumbar spine, sagittal, enough slices)."
    )
    node_receivers: int = Field(
        2, ge=0, le=16,
        description="Receiver processes sharing the DICOM port (SO_REUSEPORT); 0 = receive in the main process.",
    )
    node_export_dimse: str = Field(
        "", description="Comma-separated C-STORE destinations AE@host:port for SEG/SR/preview (e.g. ORTHANC@pacs:4242)."
    )
    node_export_stow_url: str | None = Field(None, description="DICOMweb base URL to STOW-RS results to.")
    node_export_max_attempts: int = Field(8, ge=1, description="Export attempts before an item is dead-lettered.")
    node_export_backoff_s: float = Field(1.0, gt=0.0, description="First retry delay; doubles each attempt (jittered).")
    node_export_backoff_max_s: float = Field(300.0, gt=0.0, description="Longest retry delay.")

    @property
    def node_allowed_aet_list(self) -> list[str]:
        return [a.strip() for a in self.node_allowed_aets.split(",") if a.strip()]

    @property
    def node_allowed_host_list(self) -> list[str]:
        return [a.strip() for a in self.node_allowed_hosts.split(",") if a.strip()]

    # ---------------------------------------------------------------- Cloud Healthcare (dicom_node/healthcare*.py)
    healthcare_subscription: str | None = Field(
        None, pattern=r"^projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/subscriptions/[A-Za-z][A-Za-z0-9._~%+-]{2,254}$",
        description="Pub/Sub subscription (projects/P/subscriptions/S) the DICOM store's notifications arrive on; "
        "set: `ldh serve` receives from the store.")
    healthcare_dicomweb_url: str | None = Field(
        None, description="DICOMweb root of the Cloud Healthcare DICOM store (https://healthcare.googleapis.com/v1/"
        ".../dicomWeb): instances are retrieved and results stored there. Default: derived from the store named in "
        "each notification.")
    healthcare_fetch_attempts: int = Field(
        5, ge=1, description="WADO-RS attempts per instance (5xx, 429, timeouts) before it is dead-lettered.")
    healthcare_fetch_backoff_s: float = Field(
        2.0, gt=0.0, description="First WADO-RS retry delay; doubles each attempt (jittered).")

    @field_validator("healthcare_subscription", "healthcare_dicomweb_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value):
        """``LDH_HEALTHCARE_SUBSCRIPTION=`` (an env file line left empty) means: no Cloud Healthcare receiver."""
        return None if isinstance(value, str) and not value.strip() else value

    # ---------------------------------------------------------------- API (ai_service/api/, web page, `ldh serve`)
    api_enabled: bool = Field(True, description="Serve the REST API + web page from `ldh serve`.")
    api_host: str = Field("127.0.0.1", description="Address the REST API / web page listens on.")
    api_port: int = Field(8080, ge=0, le=65535, description="HTTP port of the REST API / web page.")
    api_auth: str = Field(
        "required", pattern="^(required|off)$",
        description="`required`: every /api call needs a key from api_keys/api_keys_file; `off`: local use only.",
    )
    api_keys: str = Field(
        "", description="Comma-separated credentials TOKEN:LOGIN[:ROLE] (ROLE reviewer|viewer|sender, default reviewer); "
        "sent as `Authorization: Bearer TOKEN` or `X-API-Key: TOKEN`.",
    )
    api_keys_file: Path | None = Field(
        None, description="JSON list of {token | token_sha256, login, name, organization, role}: credentials with a "
        "reviewer's full name (DICOM PN) and organisation.",
    )
    api_local_reviewer: str = Field(
        "Local^User", description="Reviewer name recorded when api_auth=off (login `local`)."
    )
    api_cors_origins: str = Field(
        "", description="Comma-separated origins allowed to call the API from a browser (e.g. the OHIF viewer)."
    )
    api_max_upload_mb: int = Field(1024, ge=1, description="Largest upload (all files together) in MiB.")
    api_max_upload_files: int = Field(4000, ge=1, description="Most files in one upload (incl. inside a zip).")
    api_stow_max_mb: int = Field(4096, ge=1, description="Largest STOW-RS request (all instances together) in MiB.")
    api_keepalive_s: float = Field(
        75.0, gt=0, description="Seconds an idle HTTP keep-alive connection stays open. Longer than the clients' and "
        "proxies' own idle times (nginx 60 s), so a client never reuses a connection the server is closing: "
        "uvicorn's 5 s reset requests of clients polling every 5 s (bench.soak).")

    # ---------------------------------------------------------------- OHIF viewer at /viewer (viewer_plugin/)
    viewer_enabled: bool = Field(True, description="Serve the OHIF viewer with the LDH review mode at /viewer.")
    viewer_ohif_dir: Path | None = Field(
        None, description="OHIF's built dist/ folder (default: viewer_plugin/ohif/dist from viewer_plugin/install-ohif.sh)."
    )
    viewer_dicomweb_url: str | None = Field(
        None, description="DICOMweb root of the PACS the viewer reads (e.g. http://orthanc:8042/dicom-web)."
    )
    viewer_dicomweb_proxy: bool = Field(
        True, description="Proxy the PACS' DICOMweb (read-only) through our origin at /dicom-web (for a PACS that "
        "sends no CORS headers, like Orthanc); false: the viewer calls viewer_dicomweb_url directly.",
    )

    @property
    def api_cors_origin_list(self) -> list[str]:
        return [a.strip() for a in self.api_cors_origins.split(",") if a.strip()]

    # ---------------------------------------------------------------- retraining pipeline (pipelines/retrain/)
    pipeline_min_new_records: int = Field(
        50, ge=1, description="Feedback records in force not in the last dataset version needed to start a run.")
    pipeline_min_auc_gain: float = Field(
        0.02, ge=0.0, description="Promotion gate: the candidate's hold-out AUC must beat production's by this much.")
    pipeline_min_gain_lower_bound: float = Field(
        0.0, description="Promotion gate: the one-sided 95 % lower bound of the hold-out AUC gain (paired bootstrap "
        "over patients) must exceed this.")
    pipeline_min_holdout_auc: float = Field(
        0.80, ge=0.0, le=1.0, description="Promotion gate: the candidate's AUC against the reviewers' hold-out labels "
        "must reach this (inconsistent reviews cap it).")
    pipeline_max_sens_loss: float = Field(
        0.0, ge=0.0, description="Promotion gate: largest sensitivity drop (at the operating specificity) allowed.")
    pipeline_max_frozen_auc_loss: float = Field(
        0.02, ge=0.0, description="Promotion gate: largest AUC drop allowed on the frozen phantom evaluation set.")
    pipeline_tuner_trials: int = Field(2, ge=1, description="Keras Tuner trials (the search budget).")
    pipeline_epochs: int = Field(8, ge=1, description="Training epochs of the candidate classifier.")
    pipeline_warm_start: bool = Field(
        True, description="Start the candidate from production's weights (the tuner searches the learning rate).")
    pipeline_replay_cases: int = Field(
        60, ge=0, description="Phantom cases of the original training distribution mixed into every training set.")
    pipeline_frozen_eval_cases: int = Field(
        40, ge=1, description="Phantom cases of the frozen evaluation set (fixed seed, same for every run).")
    pipeline_holdout_fraction: float = Field(
        0.25, gt=0.0, lt=1.0, description="Share of pseudonymous patients whose feedback goes to the hold-out split.")
    pipeline_deid_key: str | None = Field(
        None, description="Secret for the keyed hash of patient keys (default: a random key created once in the "
        "data store as pipelines/deid.key).")
    pipeline_cron: str = Field(
        "", description="Crontab (5 fields, UTC) on which `ldh serve` runs the pipeline locally; empty = never.")
    pipeline_hot_reload_s: float = Field(
        10.0, ge=0.0, description="How often the service checks the production aliases (0 = never hot-reload).")
    vertex_project: str | None = Field(None, description="GCP project for `ldh pipeline submit|schedule`.")
    vertex_location: str = Field("europe-west4", description="Vertex AI region.")
    vertex_pipeline_root: str | None = Field(None, description="gs:// root for Vertex pipeline artifacts.")
    vertex_service_account: str | None = Field(None, description="Service account the Vertex pipeline runs as.")
    pipeline_image: str = Field(
        "python:3.11", description="Container image of the pipeline's components on Vertex (with ldh-assist installed).")

    # ---------------------------------------------------------------- deployment (terraform/, Dockerfile)
    state_dir: Path | None = Field(
        None, description="Local folder of the node's database, inbox and results and of the API's job database and "
        "staging files: SQLite needs a local or NFS file system, never a bucket. Default: data_dir when that is a "
        "folder; set it when data_dir is gs:// (on Cloud Run: the Filestore mount).")
    pipeline_deid_key_secret: str | None = Field(
        None, pattern=r"^projects/[^/]+/secrets/[^/]+/versions/[^/]+$",
        description="Secret Manager secret version holding the de-identification key "
        "(projects/P/secrets/S/versions/V): every pipeline step reads it there, so a Vertex run gets the name, never "
        "the key, as a parameter.")

    @property
    def local_dir(self) -> Path:
        """Where the state that must sit on a file system lives (see ``state_dir``)."""
        return self.state_dir or Path(self.data_dir)

    log_level: str = Field("INFO", description="Log level.")
    log_format: str = Field("text", pattern="^(text|json)$", description="Log line format: text or json.")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once per process (tests construct ``Settings(...)`` directly instead)."""
    return Settings()
