"""The Cloud Healthcare receiver against real peers: Google's Pub/Sub emulator carries the store's notifications,
Orthanc + its DICOMweb plugin stands in for the DICOM store's WADO-RS and STOW-RS endpoints (a test proxy in front
of it slows or fails requests where a test needs that). With CI=true a missing emulator, Java or Orthanc fails."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from healthcare_support import STORE, DicomwebProxy, notice, notices
from node_support import ROOT, CopyAnalyzer, node_settings, phantom_series, replicate
from peers import Orthanc, free_port, orthanc_fixture, pubsub_emulator_fixture, wait_for

from ai_service.config import Settings
from dicom_node.db import Database
from dicom_node.node import Node
from dicom_node.status import format_status, load

MODEL_STORE = Settings(_env_file=None).model_store
HAVE_MODELS = all((MODEL_STORE / name / "aliases.json").exists() for name in ("disc-seg", "herniation-cls"))
QUIET = 1.0


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    yield from pubsub_emulator_fixture(tmp_path_factory.mktemp("emulator"))


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> list[Path]:
    return phantom_series(tmp_path_factory.mktemp("phantom"), seed=21, slices=15)


@pytest.fixture(scope="module")
def analyzer():
    """The shipped models (SEG + SR + preview) where they exist, else the node's stand-in analyzer."""
    if HAVE_MODELS:
        from ai_service.worker import SeriesAnalyzer

        return SeriesAnalyzer(Settings(_env_file=None))
    return CopyAnalyzer()


@pytest.fixture
def orthanc(tmp_path):
    yield from orthanc_fixture(tmp_path, dicomweb=True)


@pytest.fixture
def channel(emulator, monkeypatch):
    """A fresh topic + subscription; the node under test finds the emulator through PUBSUB_EMULATOR_HOST."""
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", emulator.host)
    return emulator.topic_and_subscription(f"dicom-{uuid.uuid4().hex[:10]}")


def new_study(template: list[Path], where: Path) -> list[Path]:
    return replicate(template, where, 1, study_uid=generate_uid())[0]


def healthcare_settings(tmp_path, subscription: str, dicomweb_url: str, **kw):
    return node_settings(tmp_path / "data", node_quiet_seconds=QUIET, healthcare_subscription=subscription,
                         healthcare_dicomweb_url=dicomweb_url, **kw)


def results_in(orthanc: Orthanc, study_uid: str, sources: list[Path]) -> list[dict]:
    source_uids = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in sources}
    return [i for i in orthanc.instances_of_study(study_uid) if i["SOPInstanceUID"] not in source_uids]


def all_sent(db) -> int:
    rows = db.query("SELECT state, count(*) n FROM outbox GROUP BY state")
    return bool(rows) and all(r["state"] == "sent" for r in rows) and sum(r["n"] for r in rows)


def counts(db) -> dict:
    return {table: db.query(f"SELECT count(*) FROM {table}")[0][0]
            for table in ("instances", "associations", "series", "jobs", "outbox")}


# ---------------------------------------------------------------------------------------------- the whole path
def test_fifteen_notifications_give_one_analysis_results_stowed_back_and_redelivery_changes_nothing(
        tmp_path, emulator, channel, orthanc, template, analyzer):
    topic, subscription = channel
    files = new_study(template, tmp_path / "study")
    study_uid = str(pydicom.dcmread(files[0]).StudyInstanceUID)
    for path in files:
        orthanc.upload(path)
    messages = notices(files)
    settings = healthcare_settings(tmp_path, subscription, f"{orthanc.base}/dicom-web")
    analysed_before = len(getattr(analyzer, "calls", []))
    with Node(settings, analyzer) as node:
        emulator.publish(topic, messages[:7], action="StoreInstances", storeName=STORE)
        emulator.publish(topic, messages[7:])  # the attributes may be missing: only the data is read
        exported = wait_for(lambda: all_sent(node.db), 180, interval=0.2, what="results exported by STOW-RS")
        results = results_in(orthanc, study_uid, files)
        assert len(results) == exported and all(r["StudyInstanceUID"] == study_uid for r in results)
        if HAVE_MODELS:
            assert {"SEG", "SR"} <= {r["Modality"] for r in results}
        (assoc,) = node.db.query("SELECT calling_ae, peer, outcome FROM associations")
        assert tuple(assoc) == ("GCP-HEALTHCARE", STORE, "released")  # one pseudo-association: one batch
        before = counts(node.db)
        assert before["instances"] == 15 and before["jobs"] == 1 and before["series"] == 1
        if isinstance(analyzer, CopyAnalyzer):
            assert len(analyzer.calls) == analysed_before + 1

        # the store announces our own SEG/SR (we STOWed them into it): recognised, never fed back in
        own = [notice(study_uid, str(pydicom.dcmread(r["path"]).SeriesInstanceUID), r["sop_uid"])
               for r in node.db.query("SELECT path, sop_uid FROM outbox")]
        emulator.publish(topic, own)
        # and every original notification is delivered again
        emulator.publish(topic, messages)
        time.sleep(QUIET + 4)
        assert counts(node.db) == before
        assert len(results_in(orthanc, study_uid, files)) == exported
        status = load(node.data_dir)["studies"]
        assert [(s["study"], s["analysed"], s["failed"]) for s in status] == [(study_uid, 1, 0)]
    # the node stopped (held messages nacked): nothing is left to deliver, so every message was acked
    assert emulator.waiting(subscription) == 0


