"""The job queue (SQLite, WAL): one job per (study, series, model version), so enqueueing twice is a no-op.

States: queued → running → done | failed (after ``max_attempts``). A job found ``running`` at start-up belonged
to a process that died: it is queued again. Completing a job and queueing its exports is one transaction, so a
crash can never leave a done job whose results are not in the outbox.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from dicom_node.db import Database

log = logging.getLogger(__name__)


@dataclass
class Job:
    id: int
    study_uid: str
    series_uid: str
    model_version: str
    series_dir: Path
    attempts: int


class JobQueue:
    def __init__(self, db: Database, max_attempts: int = 3):
        self.db = db
        self.max_attempts = max_attempts

    def enqueue(self, study_uid: str, series_uid: str, model_version: str, series_dir: Path) -> bool:
        """True when a new job was created; False when this (study, series, model) already has one."""
        now = time.time()
        with self.db.tx() as con:
            cur = con.execute(
                "INSERT OR IGNORE INTO jobs (study_uid, series_uid, model_version, series_dir, state, created, updated)"
                " VALUES (?,?,?,?, 'queued', ?, ?)",
                (study_uid, series_uid, model_version, str(series_dir), now, now),
            )
            return cur.rowcount == 1

    def requeue(self, study_uid: str, series_uid: str, model_version: str) -> bool:
        """Analyse a series again because it grew after its analysis started. A finished job is queued again; a
        running one is queued again when it completes; a queued one will read the grown folder anyway."""
        key = (study_uid, series_uid, model_version)
        with self.db.tx() as con:
            n = con.execute("UPDATE jobs SET state = 'queued', attempts = 0, error = NULL, updated = ?"
                            " WHERE study_uid = ? AND series_uid = ? AND model_version = ?"
                            " AND state IN ('done', 'failed')", (time.time(), *key)).rowcount
            n += con.execute("UPDATE jobs SET rerun = 1 WHERE study_uid = ? AND series_uid = ? AND model_version = ?"
                             " AND state = 'running'", key).rowcount
        return n == 1

    def recover(self) -> int:
        with self.db.tx() as con:
            n = con.execute("UPDATE jobs SET state = 'queued', updated = ? WHERE state = 'running'",
                            (time.time(),)).rowcount
        if n:
            log.warning("interrupted jobs queued again", extra={"count": n})
        return n

    def claim(self) -> Job | None:
        with self.db.tx() as con:
            row = con.execute(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, updated = ?"
                " WHERE id = (SELECT id FROM jobs WHERE state = 'queued' ORDER BY id LIMIT 1)"
                " RETURNING id, study_uid, series_uid, model_version, series_dir, attempts",
                (time.time(),),
            ).fetchone()
        if row is None:
            return None
        return Job(row["id"], row["study_uid"], row["series_uid"], row["model_version"], Path(row["series_dir"]),
                   row["attempts"])

    def complete(self, job: Job, out_dir: Path, exports: list[tuple[str, Path, str]]) -> None:
        """Mark done and queue ``exports`` = [(destination, path, sop_uid)] in the same transaction."""
        now = time.time()
        with self.db.tx() as con:
            con.execute("UPDATE jobs SET state = CASE WHEN rerun = 1 THEN 'queued' ELSE 'done' END, rerun = 0,"
                        " attempts = CASE WHEN rerun = 1 THEN 0 ELSE attempts END,"
                        " out_dir = ?, error = NULL, updated = ? WHERE id = ?", (str(out_dir), now, job.id))
            con.executemany(
                "INSERT OR IGNORE INTO outbox (job_id, study_uid, destination, path, sop_uid, state, next_at,"
                " created, updated) VALUES (?,?,?,?,?, 'pending', ?, ?, ?)",
                [(job.id, job.study_uid, dest, str(path), sop, now, now, now) for dest, path, sop in exports],
            )

    def fail(self, job: Job, error: str, retryable: bool = True) -> bool:
        """Record a failure; True when the job will be retried (never when it is not ``retryable``)."""
        retry = retryable and job.attempts < self.max_attempts
        with self.db.tx() as con:
            con.execute("UPDATE jobs SET state = ?, error = ?, updated = ? WHERE id = ?",
                        ("queued" if retry else "failed", error[:2000], time.time(), job.id))
        return retry
