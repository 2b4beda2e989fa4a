"""The REST API end to end on real generated data (phantom MHA, PNG folder, DICOM zip) with the shipped models."""

from __future__ import annotations

import io
import json

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import MRImageStorage

from ai_service.encoders import read_sr_findings
from ai_service.labels import LEVELS
from api_support import R, V, client_for, dicom_zip, phantom, png_files, settings_for, shared_engine, upload_mha


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    data = tmp_path_factory.mktemp("api-data")
    with client_for(settings_for(data)) as client:
        yield client, data


@pytest.fixture(scope="module")
def mha_study(env):
    client, _ = env
    case, folder = phantom()
    r = upload_mha(client, folder / "image.mha")
    assert r.status_code == 201, r.text
    return r.json()


def present_levels(case):
    return [lv["level"] for lv in case.truth["levels"] if lv["present"]]


def test_health_ready_models_and_openapi(env):
    client, _ = env
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    models = client.get("/api/models", headers=R).json()
    engine = shared_engine()
    assert models["in_use"]["segmentation"]["version"] == engine.seg_ref.version
    served = models["in_use"]["segmentation"]["card"]
    assert served["architecture"]["canvas"] == engine.serving.canvas  # an admin sees how the version is served
    assert served.get("postprocess", {}).get("sigma_px", 0.0) == engine.serving.sigma_px
    assert models["in_use"]["classification"]["version"] == engine.cls_ref.version
    assert engine.seg_ref.version in models["registry"]["disc-seg"]["versions"]
    assert models["operating_threshold"] == pytest.approx(engine.threshold)
    spec = client.get("/openapi.json").json()
    for path in ("/api/studies", "/api/jobs/{job_id}", "/api/studies/{study}/feedback", "/api/models"):
        assert path in spec["paths"]
    assert client.get("/docs").status_code == 200


def test_mha_upload_is_analysed_into_findings_seg_sr_and_images(env, mha_study):
    client, data = env
    case, _ = phantom()
    study = mha_study["study_instance_uid"]
    job = client.get(mha_study["links"]["job"], headers=R).json()
    assert job["state"] == "done" and job["progress"] == 1 and job["source"] == "upload-mha"
    findings = client.get(f"/api/studies/{study}/findings", headers=R).json()
    assert [d["level"] for d in findings["discs"]] == present_levels(case)
    assert findings["shape"] == list(case.image.shape) and findings["source"] == "dicom"
    assert findings["study_instance_uid"] == study
    # the same boxes as analysing the MHA directly (the DICOM conversion is lossless in geometry and pixels)
    from ai_service.volume import load_volume

    direct = shared_engine().analyze(load_volume(phantom()[1] / "image.mha")).findings
    assert [list(d.box) for d in direct.discs] == [d["box"] for d in findings["discs"]]
    assert [d.slice_index for d in direct.discs] == [d["slice_index"] for d in findings["discs"]]
    # DICOM objects, in the converted study
    seg = pydicom.dcmread(io.BytesIO(client.get(f"/api/studies/{study}/seg", headers=R).content))
    sr = pydicom.dcmread(io.BytesIO(client.get(f"/api/studies/{study}/sr", headers=R).content))
    assert seg.Modality == "SEG" and sr.Modality == "SR"
    assert seg.StudyInstanceUID == sr.StudyInstanceUID == study
    assert {d.level for d in read_sr_findings(sr)} == {d["level"] for d in findings["discs"]}
    png = client.get(f"/api/studies/{study}/preview.png", headers=R)
    assert png.headers["content-type"] == "image/png" and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    n = case.image.shape[0]
    for path in ("slices/0.png", f"masks/{n - 1}.png"):
        r = client.get(f"/api/studies/{study}/{path}", headers=R)
        assert r.status_code == 200 and r.content[:4] == b"\x89PNG"
    assert client.get(f"/api/studies/{study}/slices/{n}.png", headers=R).status_code == 404
    # the stored source is a proper MR series: one Part 10 MR Image per slice, geometry from the MHA header
    files = sorted((data / "studies" / study).rglob("*.dcm"))
    assert len(files) == n
    ds = pydicom.dcmread(files[0])
    assert ds.SOPClassUID == MRImageStorage and ds.Modality == "MR" and ds.file_meta.TransferSyntaxUID
    assert [float(v) for v in ds.PixelSpacing] == pytest.approx([case.spacing[1], case.spacing[0]])
    assert float(ds.SliceThickness) == pytest.approx(case.spacing[2])
    assert "Converted by LDH Assist" in ds.ImageComments
    # listing
    listed = client.get("/api/studies", headers=V).json()["studies"]
    assert any(s["study_instance_uid"] == study and s["state"] == "done" for s in listed)


