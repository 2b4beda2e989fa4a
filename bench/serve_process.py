"""``ldh serve`` as a subprocess on 127.0.0.1 (DICOM node + REST API, the real models), for fuzz and soak runs.

Also samples the resident memory of the whole process tree (the serve process and its receiver processes)
from /proc, because a leak or a decompression bomb shows there first.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from bench.ingest import ENV, ROOT, free_port
from bench.raw_dicom import echo

TOKEN = "bench-token-1"


def tree_rss_mb(pid: int) -> float:
    """VmRSS of ``pid`` and all its descendants, in MiB (0 when it is gone)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total / 1024


class RssSampler(threading.Thread):
    """Samples :func:`tree_rss_mb` every ``every_s`` seconds; ``mark(name)`` labels what follows."""

    def __init__(self, pid: int, every_s: float = 0.5):
        super().__init__(daemon=True)
        self.pid, self.every_s = pid, every_s
        self.samples: list[tuple[float, str, float]] = []
        self.label = "start"
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.samples.append((time.monotonic(), self.label, tree_rss_mb(self.pid)))

    def mark(self, label: str) -> float:
        self.label = label
        now = tree_rss_mb(self.pid)
        self.samples.append((time.monotonic(), label, now))
        return now

    def peak(self, label: str | None = None) -> float:
        """The highest sample labelled ``label`` or ``label/...`` (all samples when None)."""
        values = [r for _, lab, r in self.samples if label is None or lab == label or lab.startswith(f"{label}/")]
        return max(values) if values else 0.0

    def peaks_under(self, label: str, top: int = 8) -> dict[str, float]:
        """The ``top`` highest peaks among the sub-labels ``label/<kind>``, by kind (what a peak was seen during)."""
        peaks: dict[str, float] = {}
        for _, lab, r in self.samples:
            if lab.startswith(f"{label}/"):
                kind = lab[len(label) + 1:]
                peaks[kind] = max(peaks.get(kind, 0.0), r)
        return {k: round(v, 1) for k, v in sorted(peaks.items(), key=lambda kv: -kv[1])[:top]}

    def stop(self) -> None:
        self._stop.set()


class ServeProcess:
    """``python -m ai_service.cli serve`` with its data in ``data_dir``; ready once its models are loaded."""

    def __init__(self, data_dir: Path, **env: str):
        self.data_dir = Path(data_dir)
        self.port, self.api_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.env = {**ENV, "LDH_DATA_DIR": str(self.data_dir), "LDH_NODE_HOST": "127.0.0.1",
                    "LDH_NODE_PORT": str(self.port), "LDH_API_HOST": "127.0.0.1", "LDH_API_PORT": str(self.api_port),
                    "LDH_API_KEYS": f"{TOKEN}:bench:reviewer", "LDH_NODE_MIN_FREE_MB": "0",
                    "LDH_LOG_LEVEL": "WARNING", "LDH_PIPELINE_CRON": "", **env}
        self.proc: subprocess.Popen | None = None
        self.log = self.data_dir.parent / f"{self.data_dir.name}.log"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}

    def start(self, timeout_s: float = 300.0) -> "ServeProcess":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([sys.executable, "-m", "ai_service.cli", "serve"], env=self.env, cwd=ROOT,
                                     stdout=subprocess.DEVNULL, stderr=open(self.log, "w"))
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=5) as client:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"ldh serve exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
                try:
                    if client.get(f"{self.url}/readyz").status_code == 200 and echo(self.port):
                        return self
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"ldh serve not ready in {timeout_s:.0f} s: {self.log.read_text()[-2000:]}")
                time.sleep(0.5)

    def alive(self) -> bool:
        """The process runs, its API answers and its DICOM port accepts a C-ECHO."""
        if self.proc is None or self.proc.poll() is not None:
            return False
        try:
            ok = httpx.get(f"{self.url}/healthz", timeout=10).status_code == 200
        except httpx.HTTPError:
            return False
        return ok and echo(self.port)

    def stop(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM and wait: the exit code (None if it had to be killed)."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def missing_instances(self, sop_uids: set[str]) -> list[str]:
        """Acknowledged SOP Instance UIDs that have no index row or no file (run after :meth:`stop`)."""
        if not sop_uids:
            return []
        con = sqlite3.connect(f"file:{self.data_dir / 'node.db'}?mode=ro", uri=True)
        try:
            rows = dict(con.execute("SELECT sop_uid, path FROM instances").fetchall())
        finally:
            con.close()
        return sorted(u for u in sop_uids if u not in rows or not (self.data_dir / rows[u]).is_file())

    def job_outcomes(self) -> tuple[dict[str, int], list[str]]:
        """(node and API job counts by state, the errors of jobs that failed through our fault), after :meth:`stop`.

        An API job failed with ``error_status`` >= 500, or a node job failed with an error that is not the input's
        (the node bridge's list of input errors), is a crash of the analysis, even when the HTTP answer was fine."""
        from ai_service.api.node_bridge import _INPUT_ERRORS

        counts: dict[str, int] = {}
        ours: list[str] = []
        for db, sql in (("node.db", "SELECT state, error, 0 FROM jobs"),
                        ("api-jobs.sqlite", "SELECT state, error, COALESCE(error_status, 0) FROM jobs")):
            if not (self.data_dir / db).exists():
                continue
            con = sqlite3.connect(f"file:{self.data_dir / db}?mode=ro", uri=True)
            try:
                rows = con.execute(sql).fetchall()
            finally:
                con.close()
            where = db.split(".")[0]
            for state, error, status in rows:
                counts[f"{where} {state}"] = counts.get(f"{where} {state}", 0) + 1
                internal = status >= 500 if where == "api-jobs" else not (error or "").startswith(_INPUT_ERRORS)
                if state == "failed" and internal:
                    ours.append(f"{where}: {(error or '')[:300]}")
        return counts, ours

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

