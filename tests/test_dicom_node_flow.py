"""Assembly, routing, jobs and export, end to end against a real Orthanc (DIMSE and DICOMweb STOW-RS).

The analyzer is the real AI (SEG + SR + preview) once the shipped models exist, otherwise the stand-in from
node_support (one derived object per series): the node's behaviour does not depend on which.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pydicom
import pytest

from node_support import CopyAnalyzer, node_settings, phantom_series, replicate
from peers import STRICT_AE, Orthanc, free_port, storescu, wait_for

from ai_service.config import Settings
from dicom_node.db import Database
from dicom_node.exporter import backoff_delay, parse_destinations
from dicom_node.jobs import JobQueue
from dicom_node.node import Node
from dicom_node.routing import Router
from dicom_node.status import format_status, load

MODEL_STORE = Settings(_env_file=None).model_store  # the shipped models, or LDH_MODEL_STORE
HAVE_MODELS = all((MODEL_STORE / name / "aliases.json").exists() for name in ("disc-seg", "herniation-cls"))


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> list[Path]:
    return phantom_series(tmp_path_factory.mktemp("phantom"), seed=11, slices=12)


@pytest.fixture(scope="module")
def real_or_standin():
    if HAVE_MODELS:
        from ai_service.worker import SeriesAnalyzer

        return SeriesAnalyzer(Settings(_env_file=None))
    return None


def result_instances(orthanc: Orthanc, study_uid: str, sources: list[Path]) -> list[dict]:
    source_uids = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in sources}
    return [i for i in orthanc.instances_of_study(study_uid) if i["SOPInstanceUID"] not in source_uids]


def expected_results(analyzer) -> int:
    return 1 if isinstance(analyzer, CopyAnalyzer) else 2  # SR + preview, + SEG when a disc was found


# ---------------------------------------------------------------------------------------------- unit level
def test_routing_default_accepts_lumbar_sagittal_mr_and_explains_rejections(series, tmp_path):
    router = Router()
    assert router.decide(series).analyse
    assert "slices" in router.decide(series[:3]).reason
    axial = tmp_path / "axial.dcm"
    ds = pydicom.dcmread(series[0])
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.save_as(axial)
    decision = router.decide([axial] * 12)
    assert not decision.analyse and "axial orientation" in decision.reason
    ds = pydicom.dcmread(series[0])
    ds.Modality, ds.BodyPartExamined, ds.StudyDescription, ds.SeriesDescription = "CT", "HEAD", "BRAIN", "AX"
    head = tmp_path / "head.dcm"
    ds.save_as(head)
    decision = Router().decide([head] * 12)
    assert not decision.analyse and "modality CT" in decision.reason and "not lumbar" in decision.reason


def test_routing_rules_file(tmp_path, series):
    rules = tmp_path / "rules.json"
    rules.write_text('{"rules": [{"name": "any-mr", "modality": ["MR"], "min_slices": 2}]}')
    assert Router.from_file(rules).decide(series[:2]).rule == "any-mr"


def test_job_queue_is_idempotent_and_recovers_interrupted_jobs(tmp_path):
    queue = JobQueue(Database(tmp_path / "node.db"))
    assert queue.enqueue("1.2", "1.2.3", "m1", tmp_path)
    assert not queue.enqueue("1.2", "1.2.3", "m1", tmp_path)
    assert queue.enqueue("1.2", "1.2.3", "m2", tmp_path)  # a new model version analyses again
    job = queue.claim()
    assert job is not None and job.attempts == 1
    assert queue.recover() == 1  # the process "died" while running it
    again = queue.claim()
    assert again.id == job.id and again.attempts == 2


@pytest.mark.parametrize("error, attempts, state", [(ValueError("no lumbar spine was found"), 1, "failed"),
                                                    (OSError("disk full"), 3, "failed")])
def test_a_refused_input_fails_at_once_and_other_errors_are_retried(tmp_path, error, attempts, state):
    """An input the analyzer refuses is not analysed three times (bench.fuzz: every unanalysable upload was)."""
    calls = []

    def analyzer(series_dir, out_dir):
        calls.append(series_dir)
        raise error

    node = Node(node_settings(tmp_path), analyzer)
    assert node.jobs.enqueue("1.2", "1.2.3", "m1", tmp_path)
    while node.work_once():
        pass
    row = node.db.query("SELECT state, attempts, error FROM jobs")[0]
    assert (row["state"], row["attempts"], len(calls)) == (state, attempts, attempts)
    assert row["error"] == f"{type(error).__name__}: {error}"


def test_backoff_is_exponential_with_jitter_and_capped():
    delays = [backoff_delay(n, 1.0, 30.0) for n in range(1, 8)]
    for n, d in enumerate(delays, start=1):
        full = min(30.0, 2 ** (n - 1))
        assert full / 2 <= d <= full
    assert parse_destinations("PACS@10.0.0.1:104, B@h:11112", "http://x/dicom-web/")[-1].url == "http://x/dicom-web"
    with pytest.raises(ValueError):
        parse_destinations("nonsense")


# ---------------------------------------------------------------------------------------------- with peers
def test_series_not_routed_is_kept_with_reason_visible_in_status(tmp_path, series):
    analyzer = CopyAnalyzer()
    with Node(node_settings(tmp_path / "data"), analyzer) as node:
        assert storescu(node.port, series[:4]).returncode == 0
        status = wait_for(lambda: (s := load(node.data_dir)["studies"]) and s[0]["skipped"] and s, 10,
                          what="series skipped")
        assert analyzer.calls == []
        assert "4 slices < 8" in status[0]["notes"][0]
        assert list(node.inbox.root.rglob("*.dcm")), "kept in the inbox"
        assert "not analysed" in format_status(load(node.data_dir))


def test_orthanc_routes_study_to_node_and_gets_results_back_in_the_same_study(tmp_path, series, real_or_standin):
    analyzer = real_or_standin or CopyAnalyzer()
    node_port = free_port()
    orthanc = Orthanc(tmp_path / "orthanc", dicomweb=True,
                      modalities={"ldh": ["LDHASSIST", "127.0.0.1", node_port]}).start()
    try:
        settings = node_settings(tmp_path / "data", node_port, export=f"ORTHANC@127.0.0.1:{orthanc.dicom_port}")
        with Node(settings, analyzer) as node:
            for path in series:
                orthanc.upload(path)
            study_uid = str(pydicom.dcmread(series[0]).StudyInstanceUID)
            study_id = orthanc.post("/tools/lookup", study_uid.encode())[0]["ID"]
            t0 = time.monotonic()
            orthanc.post("/modalities/ldh/store", {"Resources": [study_id], "Synchronous": True})

            def all_sent():
                rows = node.db.query("SELECT state, count(*) n FROM outbox GROUP BY state")
                return rows and all(r["state"] == "sent" for r in rows) and sum(r["n"] for r in rows)

            exported = wait_for(all_sent, 180, interval=0.1, what="every result exported")
            elapsed = time.monotonic() - t0
            results = result_instances(orthanc, study_uid, series)
            assert len(results) == exported >= expected_results(analyzer)
            assert all(r["StudyInstanceUID"] == study_uid for r in results)
            if not isinstance(analyzer, CopyAnalyzer):  # the SR always; the SEG when a disc was found
                out_dir = Path(node.db.query("SELECT out_dir FROM jobs")[0][0])
                found = json.loads((out_dir / "findings.json").read_text())["discs"]
                assert {r["Modality"] for r in results} >= ({"SEG", "SR"} if found else {"SR"})
            status = load(node.data_dir)["studies"]
            assert status[0]["analysed"] == 1 and status[0]["exported"] == exported and status[0]["failed"] == 0
            print(f"Orthanc store -> results back in Orthanc: {elapsed:.2f} s")
    finally:
        orthanc.stop()


def test_stow_rs_export_to_orthanc_dicomweb(tmp_path, series):
    orthanc = Orthanc(tmp_path / "orthanc", dicomweb=True).start()
    try:
        settings = node_settings(tmp_path / "data", stow_url=f"{orthanc.base}/dicom-web")
        with Node(settings, CopyAnalyzer()) as node:
            assert storescu(node.port, series).returncode == 0
            study_uid = str(pydicom.dcmread(series[0]).StudyInstanceUID)
            wait_for(lambda: result_instances(orthanc, study_uid, series), 30, interval=0.25, what="STOW-RS result")
            wait_for(lambda: load(node.data_dir)["studies"][0]["exported"] == 1, 10, what="outbox marked sent")
    finally:
        orthanc.stop()


def test_orthanc_down_while_exporting_results_arrive_later_without_duplicates(tmp_path, series):
    orthanc = Orthanc(tmp_path / "orthanc", modalities={"ldh": ["LDHASSIST", "127.0.0.1", free_port()]})
    settings = node_settings(tmp_path / "data", export=f"ORTHANC@127.0.0.1:{orthanc.dicom_port}")
    copies = replicate(series, tmp_path / "copies", 2)
    with Node(settings, CopyAnalyzer()) as node:
        for files in copies:
            assert storescu(node.port, files).returncode == 0
        wait_for(lambda: node.db.query("SELECT count(*) FROM outbox WHERE attempts >= 2")[0][0] == 2, 30,
                 what="failed export attempts while Orthanc is down")
        assert node.db.query("SELECT count(*) FROM outbox WHERE state = 'pending'")[0][0] == 2
        orthanc.start()
        try:
            wait_for(lambda: node.db.query("SELECT count(*) FROM outbox WHERE state = 'sent'")[0][0] == 2, 30,
                     what="exports after Orthanc came back")
            study_uid = str(pydicom.dcmread(copies[0][0]).StudyInstanceUID)
            results = orthanc.instances_of_study(study_uid)
            assert len(results) == 2 and len({r["SOPInstanceUID"] for r in results}) == 2
            assert len(orthanc.get("/instances")) == 2  # nothing stored twice
        finally:
            orthanc.stop()


def test_destination_rejecting_our_ae_title_fails_fast_with_alert(tmp_path, series, caplog):
    orthanc = Orthanc(tmp_path / "orthanc", modalities={}, **STRICT_AE).start()  # we are not a known modality
    try:
        settings = node_settings(tmp_path / "data", export=f"ORTHANC@127.0.0.1:{orthanc.dicom_port}")
        with Node(settings, CopyAnalyzer()) as node:
            assert storescu(node.port, series).returncode == 0
            wait_for(lambda: node.db.query("SELECT count(*) FROM outbox WHERE state = 'dead'")[0][0] == 1, 30,
                     what="dead-lettered export")
            time.sleep(1.0)  # backoff would have retried by now
            row = node.db.query("SELECT attempts, error FROM outbox")[0]
            assert row["attempts"] == 1 and "rejected" in row["error"]
            dest = load(node.data_dir)["destinations"][0]
            assert dest["state"] == "rejected"
            assert any("ALERT" in r.getMessage() for r in caplog.records)
    finally:
        orthanc.stop()


def test_a_series_that_grows_during_or_after_its_analysis_is_analysed_again(tmp_path):
    queue = JobQueue(Database(tmp_path / "node.db"))
    queue.enqueue("1.2", "1.2.3", "m1", tmp_path)
    job = queue.claim()
    assert queue.requeue("1.2", "1.2.3", "m1")  # grew while running
    queue.complete(job, tmp_path, [])
    again = queue.claim()
    assert again is not None and again.id == job.id
    queue.complete(again, tmp_path, [])
    assert queue.claim() is None
    assert queue.requeue("1.2", "1.2.3", "m1")  # grew after it was done
    assert queue.claim().id == job.id


def test_status_says_why_an_analysed_series_was_not_analysable(tmp_path):
    from dicom_node.db import Database
    from dicom_node.status import format_status, study_status

    queue = JobQueue(Database(tmp_path / "node.db"))
    queue.enqueue("1.2", "1.2.3", "m1", tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "findings.json").write_text('{"discs": [], "not_analysable": "the sacrum was not found"}')
    queue.complete(queue.claim(), out, [])
    status = study_status(queue.db)
    assert status["studies"][0]["analysed"] == 1
    assert "series 1.2.3 not analysable: the sacrum was not found" in format_status(status)