def test_png_folder_upload_with_stated_pixel_spacing(env):
    client, _ = env
    case, folder = phantom()
    r = client.post("/api/studies?wait=120", headers=R, files=png_files(folder / "png"),
                    data={"pixel_spacing_mm": str(case.spacing[0]), "slice_spacing_mm": str(case.spacing[2])})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["job"]["source"] == "upload-images"
    findings = client.get(body["links"]["findings"], headers=R).json()
    assert [d["level"] for d in findings["discs"]] == present_levels(case)
    assert findings["spacing"] == pytest.approx([case.spacing[0], case.spacing[0], case.spacing[2]])


def test_png_default_spacing_is_the_stated_default(env):
    client, data = env
    _, folder = phantom()
    r = client.post("/api/studies?wait=120", headers=R, files=png_files(folder / "png"))
    assert r.status_code == 201, r.text
    study = r.json()["study_instance_uid"]
    findings = client.get(f"/api/studies/{study}/findings", headers=R).json()
    assert findings["spacing"] == [0.75, 0.75, 4.0]
    ds = pydicom.dcmread(sorted((data / "studies" / study).rglob("*.dcm"))[0])
    assert [float(v) for v in ds.PixelSpacing] == [0.75, 0.75] and float(ds.SpacingBetweenSlices) == 4.0
    assert "stated defaults" in ds.ImageComments


def test_dicom_zip_upload_keeps_the_original_instances_and_is_idempotent(env):
    client, data = env
    case, folder = phantom()
    payload = dicom_zip(folder / "dicom")
    r = client.post("/api/studies?wait=120&filename=series.zip", headers={**R, "Content-Type": "application/zip"},
                    content=payload)
    assert r.status_code == 201, r.text
    body = r.json()
    study = case.truth["study_instance_uid"]
    assert body["study_instance_uid"] == study and body["series_instance_uid"] == case.truth["series_instance_uid"]
    findings = client.get(f"/api/studies/{study}/findings", headers=R).json()
    assert [d["level"] for d in findings["discs"]] == present_levels(case)
    assert all(d["sop_instance_uid"] for d in findings["discs"])
    # stored byte for byte as uploaded
    originals = {pydicom.dcmread(p).SOPInstanceUID: p.read_bytes() for p in (folder / "dicom").iterdir()}
    stored = list((data / "studies" / study).rglob("*.dcm"))
    assert len(stored) == len(originals)
    assert all(originals[p.stem] == p.read_bytes() for p in stored)
    # the same series again: the same job, not a second analysis
    again = client.post("/api/studies?filename=series.zip", headers={**R, "Content-Type": "application/zip"},
                        content=payload)
    assert again.status_code == 200 and again.json()["job"]["id"] == body["job"]["id"]
    assert again.json()["created"] is False


def _corrections(findings, shift=(0, 0), drop=None, herniation_flip=None):
    out = []
    for d in findings["discs"]:
        if d["level"] == drop:
            continue
        x0, y0, x1, y1 = d["box"]
        out.append({"level": d["level"], "slice_index": d["slice_index"],
                    "box": [x0 + shift[0], y0 + shift[1], x1 + shift[0], y1 + shift[1]],
                    "herniation": (not d["herniation"]) if d["level"] == herniation_flip else d["herniation"],
                    "ai_level": d["level"]})
    return out


