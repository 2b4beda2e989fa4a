"""Soak: ``--minutes`` of mixed load against a real ``ldh serve`` with the shipped models, then the drain.

Load, all at once on 127.0.0.1: phantom studies C-STOREd by dcmtk ``storescu`` over ``--associations`` parallel
associations (one study every ``--study-interval`` s each), MHA uploads, feedback on analysed uploads, and status
polls (studies list, jobs, readiness, metrics). Goals: 0 errors, RSS growth <= 10 % from the end of the
warm-up to the end of the load (medians of one-minute windows, or a tenth of the run if shorter), and the job
queue drained (nothing queued or running, nothing failed) within ``--drain-minutes`` after the load stops.

Run: ``python -m bench.soak [--minutes 20]``. Writes bench/results/soak.json and prints its figure.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from bench.common import write_result
from bench.dicom_data import phantom_series, replicate
from bench.ingest import ENV, dcmtk
from bench.serve_process import RssSampler, ServeProcess

RSS_GROWTH_GOAL = 0.10


class Load:
    """The load threads; each records what it did and every error (with what was asked)."""

    def __init__(self, svc: ServeProcess, work: Path, args):
        self.svc, self.work, self.args = svc, work, args
        self.stop = threading.Event()
        self.counts: dict[str, int] = {"studies_sent": 0, "uploads": 0, "feedback": 0, "polls": 0}
        self.errors: list[str] = []
        self.uploaded: list[str] = []
        self.reviewed: set[str] = set()
        self.lock = threading.Lock()

    def error(self, what: str) -> None:
        with self.lock:
            self.errors.append(f"{time.strftime('%H:%M:%S')} {what}"[:400])

    def count(self, key: str) -> None:
        with self.lock:
            self.counts[key] += 1

    def _every(self, seconds: float, step) -> None:
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - any failure of a request is a soak error
                self.error(f"{step.__name__}: {type(exc).__name__}: {exc}")
            self.stop.wait(max(0.0, seconds - (time.monotonic() - t0)))

    def cstore(self, template: list[Path], index: int) -> None:
        n = 0

        def send_study() -> None:
            nonlocal n
            n += 1
            folder = self.work / "send" / f"a{index}-{n:05d}"
            files = replicate(template, folder, 1)[0]
            result = subprocess.run([dcmtk("storescu"), "-aet", "SOAK", "-aec", "LDHASSIST", "127.0.0.1",
                                     str(self.svc.port), *map(str, files)], env=ENV, capture_output=True, text=True,
                                    timeout=300)
            shutil.rmtree(folder, ignore_errors=True)
            if result.returncode != 0:
                raise RuntimeError(f"storescu exit {result.returncode}: {result.stderr[-300:]}")
            self.count("studies_sent")

        self._every(self.args.study_interval, send_study)

    def upload(self, client: httpx.Client, volumes: list[bytes]) -> None:
        n = 0

        def upload_volume() -> None:
            nonlocal n
            data = volumes[n % len(volumes)]
            n += 1
            r = client.post(f"{self.svc.url}/api/studies",
                            files=[("files", ("image.mha", data, "application/octet-stream"))])
            if r.status_code not in (200, 202):
                raise RuntimeError(f"upload HTTP {r.status_code}: {r.text[:200]}")
            with self.lock:
                self.uploaded.append(r.json()["study_instance_uid"])
            self.count("uploads")

        self._every(self.args.upload_interval, upload_volume)

    def feedback(self, client: httpx.Client) -> None:
        def review() -> None:
            with self.lock:
                todo = [s for s in self.uploaded if s not in self.reviewed]
            for study in todo:
                r = client.get(f"{self.svc.url}/api/studies/{study}")
                r.raise_for_status()
                if r.json()["job"]["state"] == "failed":
                    raise RuntimeError(f"analysis of {study} failed: {r.json()['job'].get('error')}")
                if r.json()["findings"] is None:
                    continue
                discs = r.json()["findings"]["discs"]
                boxes = [{"level": d["level"], "slice_index": d["slice_index"],
                          "box": [d["box"][0], d["box"][1], d["box"][2] + 1, d["box"][3]],
                          "herniation": d["herniation"], "ai_level": d["level"]} for d in discs]
                body = {"action": "corrections", "corrections": boxes} if len(self.reviewed) % 2 else \
                    {"action": "accept"}
                r = client.post(f"{self.svc.url}/api/studies/{study}/feedback", json=body)
                if r.status_code != 201:
                    raise RuntimeError(f"feedback HTTP {r.status_code}: {r.text[:200]}")
                with self.lock:
                    self.reviewed.add(study)
                self.count("feedback")
                return

        self._every(self.args.feedback_interval, review)

    def poll(self, client: httpx.Client) -> None:
        def status_poll() -> None:
            for path in ("/api/studies", "/readyz", "/metrics"):
                r = client.get(f"{self.svc.url}{path}")
                if r.status_code != 200:
                    raise RuntimeError(f"GET {path}: HTTP {r.status_code} {r.text[:200]}")
            self.count("polls")

        self._every(self.args.poll_interval, status_poll)


def job_states(data_dir: Path) -> dict[str, int]:
    con = sqlite3.connect(f"file:{data_dir / 'node.db'}?mode=ro", uri=True)
    try:
        return dict(con.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())
    finally:
        con.close()


def window_median(samples: list[tuple[float, str, float]], start: float, end: float) -> float:
    values = [r for t, _, r in samples if start <= t <= end]
    return float(np.median(values)) if values else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--warmup-minutes", type=float, default=None, help="default: a fifth of the run, <= 4")
    parser.add_argument("--associations", type=int, default=2)
    parser.add_argument("--study-interval", type=float, default=8.0, help="s between studies per association")
    parser.add_argument("--upload-interval", type=float, default=10.0)
    parser.add_argument("--feedback-interval", type=float, default=5.0)
    parser.add_argument("--poll-interval", type=float, default=1.0)
    parser.add_argument("--drain-minutes", type=float, default=10.0)
    args = parser.parse_args()
    warmup = (args.warmup_minutes if args.warmup_minutes is not None else min(args.minutes / 5, 4.0)) * 60
    window = min(60.0, args.minutes * 6)

    from pipelines.phantom import generate_case, write_case

    work = Path(tempfile.mkdtemp(prefix="soak-", dir=os.environ.get("BENCH_TMP")))
    svc = None
    try:
        template = phantom_series(work / "template", seed=31, slices=15)
        volumes = [(Path(write_case(generate_case(s), work / f"v{s}", formats=("mha",))) / "image.mha").read_bytes()
                   for s in (5301, 5302, 5303)]
        svc = ServeProcess(work / "data", LDH_NODE_QUIET_SECONDS="2").start()
        sampler = RssSampler(svc.proc.pid, every_s=1.0)
        sampler.start()
        load = Load(svc, work, args)
        with httpx.Client(headers=svc.headers, timeout=60) as client:
            threads = [threading.Thread(target=load.cstore, args=(template, i), daemon=True)
                       for i in range(args.associations)]
            threads += [threading.Thread(target=f, args=a, daemon=True) for f, a in
                        ((load.upload, (client, volumes)), (load.feedback, (client,)), (load.poll, (client,)))]
            t0 = time.monotonic()
            for t in threads:
                t.start()
            load.stop.wait(args.minutes * 60)
            load.stop.set()
            for t in threads:
                t.join(timeout=300)
            t_load_end = time.monotonic()
            deadline = t_load_end + args.drain_minutes * 60
            while True:
                states = job_states(svc.data_dir)
                if not states.get("queued") and not states.get("running") or time.monotonic() > deadline:
                    break
                time.sleep(1)
            drain_s = time.monotonic() - t_load_end
        sampler.stop()
        alive = svc.alive()
        exit_code = svc.stop()
        after_warmup = window_median(sampler.samples, t0 + warmup, t0 + warmup + window)
        at_end = window_median(sampler.samples, t_load_end - window, t_load_end)
        growth = at_end / after_warmup - 1 if after_warmup else float("inf")
        drained = not states.get("queued") and not states.get("running")
        failed = states.get("failed", 0)
        errors = len(load.errors) + failed + (0 if alive else 1) + (0 if exit_code == 0 else 1)
        payload = {
            "minutes": args.minutes, "warmup_s": warmup, "window_s": window, "associations": args.associations,
            "intervals_s": {"study_per_association": args.study_interval, "upload": args.upload_interval,
                            "feedback": args.feedback_interval, "poll": args.poll_interval},
            "counts": load.counts, "jobs": states, "errors": errors, "error_examples": load.errors[:20],
            "rss_mb": {"after_warmup": round(after_warmup, 1), "end": round(at_end, 1),
                       "peak": round(sampler.peak(), 1), "growth": round(growth, 4)},
            "drained": drained, "drain_s": round(drain_s, 1), "serve_alive_at_end": alive,
            "serve_exit_code": exit_code,
            "goals_met": errors == 0 and growth <= RSS_GROWTH_GOAL and drained,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        }
        path = write_result("soak", payload)
        print(f"soak {args.minutes:g} min: {errors} errors; {load.counts['studies_sent']} studies C-STOREd, "
              f"{load.counts['uploads']} uploads, {load.counts['feedback']} feedback, {load.counts['polls']} polls; "
              f"jobs {states}; RSS {after_warmup:.0f} -> {at_end:.0f} MiB ({growth * 100:+.1f} %, goal <= "
              f"{RSS_GROWTH_GOAL * 100:.0f} %); queue {'drained' if drained else 'NOT drained'} in {drain_s:.0f} s; "
              f"goals {'met' if payload['goals_met'] else 'NOT met'}; wrote {path}")
    finally:
        if svc is not None:
            svc.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
