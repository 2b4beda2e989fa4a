"""What one pipeline run needs from the settings, as one JSON-able object (a KFP parameter).

Components run in other processes (locally) or other machines (Vertex), so they get this, not the environment.
The de-identification key is deliberately not part of it (a Vertex run's parameters show in its console): it is
read where the data lives, or from the Secret Manager secret version this names (:mod:`.deid`).
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from ai_service.config import Settings


class RetrainConfig(BaseModel):
    data_dir: str
    model_store: str
    min_new_records: int = Field(50, ge=1)
    min_auc_gain: float = Field(0.02, ge=0.0)
    max_sens_loss: float = Field(0.0, ge=0.0)
    max_frozen_auc_loss: float = Field(0.02, ge=0.0)
    min_gain_lower_bound: float = 0.0
    min_holdout_auc: float = Field(0.80, ge=0.0, le=1.0)
    tuner_trials: int = Field(2, ge=1)
    epochs: int = Field(8, ge=1)
    batch: int = Field(128, ge=1)
    warm_start: bool = True
    replay_cases: int = Field(60, ge=0)
    frozen_eval_cases: int = Field(40, ge=1)
    holdout_fraction: float = Field(0.25, gt=0.0, lt=1.0)
    val_fraction: float = Field(0.15, gt=0.0, lt=1.0)
    seed: int = 71
    workers: int = Field(2, ge=1)
    deid_key_secret: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **overrides) -> "RetrainConfig":
        values = {
            "data_dir": str(settings.data_dir), "model_store": str(settings.model_store),
            "min_new_records": settings.pipeline_min_new_records, "min_auc_gain": settings.pipeline_min_auc_gain,
            "max_sens_loss": settings.pipeline_max_sens_loss,
            "max_frozen_auc_loss": settings.pipeline_max_frozen_auc_loss,
            "min_gain_lower_bound": settings.pipeline_min_gain_lower_bound,
            "min_holdout_auc": settings.pipeline_min_holdout_auc,
            "tuner_trials": settings.pipeline_tuner_trials, "epochs": settings.pipeline_epochs,
            "warm_start": settings.pipeline_warm_start, "replay_cases": settings.pipeline_replay_cases,
            "frozen_eval_cases": settings.pipeline_frozen_eval_cases,
            "holdout_fraction": settings.pipeline_holdout_fraction,
            "deid_key_secret": settings.pipeline_deid_key_secret,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
