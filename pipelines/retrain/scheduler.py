"""The embedded default's retraining schedule: APScheduler runs ``ldh pipeline run`` on ``LDH_PIPELINE_CRON``.

The run is a child process (its TensorFlow memory is returned when it ends, and a crash cannot take the service
down); ``max_instances=1`` + ``coalesce`` keep it to at most one run at a time, missed firings collapse into one.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

from ai_service.config import Settings

log = logging.getLogger(__name__)
JOB_ID = "ldh-retrain"


class ScheduleError(ValueError):
    """LDH_PIPELINE_CRON is not a valid crontab."""


def trigger(cron: str):
    from apscheduler.triggers.cron import CronTrigger

    try:
        return CronTrigger.from_crontab(cron, timezone="UTC")
    except ValueError as exc:
        raise ScheduleError(f"LDH_PIPELINE_CRON {cron!r} is not a 5-field crontab (minute hour day month weekday): "
                            f"{exc}") from None


def run_pipeline_child(settings: Settings) -> int:
    env = dict(os.environ, LDH_DATA_DIR=str(settings.data_dir), LDH_MODEL_STORE=str(settings.model_store))
    log.info("scheduled retraining run starting")
    done = subprocess.run([sys.executable, "-m", "ai_service.cli", "pipeline", "run"], env=env,
                          capture_output=True, text=True)
    tail = (done.stdout.strip().splitlines() or [""])[0]
    (log.info if done.returncode == 0 else log.error)(
        "scheduled retraining run finished", extra={"rc": done.returncode, "summary": tail,
                                                    "stderr": done.stderr[-2000:] if done.returncode else ""})
    return done.returncode


def start_scheduler(settings: Settings, job=run_pipeline_child):
    """A started BackgroundScheduler with the retraining job, or None when LDH_PIPELINE_CRON is empty."""
    if not settings.pipeline_cron.strip():
        return None
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_job(job, trigger(settings.pipeline_cron), args=[settings], id=JOB_ID, max_instances=1,
                      coalesce=True, misfire_grace_time=3600)
    scheduler.start()
    log.info("retraining scheduled", extra={"cron": settings.pipeline_cron})
    return scheduler
