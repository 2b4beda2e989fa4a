"""The one configuration object. Every setting is an ``LDH_*`` environment variable (or a ``.env`` line).

Services receive the parts they need from here; nothing else reads the environment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PACKAGE_DIR = Path(__file__).resolve().parent
SHIPPED_MODEL_STORE = PACKAGE_DIR / "model_store"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LDH_", env_file=".env", extra="ignore")

    # where everything lives (inbox/, studies/, results/, feedback/, datasets/, models/)
    data_dir: Path = Field(Path("./ldh-data"), description="Root of the local data store.")
    model_store: Path = Field(
        SHIPPED_MODEL_STORE,
        description="Model registry root (models/<name>/<version>/ + aliases.json); defaults to the shipped models.",
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
    inference_threads: int = Field(2, ge=1, description="Intra-op threads for TensorFlow inference.")

    # identity written into every DICOM object we emit
    manufacturer: str = Field("LDH Assist open-source project", description="Manufacturer in emitted DICOM.")
    device_serial_number: str = Field("0001", description="DeviceSerialNumber in emitted DICOM.")
    institution_name: str | None = Field(None, description="InstitutionName in emitted DICOM, if set.")
    emit_preview: bool = Field(True, description="Also emit a Secondary Capture preview (burned-in AI boxes).")

    log_level: str = Field("INFO", description="Log level.")
    log_format: str = Field("text", pattern="^(text|json)$", description="Log line format: text or json.")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once per process (tests construct ``Settings(...)`` directly instead)."""
    return Settings()
