"""Ingest speed: 500 × ~132 KB MR instances sent by dcmtk ``storescu`` (TCP_NODELAY=1) over one association and
over two in parallel, to our node (durable: acknowledged only after fdatasync), Orthanc and dcmtk ``storescp``,
all measured in the same run on 127.0.0.1. Median of ``--runs``; prints our inst/s and the ratio to Orthanc
(median of the per-round ratios).

Run: ``python -m bench.ingest [--instances 500] [--runs 3] [--receivers N[,M...]]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from bench.common import write_result
from bench.dicom_data import phantom_series, replicate

ENV = {**os.environ, "TCP_NODELAY": "1"}
ROOT = Path(__file__).resolve().parents[1]


def dcmtk(tool: str) -> str:
    for directory in ["/usr/bin", "/usr/local/bin", *os.environ.get("PATH", "").split(os.pathsep)]:
        path = Path(directory) / tool
        if path.is_file() and path.read_bytes()[:4] == b"\x7fELF":
            return str(path)
    raise SystemExit(f"dcmtk {tool} not found (apt-get install dcmtk)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


class Target:
    name = ""
    aet = "ANY"

    def start(self, work: Path) -> None: ...

    def stop(self) -> None:
        proc = getattr(self, "proc", None)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


class Node(Target):
    aet = "LDHASSIST"

    def __init__(self, receivers: int = 1):
        self.receivers = receivers
        self.name = f"ldh-node-r{receivers}"

    def start(self, work: Path) -> None:
        self.port = free_port()
        env = {**ENV, "LDH_DATA_DIR": str(work / "node"), "LDH_NODE_PORT": str(self.port),
               "LDH_NODE_HOST": "127.0.0.1", "LDH_NODE_MIN_FREE_MB": "0", "LDH_NODE_QUIET_SECONDS": "3600",
               "LDH_NODE_RECEIVERS": str(self.receivers), "LDH_LOG_LEVEL": "WARNING"}
        self.proc = subprocess.Popen([sys.executable, "-m", "ai_service.cli", "serve", "--receive-only", "--no-api"],
                                     env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=open(work / "node.log", "w"),
                                     text=True)
        # ready when 'ldh serve' says so (every receiver process started), as Orthanc is when its REST API answers
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"node did not start: {(work / 'node.log').read_text()[-500:]}")


class Orthanc(Target):
    name, aet = "orthanc", "ORTHANC"

    def start(self, work: Path) -> None:
        self.port, http = free_port(), free_port()
        config = {"Name": "bench", "StorageDirectory": str(work / "orthanc"), "IndexDirectory": str(work / "orthanc"),
                  "HttpPort": http, "DicomPort": self.port, "DicomAet": "ORTHANC", "RemoteAccessAllowed": False,
                  "AuthenticationEnabled": False, "DicomAlwaysAllowStore": True, "Plugins": []}
        (work / "orthanc.json").write_text(json.dumps(config))
        self.proc = subprocess.Popen(["Orthanc", str(work / "orthanc.json")], env=ENV, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{http}/system", timeout=1)
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("Orthanc did not start")


class StoreSCP(Target):
    name, aet = "storescp", "STORESCP"

    def start(self, work: Path) -> None:
        self.port = free_port()
        out = work / "storescp"
        out.mkdir()
        self.proc = subprocess.Popen([dcmtk("storescp"), "-od", str(out), "-aet", "STORESCP", str(self.port)],
                                     env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)


def send(target: Target, groups: list[list[Path]]) -> float:
    """Wall seconds for len(groups) parallel storescu processes, one association each."""
    t0 = time.perf_counter()
    procs = [subprocess.Popen([dcmtk("storescu"), "-aet", "BENCH", "-aec", target.aet, "127.0.0.1",
                               str(target.port), *map(str, files)], env=ENV, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for files in groups]
    for p in procs:
        _, err = p.communicate(timeout=600)
        if p.returncode != 0:
            raise RuntimeError(f"storescu to {target.name} failed: {err[-500:]}")
    return time.perf_counter() - t0


def measure(target: Target, groups: list[list[Path]], count: int) -> float:
    work = Path(tempfile.mkdtemp(prefix=f"ingest-{target.name}-", dir=os.environ.get("BENCH_TMP")))
    try:
        target.start(work)
        return count / send(target, groups)
    finally:
        target.stop()
        shutil.rmtree(work, ignore_errors=True)


def run(targets: list[Target], files: list[Path], parallel: int, runs: int) -> dict:
    """Rounds interleave the targets, so a busy machine slows them alike; ratios are taken per round."""
    groups = [files[i::parallel] for i in range(parallel)]
    rates: dict[str, list[float]] = {t.name: [] for t in targets}
    for _ in range(runs):
        for target in targets:
            rates[target.name].append(measure(target, groups, len(files)))
    out = {name: {"inst_per_s": float(np.median(r)), "runs": [round(x, 1) for x in r]} for name, r in rates.items()}
    for t in targets:
        if isinstance(t, Node):
            ratios = [a / b for a, b in zip(rates[t.name], rates["orthanc"])]
            out[t.name]["ratio_to_orthanc"] = {"median": round(float(np.median(ratios)), 3),
                                               "runs": [round(x, 3) for x in ratios]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--receivers", default="2",
                        help="LDH_NODE_RECEIVERS for our node; a comma-separated list compares them in the same run")
    args = parser.parse_args()

    data = Path(tempfile.mkdtemp(prefix="ingest-data-"))
    try:
        per_series = 20
        template = phantom_series(data / "phantom", seed=3, slices=per_series)
        series = replicate(template, data / "send", -(-args.instances // per_series))
        files = [f for s in series for f in s][: args.instances]
        size_kb = float(np.mean([f.stat().st_size for f in files]) / 1024)
        receivers = [int(r) for r in args.receivers.split(",")]
        results = {}
        for parallel in (1, 2):
            key = "one_association" if parallel == 1 else "two_associations"
            nodes = [Node(r) for r in receivers]
            results[key] = run([*nodes, Orthanc(), StoreSCP()], files, parallel, args.runs)
            orthanc = results[key]["orthanc"]["inst_per_s"]
            ours = "; ".join(f"{n.name} {results[key][n.name]['inst_per_s']:.0f} inst/s = "
                             f"{results[key][n.name]['ratio_to_orthanc']['median']:.2f}x Orthanc" for n in nodes)
            print(f"{key}: {ours}; Orthanc {orthanc:.0f} inst/s; storescp -od {results[key]['storescp']['inst_per_s']:.0f} "
                  f"inst/s (medians of {args.runs})", flush=True)
        load = os.getloadavg()
        path = write_result("ingest", {"instances": len(files), "mean_instance_kb": round(size_kb, 1),
                                       "receivers": receivers, "durable": "fdatasync before success",
                                       "load_average_at_end": [round(x, 2) for x in load], "results": results})
        print(f"wrote {path}")
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
