"""The node's index: one SQLite database in WAL mode, shared by the receiver(s), assembler, worker and exporter.

The received files (and the inbox journal) are the source of truth for instances; this index can be rebuilt
from them (see ``Inbox.recover``). Jobs and the outbox live only here, which is why every state change is one
transaction. ``synchronous=NORMAL`` in WAL mode survives a killed process; the inbox's ``syncfs`` before a
journal segment is retired also makes the index durable across power loss.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS associations (
    id TEXT PRIMARY KEY, calling_ae TEXT, peer TEXT, pid INTEGER,
    started REAL NOT NULL, ended REAL, outcome TEXT
);
CREATE TABLE IF NOT EXISTS instances (
    sop_uid TEXT PRIMARY KEY, study_uid TEXT NOT NULL, series_uid TEXT NOT NULL, sop_class TEXT NOT NULL,
    modality TEXT, path TEXT NOT NULL, size INTEGER, assoc_id TEXT, received REAL NOT NULL,
    assembled INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS instances_pending ON instances(series_uid) WHERE assembled = 0;
CREATE INDEX IF NOT EXISTS instances_study ON instances(study_uid);
CREATE TABLE IF NOT EXISTS series (
    series_uid TEXT PRIMARY KEY, study_uid TEXT NOT NULL, instances INTEGER NOT NULL,
    state TEXT NOT NULL, rule TEXT, reason TEXT, updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY, study_uid TEXT NOT NULL, series_uid TEXT NOT NULL, model_version TEXT NOT NULL,
    series_dir TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, error TEXT,
    out_dir TEXT, rerun INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL, updated REAL NOT NULL,
    UNIQUE (study_uid, series_uid, model_version)
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY, job_id INTEGER, study_uid TEXT NOT NULL, destination TEXT NOT NULL,
    path TEXT NOT NULL, sop_uid TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL, error TEXT, created REAL NOT NULL, updated REAL NOT NULL,
    UNIQUE (destination, sop_uid)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(state, next_at);
CREATE INDEX IF NOT EXISTS outbox_sop ON outbox(sop_uid);  -- is an announced instance our own result?
-- instances a receiver could not fetch (Cloud Healthcare): source = the notification's resource name
CREATE TABLE IF NOT EXISTS receive_dead (
    door TEXT NOT NULL, source TEXT NOT NULL, study_uid TEXT NOT NULL, series_uid TEXT NOT NULL,
    sop_uid TEXT NOT NULL, error TEXT NOT NULL, attempts INTEGER NOT NULL, updated REAL NOT NULL,
    PRIMARY KEY (door, source)
);
CREATE TABLE IF NOT EXISTS destinations (
    name TEXT PRIMARY KEY, state TEXT NOT NULL, message TEXT, updated REAL NOT NULL
);
"""


class WalSqlite:
    """Thread-safe SQLite access: one connection per thread, all in WAL mode (the node's index, the API's jobs)."""

    def __init__(self, path: Path, schema: str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self.connection().executescript(schema)

    def connection(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            con.row_factory = sqlite3.Row
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            con.execute("PRAGMA busy_timeout=30000")
            self._local.con = con
        return con

    @contextmanager
    def tx(self):
        """One write transaction (BEGIN IMMEDIATE: no upgrade deadlocks between processes)."""
        con = self.connection()
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        else:
            con.execute("COMMIT")

    def query(self, sql: str, args=()) -> list[sqlite3.Row]:
        return self.connection().execute(sql, args).fetchall()

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None


class Database(WalSqlite):
    """The node's index (schema above)."""

    def __init__(self, path: Path):
        super().__init__(path, SCHEMA)


def now() -> float:
    return time.time()
