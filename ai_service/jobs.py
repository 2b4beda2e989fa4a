"""Analysis jobs of the API process: a SQLite (WAL) table plus one worker thread.

A job is idempotent by (StudyInstanceUID, SeriesInstanceUID, model version): submitting the same series again
returns the existing job (a failed one is queued again). After a restart, jobs left ``running`` are queued again.
States: ``queued`` → ``running`` → ``done`` | ``failed``; ``stage``/``progress`` say where a running job is.

The worker calls one handler ``handler(job, report)``; ``report(stage, progress)`` updates the row. An
:class:`~ai_service.errors.InputError` from the handler is the input's fault (kept as ``error`` with
``error_status`` 422); anything else is ours (``error_status`` 500).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ai_service.errors import InputError
from dicom_node.db import WalSqlite

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL, series_uid TEXT NOT NULL, model_version TEXT NOT NULL,
    source TEXT NOT NULL, origin TEXT, series_prefix TEXT,
    state TEXT NOT NULL, stage TEXT NOT NULL, progress REAL NOT NULL DEFAULT 0,
    error TEXT, error_status INTEGER, result_prefix TEXT,
    created REAL NOT NULL, updated REAL NOT NULL, started REAL, finished REAL,
    UNIQUE (study_uid, series_uid, model_version)
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, created);
CREATE INDEX IF NOT EXISTS jobs_study ON jobs(study_uid, updated);
"""

STATES = ("queued", "running", "done", "failed")


@dataclass(frozen=True)
class Job:
    id: str
    study_uid: str
    series_uid: str
    model_version: str
    source: str
    origin: str | None
    series_prefix: str | None
    state: str
    stage: str
    progress: float
    error: str | None
    error_status: int | None
    result_prefix: str | None
    created: float
    updated: float
    started: float | None
    finished: float | None

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "study_instance_uid": self.study_uid,
            "series_instance_uid": self.series_uid,
            "model_version": self.model_version,
            "source": self.source,
            "state": self.state,
            "stage": self.stage,
            "progress": round(self.progress, 3),
            "error": self.error,
            "created": _iso(self.created),
            "updated": _iso(self.updated),
            "seconds": round(self.finished - self.started, 3) if self.finished and self.started else None,
        }


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1000):03d}Z"


