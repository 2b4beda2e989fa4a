"""Turnaround: last instance of a 15-slice series acknowledged by our node → its SEG + SR stored in Orthanc.

The node runs as ``ldh serve`` would (receiver processes + worker + exporter, here in this process) and exports
to a real Orthanc over C-STORE; the series is sent by dcmtk ``storescu`` (TCP_NODELAY=1), Orthanc's REST API is
polled every 20 ms. Goal: median <= quiet period + 1.5 s. Then sustained throughput: studies sent back to back
for ``--minutes``, studies/s completed (results in Orthanc) after the first one.

Uses the shipped models when they exist; otherwise (or with ``--standin``) a stand-in analyzer that writes one
derived object per series, which measures the node alone. Run: ``python -m bench.turnaround``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from bench.common import write_result
from bench.dicom_data import phantom_series, replicate
from bench.ingest import ENV, dcmtk, free_port

SLICES = 15


class StandIn:
    """One derived object (copy of the middle slice, new series) per series: the node's cost alone."""

    model_version = "standin-1"

    def __call__(self, series_dir: Path, out_dir: Path) -> list[Path]:
        files = sorted(Path(series_dir).glob("*.dcm"))
        ds = pydicom.dcmread(files[len(files) // 2])
        ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        out_dir.mkdir(parents=True, exist_ok=True)
        ds.save_as(out_dir / "result.dcm", enforce_file_format=True)
        return [out_dir / "result.dcm"]


class OrthancPeer:
    def __init__(self, work: Path, node_port: int, dicomweb: bool = False):
        self.dicom_port, self.http_port = free_port(), free_port()
        self.base = f"http://127.0.0.1:{self.http_port}"
        config = {"Name": "bench", "StorageDirectory": str(work / "orthanc"), "IndexDirectory": str(work / "orthanc"),
                  "HttpPort": self.http_port, "DicomPort": self.dicom_port, "DicomAet": "ORTHANC",
                  "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
                  "DicomModalities": {"ldh": ["LDHASSIST", "127.0.0.1", node_port]},
                  "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"] if dicomweb else [],
                  "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}}
        (work / "orthanc.json").write_text(json.dumps(config))
        self.proc = subprocess.Popen(["Orthanc", str(work / "orthanc.json")], env=ENV, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.get("/system")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("Orthanc did not start") from None
                time.sleep(0.1)

    def get(self, path: str):
        with urllib.request.urlopen(self.base + path, timeout=10) as r:
            return json.loads(r.read())

    def modalities_in_study(self, study_uid: str) -> set[str]:
        request = urllib.request.Request(self.base + "/tools/find", method="POST", data=json.dumps(
            {"Level": "Series", "Query": {"StudyInstanceUID": study_uid}, "Expand": True}).encode())
        with urllib.request.urlopen(request, timeout=10) as r:
            return {s["MainDicomTags"].get("Modality", "") for s in json.loads(r.read())}

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def _all_sent(node, study: str) -> bool:
    rows = node.db.query("SELECT state FROM outbox WHERE study_uid = ?", (study,))
    return bool(rows) and all(r["state"] == "sent" for r in rows)


def send(port: int, files: list[Path]) -> float:
    """storescu one series; returns the time (perf_counter) its last instance was acknowledged."""
    result = subprocess.run([dcmtk("storescu"), "-aet", "PACS", "-aec", "LDHASSIST", "127.0.0.1", str(port),
                             *map(str, files)], env=ENV, capture_output=True, text=True, timeout=120)
    done = time.perf_counter()
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-500:])
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--studies", type=int, default=5, help="timed single studies (median)")
    parser.add_argument("--quiet", type=float, default=2.0, help="LDH_NODE_QUIET_SECONDS for the run")
    parser.add_argument("--minutes", type=float, default=3.0, help="sustained-load duration")
    parser.add_argument("--standin", action="store_true", help="do not load the models")
    args = parser.parse_args()

    from ai_service.config import Settings
    from dicom_node.node import Node

    store = Settings(_env_file=None).model_store  # the shipped models, or LDH_MODEL_STORE
    models = all((store / n / "aliases.json").exists() for n in ("disc-seg", "herniation-cls"))
    work = Path(tempfile.mkdtemp(prefix="turnaround-"))
    node = orthanc = None
    try:
        template = phantom_series(work / "phantom", seed=21, slices=SLICES)
        node_port = free_port()
        orthanc = OrthancPeer(work, node_port)
        settings = Settings(_env_file=None, data_dir=work / "node", node_port=node_port, node_host="127.0.0.1",
                            node_min_free_mb=0, node_quiet_seconds=args.quiet, node_receivers=1,
                            node_export_dimse=f"ORTHANC@127.0.0.1:{orthanc.dicom_port}", log_level="WARNING")
        if models and not args.standin:
            from ai_service.worker import SeriesAnalyzer

            analyzer, kind, wanted = SeriesAnalyzer(settings), "models", {"SR"}  # + SEG when a disc is found
        else:
            analyzer, kind, wanted = StandIn(), "standin", {"MR"}
        node = Node(settings, analyzer).start()

        def one_study(index: int) -> tuple[str, list[Path]]:
            study = generate_uid()
            files = replicate(template, work / "send" / f"{index:04d}", 1, study_uid=study)[0]
            return study, files

        def wait_results(study: str, timeout: float = 120.0) -> float:
            """When Orthanc has confirmed (C-STORE success) every result of the study; then checked via REST."""
            deadline = time.perf_counter() + timeout
            while time.perf_counter() < deadline:
                rows = node.db.query("SELECT state, count(*) n FROM outbox WHERE study_uid = ? GROUP BY state",
                                     (study,))
                if rows and all(r["state"] == "sent" for r in rows):
                    done = time.perf_counter()
                    found = orthanc.modalities_in_study(study)
                    if not wanted <= found:
                        raise RuntimeError(f"exported but Orthanc shows only {sorted(found)}")
                    return done
                time.sleep(0.01)
            raise RuntimeError(f"no results for study {study} within {timeout} s")

        # warm-up (compiles the inference graphs), not timed
        study, files = one_study(0)
        send(node.port, files)
        wait_results(study, timeout=300)
        turnaround = []
        for i in range(1, args.studies + 1):
            study, files = one_study(i)
            acked = send(node.port, files)
            turnaround.append(wait_results(study) - acked)
            print(f"study {i}: {turnaround[-1]:.2f} s", flush=True)
        median = float(np.median(turnaround))

        # sustained: a sender thread streams studies back to back; count studies whose results arrived
        prepared = [one_study(1000 + i) for i in range(int(args.minutes * 60 / 2) + 5)]
        stop = threading.Event()
        sent: list[str] = []

        def sender():
            for study, files in prepared:
                if stop.is_set():
                    return
                send(node.port, files)
                sent.append(study)

        thread = threading.Thread(target=sender, daemon=True)
        t0 = time.perf_counter()
        thread.start()
        completed = []
        end = t0 + args.minutes * 60
        pending = 0
        while time.perf_counter() < end:
            while pending < len(sent) and _all_sent(node, sent[pending]):
                completed.append(time.perf_counter() - t0)
                pending += 1
            time.sleep(0.1)
        stop.set()
        rate = (len(completed) - 1) / (completed[-1] - completed[0]) if len(completed) > 2 else 0.0
        payload = {"analyzer": kind, "model_version": getattr(analyzer, "model_version", None), "slices": SLICES, "quiet_seconds": args.quiet,
                   "turnaround_s": {"median": round(median, 3), "runs": [round(t, 3) for t in turnaround]},
                   "goal_s": args.quiet + 1.5, "meets_goal": median <= args.quiet + 1.5,
                   "turnaround_minus_quiet_s": round(median - args.quiet, 3),
                   "sustained": {"minutes": args.minutes, "studies_sent": len(sent),
                                 "studies_completed": len(completed), "studies_per_s": round(rate, 3)},
                   "load_average_at_end": [round(x, 2) for x in os.getloadavg()]}
        path = write_result("turnaround", payload)
        print(f"turnaround ({kind}): median {median:.2f} s = quiet {args.quiet:.1f} s + {median - args.quiet:.2f} s "
              f"(goal <= quiet + 1.5 s: {'met' if payload['meets_goal'] else 'NOT met'}); "
              f"sustained {rate:.2f} studies/s over {args.minutes:g} min; wrote {path}")
    finally:
        if node is not None:
            node.stop()
        if orthanc is not None:
            orthanc.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