def test_feedback_accept_then_corrections_supersede_and_reviewed_sr(env, mha_study):
    client, data = env
    study = mha_study["study_instance_uid"]
    findings = client.get(f"/api/studies/{study}/findings", headers=R).json()
    base = f"/api/studies/{study}/feedback"

    accept = client.post(base, headers=R, json={"action": "accept"})
    assert accept.status_code == 201, accept.text
    rec_a = accept.json()["record"]
    assert rec_a["kind"] == "accept" and rec_a["reviewer"]["login"] == "jdoe"
    assert [d["box"] for d in rec_a["discs"]] == [d["box"] for d in findings["discs"]]
    assert all(d["changes"] == ["unchanged"] for d in rec_a["discs"])
    assert (data / "feedback" / "accepted" / study / f"{rec_a['record_id']}.json").exists()

    # a second accept supersedes the first
    accept2 = client.post(base, headers=R, json={"action": "accept"}).json()["record"]
    assert accept2["supersedes"] == [rec_a["record_id"]]

    # a correction supersedes the accept: move L-first, flip herniation of the last, delete one, relabel/add
    levels = [d["level"] for d in findings["discs"]]
    body = _corrections(findings, drop=levels[-1], herniation_flip=levels[0])
    body[0]["box"] = [v + 4 if i % 2 == 0 else v - 3 for i, v in enumerate(body[0]["box"])]  # x +4, y -3: moved
    free = next(lv for lv in LEVELS if lv not in [b["level"] for b in body])
    d_last = findings["discs"][-1]
    body.append({"level": free, "slice_index": d_last["slice_index"], "box": d_last["box"], "herniation": True,
                 "ai_level": d_last["level"]})  # the last AI box, relabelled
    corr = client.post(base, headers=R, json={"action": "corrections", "corrections": body, "comment": "checked"})
    assert corr.status_code == 201, corr.text
    rec_c = corr.json()["record"]
    assert rec_c["supersedes"] == [accept2["record_id"]]
    by_level = {d["level"]: d for d in rec_c["discs"]}
    first = by_level[levels[0]]
    assert first["box"] == body[0]["box"] and "moved" in first["changes"] and "herniation" in first["changes"]
    assert first["sop_instance_uid"] and first["ai"]["level"] == levels[0]
    columns, rows = findings["shape"][2], findings["shape"][1]
    x0, y0, x1, y1 = first["box"]
    assert first["yolo"] == [int(first["herniation"]), round((x0 + x1) / 2 / columns, 6),
                             round((y0 + y1) / 2 / rows, 6), round((x1 - x0) / columns, 6),
                             round((y1 - y0) / rows, 6)]
    if free != levels[-1]:
        assert by_level[free]["changes"] == ["relabelled"] + (["herniation"] if not d_last["herniation"] else [])
    assert rec_c["deleted"] == []  # the dropped AI box lives on, relabelled

    # the reviewed SR: verified, by the reviewer, with the corrected boxes
    sr = pydicom.dcmread(io.BytesIO(client.get(corr.json()["links"]["reviewed_sr"], headers=R).content))
    assert sr.VerificationFlag == "VERIFIED" and sr.CompletionFlag == "COMPLETE"
    assert str(sr.VerifyingObserverSequence[0].VerifyingObserverName) == "jdoe^"
    from_sr = {d.level: d for d in read_sr_findings(sr)}
    assert from_sr[levels[0]].box == tuple(body[0]["box"])
    assert from_sr[levels[0]].herniation == body[0]["herniation"]
    assert sr.StudyInstanceUID == study

    # an accept after a correction is refused; a later correction supersedes the earlier one
    refused = client.post(base, headers=R, json={"action": "accept"})
    assert refused.status_code == 409 and "already has corrections" in refused.json()["detail"]
    corr2 = client.post(base, headers=R, json={"action": "corrections", "corrections": _corrections(findings)})
    assert corr2.status_code == 201
    rec_c2 = corr2.json()["record"]
    assert rec_c2["supersedes"] == [rec_c["record_id"]]
    status = client.get(base, headers=V).json()
    assert status["current"]["record_id"] == rec_c2["record_id"]
    assert [r["superseded"] for r in status["records"]] == [True, True, True, False]
    # every record is still on disk (immutable), the current one is the last correction
    assert len(list((data / "feedback").rglob("*.json"))) == 4
    listed = {s["study_instance_uid"]: s for s in client.get("/api/studies", headers=R).json()["studies"]}
    assert listed[study]["review"]["record_id"] == rec_c2["record_id"]


def test_metrics_count_jobs_uploads_and_feedback(env, mha_study):
    client, _ = env
    text = client.get("/metrics").text
    assert 'ldh_jobs_total{outcome="done"}' in text
    assert 'ldh_uploads_total{outcome="accepted"}' in text
    assert "ldh_queue_depth" in text and "ldh_job_seconds_bucket" in text
    assert 'ldh_http_requests_total{method="POST",route="/api/studies",status="201"}' in text
    line = next(l for l in text.splitlines() if l.startswith("ldh_engine_ready"))
    assert line.endswith("1.0")


def test_discs_label_map_download_matches_findings(env, mha_study):
    client, tmp = env
    study = mha_study["study_instance_uid"]
    r = client.get(f"/api/studies/{study}/discs.mha", headers=R)
    path = tmp / "discs-download.mha"
    path.write_bytes(r.content)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    findings = client.get(f"/api/studies/{study}/findings", headers=R).json()
    assert labels.shape == tuple(findings["shape"])
    assert set(np.unique(labels)) - {0} == {201 + LEVELS.index(d["level"]) for d in findings["discs"]}
    assert json.loads(client.get(f"/api/studies/{study}", headers=R).content)["job"]["state"] == "done"