def test_own_results_are_recognised_by_their_sop_instance_uid_in_the_outbox(tmp_path, emulator, channel, orthanc):
    """Even before the exporter sent them: the outbox row is written when the job completes."""
    topic, subscription = channel
    settings = healthcare_settings(tmp_path, subscription, f"{orthanc.base}/dicom-web")
    with Node(settings, None) as node:
        with node.db.tx() as con:
            con.execute("INSERT INTO outbox (study_uid, destination, path, sop_uid, state, next_at, created, updated)"
                        " VALUES ('1.2.3', 'stow:elsewhere', '/nowhere.dcm', '1.2.3.4.5', 'pending', 9e9, 0, 0)")
        emulator.publish(topic, [notice("1.2.3", "1.2.3.4", "1.2.3.4.5")])
        time.sleep(QUIET + 2)
        assert counts(node.db)["associations"] == 0 and node.healthcare.debouncer.pending() == 0
    assert emulator.waiting(subscription) == 0


# ---------------------------------------------------------------------------------------------- faults
def test_dicomweb_5xx_is_retried_with_backoff_then_dead_lettered_with_an_alert(tmp_path, emulator, channel, orthanc,
                                                                              template, caplog):
    topic, subscription = channel
    flaky = new_study(template, tmp_path / "flaky")  # its instances fail twice, then come
    broken = new_study(template, tmp_path / "broken")  # its instances always fail
    broken_study = str(pydicom.dcmread(broken[0]).StudyInstanceUID)
    for path in flaky + broken:
        orthanc.upload(path)
    proxy = DicomwebProxy(f"{orthanc.base}/dicom-web", fail=lambda method, path, n: method == "GET" and (
        broken_study in path or n <= 2))
    settings = healthcare_settings(tmp_path, subscription, proxy.url, healthcare_fetch_attempts=4,
                                   healthcare_fetch_backoff_s=0.2)
    caplog.set_level(logging.INFO, logger="dicom_node")
    try:
        with Node(settings, CopyAnalyzer()) as node:
            emulator.publish(topic, notices(flaky) + notices(broken))
            wait_for(lambda: node.db.query("SELECT count(*) FROM receive_dead")[0][0] == 15, 90, interval=0.2,
                     what="the broken study dead-lettered")
            wait_for(lambda: counts(node.db)["instances"] == 15, 60, what="the flaky study received")
            assert {r[0] for r in node.db.query("SELECT DISTINCT study_uid FROM instances")} == \
                {str(pydicom.dcmread(flaky[0]).StudyInstanceUID)}
            gets = {path: n for (method, path), n in proxy.asked.items() if method == "GET"}
            assert all(n == 4 for path, n in gets.items() if broken_study in path) and len(gets) == 30
            assert all(n == 3 for path, n in gets.items() if broken_study not in path)
            status = load(node.data_dir)
            (row,) = [s for s in status["studies"] if s["study"] == broken_study]
            assert row["failed"] == 15 and row["instances"] == 0
            assert "15 instance(s) not received from GCP-HEALTHCARE, dead-lettered: gave up after 4 attempt(s): " \
                   "WADO-RS HTTP 503" in row["notes"][0]
            assert "dead-lettered" in format_status(status)
        alerts = [r for r in caplog.records if r.getMessage().startswith("ALERT: Cloud Healthcare")]
        assert len(alerts) == 15 and all(r.study == broken_study and "HTTP 503" in r.error for r in alerts)
        assert any("retrying" in r.getMessage() for r in caplog.records)
        assert emulator.waiting(subscription) == 0  # dead letters are acked: they do not loop
    finally:
        proxy.stop()


