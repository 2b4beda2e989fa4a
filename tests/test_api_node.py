"""Uploads through the DICOM node (``ldh serve``: node + API in one process): same inbox, routing, jobs, export."""

from __future__ import annotations

import io

import pydicom
import pytest

from api_support import R, client_for, dicom_zip, phantom, settings_for, shared_engine, upload_mha


def _analyzer(settings):
    from ai_service.worker import SeriesAnalyzer

    return SeriesAnalyzer(settings, engine=shared_engine())


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from dicom_node.node import Node

    data = tmp_path_factory.mktemp("node-data")
    # one export destination that is down: what would go to the PACS stays visibly queued in the outbox
    settings = settings_for(data, node_quiet_seconds=0.3, node_port=0, node_export_dimse="PACS@127.0.0.1:9",
                            node_export_backoff_s=30.0)
    node = Node(settings, _analyzer(settings), poll_s=0.05).start(receive=False)
    try:
        with client_for(settings) as client:
            client.app.state.ldh.use_node(node)
            yield client, data, node
    finally:
        node.stop()


def test_an_mha_upload_is_received_routed_and_analysed_by_the_node(env):
    client, data, node = env
    case, folder = phantom()
    r = upload_mha(client, folder / "image.mha")
    assert r.status_code == 201, r.text
    study, series = r.json()["study_instance_uid"], r.json()["series_instance_uid"]
    # the converted series sits in the node's inbox, received over one released pseudo-association
    assert len(list((data / "inbox" / study / series).glob("*.dcm"))) == case.image.shape[0]
    assoc = node.db.query("SELECT calling_ae, outcome FROM associations")
    assert [(a["calling_ae"], a["outcome"]) for a in assoc] == [("WEB-UPLOAD", "released")]
    jobs = node.db.query("SELECT state, out_dir FROM jobs WHERE series_uid = ?", (series,))
    assert [j["state"] for j in jobs] == ["done"]
    # the API serves the node's result, plus the page images it added
    findings = client.get(f"/api/studies/{study}/findings", headers=R).json()
    assert [d["level"] for d in findings["discs"]] == [lv["level"] for lv in case.truth["levels"] if lv["present"]]
    assert client.get(f"/api/studies/{study}/slices/0.png", headers=R).status_code == 200
    assert client.get(f"/api/studies/{study}/masks/0.png", headers=R).status_code == 200
    sr = pydicom.dcmread(io.BytesIO(client.get(f"/api/studies/{study}/sr", headers=R).content))
    assert sr.StudyInstanceUID == study
    assert not (data / "studies").exists()  # nothing went around the inbox

    fb = client.post(f"/api/studies/{study}/feedback", headers=R, json={"action": "accept"})
    assert fb.status_code == 201, fb.text
    sent = fb.json()["sent_to"]
    assert sent and len(sent) == 1  # queued for the node's destination, like the AI's SEG and SR
    sr_sop = pydicom.dcmread(io.BytesIO(client.get(fb.json()["links"]["reviewed_sr"], headers=R).content)).SOPInstanceUID
    rows = node.db.query("SELECT destination, state FROM outbox WHERE sop_uid = ?", (str(sr_sop),))
    assert [r["destination"] for r in rows] == sent


def test_a_dicom_zip_upload_goes_through_the_same_inbox(env):
    client, data, node = env
    case, folder = phantom()
    r = client.post("/api/studies?wait=120&filename=s.zip", headers={**R, "Content-Type": "application/zip"},
                    content=dicom_zip(folder / "dicom"))
    assert r.status_code == 201, r.text
    study = case.truth["study_instance_uid"]
    stored = sorted((data / "inbox" / study / case.truth["series_instance_uid"]).glob("*.dcm"))
    originals = {pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p) for p in (folder / "dicom").iterdir()}
    assert len(stored) == len(originals)
    for path in stored:  # same dataset as uploaded (the node writes its own file meta)
        ds = pydicom.dcmread(path)
        assert ds.PixelData == originals[ds.SOPInstanceUID].PixelData
    assert client.get(f"/api/studies/{study}/findings", headers=R).status_code == 200


def test_a_study_the_node_received_from_a_pacs_can_be_viewed_and_reviewed(env, tmp_path):
    import time

    from ai_service.ingest import prepare_upload

    client, data, node = env
    state = client.app.state.ldh
    work = tmp_path / "work"
    work.mkdir()
    mha = work / "image.mha"
    mha.write_bytes((phantom()[1] / "image.mha").read_bytes())
    prepared = prepare_upload([mha], {}, work, state.settings)
    state.bridge.submit(prepared)  # as if C-STORE'd by a PACS: no API job exists for it
    study = prepared.study_uid
    deadline = time.monotonic() + 120
    while not node.db.query("SELECT 1 FROM jobs WHERE study_uid = ? AND state = 'done'", (study,)):
        assert time.monotonic() < deadline, "the node did not analyse the series"
        time.sleep(0.2)
    assert state.jobs.for_study(study) == []
    assert client.get(f"/api/studies/{study}/findings", headers=R).json()["study_instance_uid"] == study
    body = client.get(f"/api/studies/{study}", headers=R).json()
    assert body["job"]["source"] == "dicom-node" and body["findings"] is not None
    assert client.get(f"/api/studies/{study}/slices/3.png", headers=R).status_code == 200  # made on first view
    fb = client.post(f"/api/studies/{study}/feedback", headers=R, json={"action": "accept"})
    assert fb.status_code == 201, fb.text
    assert fb.json()["sent_to"]
