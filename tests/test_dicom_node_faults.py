"""Crash safety: ``kill -9`` the node while 500 instances stream in, restart it, and check that every instance
that got a success status is on disk, analysed and exported to the PACS (Orthanc): 0 lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from node_support import ROOT, phantom_series, replicate
from peers import NODELAY_ENV, Orthanc, dcmtk, free_port, storescu, wait_for

from dicom_node.db import Database

INSTANCES_PER_SERIES = 20
SERIES = 25  # 500 instances of ~132 KB


def start_node(data_dir: Path, port: int, export: str, log: Path, env: dict) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "node_support.py"), str(data_dir), str(port), export],
                            stdout=subprocess.PIPE, stderr=open(log, "a"), text=True, env=env, cwd=ROOT)
    line = proc.stdout.readline()
    assert line.startswith("READY"), (line, log.read_text()[-3000:])
    return proc


@pytest.mark.slow
def test_kill_9_while_receiving_loses_no_acknowledged_instance(tmp_path):
    template = phantom_series(tmp_path / "phantom", seed=5, slices=INSTANCES_PER_SERIES)
    series = replicate(template, tmp_path / "send", SERIES)
    files = [f for s in series for f in s]
    sop_of = {f: str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}
    study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)

    rules = tmp_path / "rules.json"  # partial series left by the crash must be analysed too
    rules.write_text('{"rules": [{"name": "any-mr", "modality": ["MR"], "min_slices": 1}]}')
    env = {**os.environ, "LDH_NODE_ROUTING_FILE": str(rules), "PYTHONPATH": str(ROOT)}
    port = free_port()
    orthanc = Orthanc(tmp_path / "orthanc", modalities={"ldh": ["LDHASSIST", "127.0.0.1", port]}).start()
    export = f"ORTHANC@127.0.0.1:{orthanc.dicom_port}"
    data = tmp_path / "data"
    node = start_node(data, port, export, tmp_path / "node.log", env)
    try:
        sender = subprocess.Popen([dcmtk("storescu"), "-v", "-aet", "PACS", "-aec", "LDHASSIST", "127.0.0.1",
                                   str(port), *map(str, files)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, env=NODELAY_ENV)
        acknowledged = 0
        output = []
        for line in sender.stdout:
            output.append(line)
            if "Received Store Response (Success)" in line:
                acknowledged += 1
                if acknowledged == 230:  # mid-stream, mid-series
                    os.kill(node.pid, signal.SIGKILL)
                    break
        sender.stdout.read()  # let storescu notice the dead peer
        sender.wait(timeout=60)
        node.wait(timeout=30)
        acknowledged = sum(1 for line in output if "Received Store Response (Success)" in line)
        assert 0 < acknowledged < len(files)
        acked = files[:acknowledged]  # storescu sends the files in order, one at a time

        node = start_node(data, port, export, tmp_path / "node.log", env)
        acked_series = {f.parent.name for f in acked}
        db = Database(data / "node.db")
        wait_for(lambda: db.query("SELECT count(*) FROM outbox WHERE state = 'sent'")[0][0] == len(acked_series),
                 120, interval=0.5, what="every series with an acknowledged instance analysed and exported")

        on_disk = {p.stem for p in (data / "inbox").rglob("*.dcm")}
        indexed = {r[0] for r in db.query("SELECT sop_uid FROM instances")}
        lost = [f for f in acked if sop_of[f] not in on_disk or sop_of[f] not in indexed]
        assert lost == [], f"{len(lost)} acknowledged instances lost"
        stored = {p.stem: p for p in (data / "inbox").rglob("*.dcm")}
        for f in acked:  # and intact: the dataset is the one that was sent
            assert pydicom.dcmread(stored[sop_of[f]]).PixelData == pydicom.dcmread(f).PixelData
        jobs = db.query("SELECT state, count(*) n FROM jobs GROUP BY state")
        assert {r["state"]: r["n"] for r in jobs} == {"done": len(acked_series)}
        results = orthanc.instances_of_study(study_uid)
        assert len(results) == len(acked_series)  # one result per series, none twice
        assert not list((data / "inbox" / ".journal").glob("*.wal"))
        print(f"killed after {acknowledged} acknowledged instances; recovered all, "
              f"{len(acked_series)} series analysed and exported")
    finally:
        if node.poll() is None:
            node.send_signal(signal.SIGINT)
            try:
                node.wait(timeout=20)
            except subprocess.TimeoutExpired:
                node.kill()
        orthanc.stop()


def test_a_receiver_process_killed_mid_association_is_replaced_and_its_instances_kept(tmp_path):
    from node_support import CopyAnalyzer, node_settings

    from dicom_node.node import Node

    template = phantom_series(tmp_path / "phantom", seed=6, slices=10)
    files = [f for s in replicate(template, tmp_path / "send", 6) for f in s]
    sop_of = {f: str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}
    rules = tmp_path / "rules.json"
    rules.write_text('{"rules": [{"name": "any-mr", "modality": ["MR"], "min_slices": 1}]}')
    analyzer = CopyAnalyzer()
    settings = node_settings(tmp_path / "data", node_receivers=1, node_routing_file=rules)
    with Node(settings, analyzer) as node:
        victim = node._pool.procs[0].pid
        sender = subprocess.Popen([dcmtk("storescu"), "-v", "-aet", "PACS", "-aec", "LDHASSIST", "127.0.0.1",
                                   str(node.port), *map(str, files)], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, env=NODELAY_ENV)
        output = []
        for line in sender.stdout:
            output.append(line)
            if sum("Received Store Response (Success)" in x for x in output) == 25:
                os.kill(victim, signal.SIGKILL)
                break
        output += sender.stdout.readlines()
        sender.wait(timeout=60)
        acked = files[: sum("Received Store Response (Success)" in x for x in output)]
        assert 25 <= len(acked) < len(files)
        wait_for(lambda: node._pool.live_pids() and victim not in node._pool.live_pids(), 10,
                 what="receiver replaced")
        series_acked = {f.parent.name for f in acked}
        wait_for(lambda: len(analyzer.calls) == len(series_acked), 30, what="acknowledged series analysed")
        on_disk = {p.stem for p in node.inbox.root.rglob("*.dcm")}
        assert all(sop_of[f] in on_disk for f in acked)
        assert not list(node.inbox.journal_dir.glob(f"{victim}-*.wal")), "the dead receiver's journal replayed"
        lost = node.db.query("SELECT count(*) FROM associations WHERE outcome = 'lost'")[0][0]
        assert lost == 1
        # the replacement receives the rest; the series cut by the crash grows and is analysed again, complete
        rest = [f for f in files if f not in acked]
        assert storescu(node.port, rest).returncode == 0
        assert len(list(node.inbox.root.rglob("*.dcm"))) == len(files)
        # calls: every series once, plus once more for the series the crash cut (in both sets)
        expected = len(series_acked) + len({f.parent.name for f in rest})
        wait_for(lambda: len(analyzer.calls) == expected, 30, what="cut series analysed again + the new ones")
        jobs = node.db.query("SELECT count(*) FROM jobs")[0][0]
        assert jobs == 6