def test_a_non_lumbar_series_is_kept_not_analysed_and_a_malformed_notification_is_dead_lettered(
        tmp_path, emulator, channel, orthanc, template):
    topic, subscription = channel
    head = new_study(template, tmp_path / "head")
    for path in head:
        ds = pydicom.dcmread(path)
        ds.BodyPartExamined, ds.StudyDescription, ds.SeriesDescription, ds.ProtocolName = "HEAD", "MR BRAIN", \
            "T2 SAG BRAIN", "BRAIN"
        ds.save_as(path, enforce_file_format=True)
        orthanc.upload(path)
    analyzer = CopyAnalyzer()
    with Node(healthcare_settings(tmp_path, subscription, f"{orthanc.base}/dicom-web"), analyzer) as node:
        emulator.publish(topic, notices(head) + [b"projects/p/locations/l/datasets/d/dicomStores/s/dicomWeb/studies/1"])
        status = wait_for(lambda: (s := load(node.data_dir)) and s["studies"] and s["studies"][0]["skipped"] and s,
                          60, interval=0.2, what="series skipped")
        assert analyzer.calls == [] and counts(node.db)["instances"] == 15
        assert "not lumbar spine" in status["studies"][0]["notes"][0]
        assert len(list(node.inbox.root.rglob("*.dcm"))) == 15, "kept in the inbox"
        assert status["receive_dead"] and "not a DICOM store instance name" in status["receive_dead"][0]
        assert "not lumbar spine" in format_status(status)
    assert emulator.waiting(subscription) == 0


def test_ldh_serve_killed_after_some_instances_were_fetched_completes_the_study_after_restart(
        tmp_path, emulator, channel, orthanc, template):
    """``kill -9`` of a real ``ldh serve`` while a study is being fetched (the store is slowed down): its messages
    were not acked, so Pub/Sub delivers them again to the restarted node; nothing is lost."""
    topic, subscription = channel
    files = new_study(template, tmp_path / "study")
    study_uid = str(pydicom.dcmread(files[0]).StudyInstanceUID)
    sops = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in files}
    for path in files:
        orthanc.upload(path)
    proxy = DicomwebProxy(f"{orthanc.base}/dicom-web", delay_s=0.4)
    data_dir = tmp_path / "data"
    env = {**os.environ, "PUBSUB_EMULATOR_HOST": emulator.host, "LDH_DATA_DIR": str(data_dir),
           "LDH_NODE_HOST": "127.0.0.1", "LDH_NODE_PORT": str(free_port()), "LDH_NODE_RECEIVERS": "0",
           "LDH_NODE_MIN_FREE_MB": "0", "LDH_NODE_QUIET_SECONDS": str(QUIET), "LDH_PIPELINE_CRON": "",
           "LDH_HEALTHCARE_SUBSCRIPTION": subscription, "LDH_HEALTHCARE_DICOMWEB_URL": proxy.url,
           "LDH_NODE_EXPORT_BACKOFF_S": "0.2", "LDH_NODE_EXPORT_BACKOFF_MAX_S": "1", "TCP_NODELAY": "1"}
    if not HAVE_MODELS:
        pytest.skip("needs the shipped models (ldh serve analyses with them)")

    def serve(log: Path) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "ai_service.cli", "serve", "--no-api"], env=env, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=open(log, "w"))
        wait_for(lambda: "Cloud Healthcare receiver subscribed" in log.read_text() or proc.poll() is not None, 120,
                 what="ldh serve started")
        assert proc.poll() is None, log.read_text()[-2000:]
        return proc

    first = serve(tmp_path / "serve-1.log")
    second = None
    try:
        emulator.publish(topic, notices(files))
        wait_for(lambda: proxy.instance_gets() >= 4, 60, interval=0.05, what="some instances fetched")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        fetched_before = proxy.instance_gets()
        assert fetched_before < 15, "the kill came too late to test anything"
        second = serve(tmp_path / "serve-2.log")
        db = Database(data_dir / "node.db")

        def analysed_whole_and_sent():
            jobs = db.query("SELECT state, series_dir FROM jobs")
            return (len(jobs) == 1 and jobs[0]["state"] == "done" and all_sent(db)
                    and len(list(Path(jobs[0]["series_dir"]).glob("*.dcm"))) == 15)

        wait_for(analysed_whole_and_sent, 240, interval=0.5, what="the whole study analysed and its results sent")
        assert {"SEG", "SR"} <= {r["Modality"] for r in results_in(orthanc, study_uid, files)}
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=60) == 0
        assert {r[0] for r in db.query("SELECT sop_uid FROM instances")} == sops  # 0 lost
        assert all(Path(r[0]).is_file() for r in db.query("SELECT path FROM instances"))
        (job,) = db.query("SELECT state, series_dir FROM jobs")
        assert job["state"] == "done" and len(list(Path(job["series_dir"]).glob("*.dcm"))) == 15
        assert emulator.waiting(subscription) == 0
        print(f"killed after {fetched_before} instance GETs; {proxy.instance_gets()} in all")
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        proxy.stop()