class JobStore:
    """The jobs table; safe from any thread (one connection per thread)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._db = WalSqlite(self.path, SCHEMA)
        self._wake = threading.Condition()
        with self._tx() as con:
            con.execute("UPDATE jobs SET state='queued', stage='queued (restarted)', progress=0 WHERE state='running'")

    def _con(self) -> sqlite3.Connection:
        return self._db.connection()

    def _tx(self):
        return self._db.tx()

    @staticmethod
    def _job(row) -> Job | None:
        return Job(**{k: row[k] for k in row.keys()}) if row is not None else None

    def submit(self, study_uid: str, series_uid: str, model_version: str, source: str,
               origin: str | None = None, series_prefix: str | None = None) -> tuple[Job, bool]:
        """(job, created): an existing job for the same key is returned (and re-queued if it had failed)."""
        now = time.time()
        with self._tx() as con:
            row = con.execute(
                "SELECT * FROM jobs WHERE study_uid=? AND series_uid=? AND model_version=?",
                (study_uid, series_uid, model_version),
            ).fetchone()
            created = row is None
            if created:
                job_id = uuid.uuid4().hex[:16]
                con.execute(
                    "INSERT INTO jobs (id, study_uid, series_uid, model_version, source, origin, series_prefix, state, "
                    "stage, progress, created, updated) VALUES (?,?,?,?,?,?,?,'queued','queued',0,?,?)",
                    (job_id, study_uid, series_uid, model_version, source, origin, series_prefix, now, now),
                )
            else:
                job_id = row["id"]
                if row["state"] == "failed":
                    con.execute(
                        "UPDATE jobs SET state='queued', stage='queued', progress=0, error=NULL, error_status=NULL, "
                        "source=?, origin=?, series_prefix=?, updated=? WHERE id=?",
                        (source, origin, series_prefix, now, job_id))
                    created = True
        with self._wake:
            self._wake.notify_all()
        return self.get(job_id), created

    def get(self, job_id: str) -> Job | None:
        return self._job(self._con().execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone())

    def for_study(self, study_uid: str) -> list[Job]:
        rows = self._con().execute("SELECT * FROM jobs WHERE study_uid=? ORDER BY created DESC", (study_uid,))
        return [self._job(r) for r in rows.fetchall()]

    def latest_done(self, study_uid: str) -> Job | None:
        row = self._con().execute(
            "SELECT * FROM jobs WHERE study_uid=? AND state='done' ORDER BY finished DESC LIMIT 1", (study_uid,)
        ).fetchone()
        return self._job(row)

    def studies(self, limit: int = 200) -> list[Job]:
        """The newest job of each study, newest first."""
        rows = self._con().execute(
            "SELECT * FROM jobs j WHERE created = (SELECT MAX(created) FROM jobs WHERE study_uid=j.study_uid) "
            "ORDER BY created DESC LIMIT ?", (limit,)
        ).fetchall()
        return [self._job(r) for r in rows]

    def counts(self) -> dict[str, int]:
        rows = self._con().execute("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state").fetchall()
        out = dict.fromkeys(STATES, 0)
        out.update({r["state"]: r["n"] for r in rows})
        return out

    def claim(self) -> Job | None:
        """Take the oldest queued job (running from now on), or None."""
        now = time.time()
        with self._tx() as con:
            row = con.execute("SELECT id FROM jobs WHERE state='queued' ORDER BY created LIMIT 1").fetchone()
            if row is None:
                return None
            con.execute("UPDATE jobs SET state='running', stage='starting', progress=0.02, started=?, updated=? "
                        "WHERE id=?", (now, now, row["id"]))
        return self.get(row["id"])

    def report(self, job_id: str, stage: str, progress: float) -> None:
        with self._tx() as con:
            con.execute("UPDATE jobs SET stage=?, progress=?, updated=? WHERE id=? AND state='running'",
                        (stage, float(progress), time.time(), job_id))

    def finish(self, job_id: str, result_prefix: str) -> None:
        now = time.time()
        with self._tx() as con:
            con.execute("UPDATE jobs SET state='done', stage='done', progress=1, result_prefix=?, finished=?, "
                        "updated=? WHERE id=?", (result_prefix, now, now, job_id))
        self._notify()

    def fail(self, job_id: str, error: str, status: int) -> None:
        now = time.time()
        with self._tx() as con:
            con.execute("UPDATE jobs SET state='failed', stage='failed', error=?, error_status=?, finished=?, "
                        "updated=? WHERE id=?", (error, status, now, now, job_id))
        self._notify()

    def _notify(self) -> None:
        with self._wake:
            self._wake.notify_all()

    def wait(self, job_id: str, timeout: float) -> Job | None:
        """Block until the job is done/failed or ``timeout`` seconds passed; returns its latest state."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            left = deadline - time.monotonic()
            if job is None or job.state in ("done", "failed") or left <= 0:
                return job
            with self._wake:
                self._wake.wait(min(left, 0.5))

    def wait_for_work(self, timeout: float) -> None:
        with self._wake:
            self._wake.wait(timeout)


Handler = Callable[[Job, Callable[[str, float], None]], str]


class Worker:
    """One thread running queued jobs through ``handler`` (which returns the result prefix)."""

    def __init__(self, jobs: JobStore, handler: Handler, on_finish: Callable[[Job], None] | None = None):
        self.jobs = jobs
        self.handler = handler
        self.on_finish = on_finish
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.busy = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ldh-api-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self.jobs._notify()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            job = self.jobs.claim()
            if job is None:
                self.jobs.wait_for_work(1.0)
                continue
            self.busy = True
            try:
                self.run_one(job)
            finally:
                self.busy = False

    def run_one(self, job: Job) -> None:
        try:
            prefix = self.handler(job, lambda stage, progress: self.jobs.report(job.id, stage, progress))
        except InputError as exc:
            log.info("job refused the input", extra={"job": job.id, "study": job.study_uid, "reason": str(exc)})
            self.jobs.fail(job.id, str(exc), 422)
        except Exception as exc:  # noqa: BLE001 - a job must never kill the worker
            log.exception("job failed", extra={"job": job.id, "study": job.study_uid})
            self.jobs.fail(job.id, f"internal error while analysing the series ({exc.__class__.__name__}: {exc})", 500)
        else:
            self.jobs.finish(job.id, prefix)
        if self.on_finish is not None:
            try:
                self.on_finish(self.jobs.get(job.id))
            except Exception:  # noqa: BLE001
                log.exception("job finish hook failed", extra={"job": job.id})
