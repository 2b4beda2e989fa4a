"""Study assembly: a series is complete when every association that brought it has ended (released, aborted
or lost with a crashed receiver) and nothing new arrived for the quiet period. Complete series go to the router.

An aborted association keeps every instance it already acknowledged: those are in the inbox and count.
Instances that arrive for a series after it was assembled make it assemble again (the job queue is idempotent,
so this never re-analyses the same series with the same model).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from dicom_node.db import Database

log = logging.getLogger(__name__)


@dataclass
class CompleteSeries:
    study_uid: str
    series_uid: str
    files: list[Path]

    @property
    def directory(self) -> Path:
        return self.files[0].parent


class Assembler:
    def __init__(self, db: Database, quiet_seconds: float, debounced_doors: frozenset[str] = frozenset()):
        self.db = db
        self.quiet = quiet_seconds
        # doors (calling AEs) that hand over a study only after it was quiet already (the Cloud Healthcare
        # receiver's per-study debounce): waiting once more after their batch would double the quiet period
        self.debounced = tuple(debounced_doors)

    def close_dead_associations(self, live_pids: set[int] | None = None) -> int:
        """At start-up: associations of receivers that no longer run will never end by themselves."""
        live = live_pids or set()
        rows = self.db.query("SELECT id, pid FROM associations WHERE ended IS NULL")
        dead = [r["id"] for r in rows if r["pid"] not in live]
        if dead:
            with self.db.tx() as con:
                con.executemany("UPDATE associations SET ended = ?, outcome = 'lost' WHERE id = ?",
                                [(time.time(), i) for i in dead])
            log.warning("associations lost with a stopped receiver closed", extra={"count": len(dead)})
        return len(dead)

    def due(self, now: float | None = None) -> list[CompleteSeries]:
        """Series ready now; marks their instances assembled (each series is handed out once per arrival)."""
        now = time.time() if now is None else now
        doors = ",".join("?" * len(self.debounced)) or "NULL"
        rows = self.db.query(
            "SELECT i.series_uid, i.study_uid, max(i.received) AS last,"
            " sum(CASE WHEN a.ended IS NULL THEN 1 ELSE 0 END) AS open,"
            f" min(CASE WHEN a.calling_ae IN ({doors}) THEN 1 ELSE 0 END) AS debounced"
            " FROM instances i LEFT JOIN associations a ON a.id = i.assoc_id"
            " WHERE i.assembled = 0 GROUP BY i.series_uid, i.study_uid", self.debounced
        )
        out = []
        for row in rows:
            if row["open"] or (not row["debounced"] and now - row["last"] < self.quiet):
                continue
            with self.db.tx() as con:
                con.execute("UPDATE instances SET assembled = 1 WHERE series_uid = ? AND assembled = 0",
                            (row["series_uid"],))
                paths = [Path(r[0]) for r in con.execute(
                    "SELECT path FROM instances WHERE series_uid = ? ORDER BY path", (row["series_uid"],))]
            out.append(CompleteSeries(row["study_uid"], row["series_uid"], paths))
        return out
