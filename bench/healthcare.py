"""Cloud Healthcare turnaround: last notification of a 15-instance study published → its SEG + SR stored in the
store, against the same study sent by C-STORE (last instance acknowledged → SEG + SR stored), interleaved in one
run. Goal: median <= quiet period + 2 s.

Peers as in the tests: Google's Pub/Sub emulator carries the notifications, Orthanc + DICOMweb stands in for the
DICOM store (WADO-RS retrieval, STOW-RS of the results); the C-STORE studies come from dcmtk ``storescu`` and their
results go to the same STOW-RS destination, so the two paths differ only in how the study comes in. The node runs
in this process with the shipped models (``--standin``: the node's stand-in analyzer, the node alone).
Run: ``python -m bench.healthcare``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from bench.common import write_result
from bench.dicom_data import phantom_series, replicate
from bench.ingest import free_port
from bench.pubsub import PubSubEmulator
from bench.turnaround import SLICES, OrthancPeer, StandIn, send

STORE = "projects/ldh-bench-project/locations/europe-west4/datasets/ldh-phi/dicomStores/ldh-dicom"


def notifications(files: list[Path]) -> list[bytes]:
    out = []
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        out.append(f"{STORE}/dicomWeb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
                   f"/instances/{ds.SOPInstanceUID}".encode())
    return out


def upload(orthanc: OrthancPeer, path: Path) -> None:
    request = urllib.request.Request(orthanc.base + "/instances", data=path.read_bytes(), method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--studies", type=int, default=5, help="timed studies per path (median)")
    parser.add_argument("--quiet", type=float, default=2.0, help="LDH_NODE_QUIET_SECONDS for the run")
    parser.add_argument("--standin", action="store_true", help="do not load the models")
    args = parser.parse_args()

    from ai_service.config import Settings
    from dicom_node.node import Node

    store = Settings(_env_file=None).model_store
    models = all((store / n / "aliases.json").exists() for n in ("disc-seg", "herniation-cls"))
    work = Path(tempfile.mkdtemp(prefix="bench-healthcare-"))
    node = orthanc = emulator = None
    try:
        template = phantom_series(work / "phantom", seed=21, slices=SLICES)
        emulator = PubSubEmulator(work / "pubsub").start()
        os.environ["PUBSUB_EMULATOR_HOST"] = emulator.host  # this process's subscriber talks to the emulator
        topic, subscription = emulator.topic_and_subscription("ldh-bench-dicom")
        node_port = free_port()
        orthanc = OrthancPeer(work, node_port, dicomweb=True)
        dicomweb = f"{orthanc.base}/dicom-web"
        settings = Settings(_env_file=None, data_dir=work / "node", node_port=node_port, node_host="127.0.0.1",
                            node_min_free_mb=0, node_quiet_seconds=args.quiet, node_receivers=1,
                            healthcare_subscription=subscription, healthcare_dicomweb_url=dicomweb,
                            log_level="WARNING")
        if models and not args.standin:
            from ai_service.worker import SeriesAnalyzer

            analyzer, kind, wanted = SeriesAnalyzer(settings), "models", {"SEG", "SR"}
        else:
            analyzer, kind, wanted = StandIn(), "standin", {"MR"}
        node = Node(settings, analyzer).start()

        def one_study(index: int) -> tuple[str, list[Path]]:
            study = generate_uid()
            return study, replicate(template, work / "send" / f"{index:04d}", 1, study_uid=study)[0]

        def stored(study: str, timeout: float = 180.0) -> float:
            """When the store confirmed every result of the study (STOW-RS 200); then checked in Orthanc."""
            deadline = time.perf_counter() + timeout
            while time.perf_counter() < deadline:
                rows = node.db.query("SELECT state FROM outbox WHERE study_uid = ?", (study,))
                if rows and all(r["state"] == "sent" for r in rows):
                    done = time.perf_counter()
                    found = orthanc.modalities_in_study(study)
                    if not wanted <= found:
                        raise RuntimeError(f"exported but the store shows only {sorted(found)}")
                    return done
                time.sleep(0.01)
            raise RuntimeError(f"no results for study {study} within {timeout} s")

        def by_healthcare(index: int) -> float:
            study, files = one_study(index)
            for path in files:  # the store holds the study before it announces it
                upload(orthanc, path)
            emulator.publish(topic, notifications(files))
            published = time.perf_counter()
            return stored(study) - published

        def by_cstore(index: int) -> float:
            study, files = one_study(index)
            acked = send(node.port, files)
            return stored(study) - acked

        by_cstore(0)  # warm-up (the inference graphs, the DICOMweb session), not timed
        by_healthcare(1)
        runs: dict[str, list[float]] = {"healthcare": [], "cstore": []}
        for i in range(args.studies):
            runs["healthcare"].append(by_healthcare(10 + 2 * i))
            runs["cstore"].append(by_cstore(11 + 2 * i))
            print(f"round {i + 1}: Cloud Healthcare {runs['healthcare'][-1]:.2f} s, C-STORE {runs['cstore'][-1]:.2f} s",
                  flush=True)
        median = {k: float(np.median(v)) for k, v in runs.items()}
        goal = args.quiet + 2.0
        payload = {"analyzer": kind, "model_version": getattr(analyzer, "model_version", None), "slices": SLICES,
                   "quiet_seconds": args.quiet, "goal_s": goal, "meets_goal": median["healthcare"] <= goal,
                   **{f"{k}_s": {"median": round(median[k], 3), "runs": [round(t, 3) for t in v]}
                      for k, v in runs.items()},
                   "healthcare_minus_quiet_s": round(median["healthcare"] - args.quiet, 3),
                   "healthcare_minus_cstore_s": round(median["healthcare"] - median["cstore"], 3),
                   "load_average_at_end": [round(x, 2) for x in os.getloadavg()]}
        path = write_result("healthcare", payload)
        print(f"healthcare ({kind}): last notification published -> SEG + SR stored, median "
              f"{median['healthcare']:.2f} s "
              f"= quiet {args.quiet:.1f} s + {median['healthcare'] - args.quiet:.2f} s (goal <= quiet + 2 s: "
              f"{'met' if payload['meets_goal'] else 'NOT met'}); C-STORE in the same run {median['cstore']:.2f} s; "
              f"wrote {path}")
    finally:
        if node is not None:
            node.stop()
        if orthanc is not None:
            orthanc.stop()
        if emulator is not None:
            emulator.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
