"""STOW-RS receiver (``POST /dicomweb/studies``) against a running ``ldh serve``-style process: the DICOM node with
the real analyzer and the API served by uvicorn, dicomweb-client and curl as clients, Orthanc + DICOMweb as the
destination of the SEG + SR. A success means the instances are in the node's inbox when the response arrives."""

from __future__ import annotations

import io
import json
import subprocess
import uuid
from pathlib import Path
from types import SimpleNamespace
from xml.etree import ElementTree

import numpy as np
import pydicom
import pytest
import requests
import SimpleITK as sitk

from api_support import KEYS, R, V, client_for, settings_for, shared_engine
from node_support import phantom_series, replicate
from peers import Orthanc, require, storescu, wait_for

SENDER = ("send-token-1", "modality")
S = {"Authorization": f"Bearer {SENDER[0]}"}
DICOM_MEDIA = 'multipart/related; type="application/dicom"'
NS = "{http://dicom.nema.org/PS3.19/models/NativeDICOM}"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from ai_service.api.server import ApiServer
    from ai_service.worker import SeriesAnalyzer
    from dicom_node.node import Node

    root = tmp_path_factory.mktemp("stow")
    orthanc = Orthanc(root / "orthanc", dicomweb=True).start()
    settings = settings_for(root / "data", api_keys=f"{KEYS},{SENDER[0]}:{SENDER[1]}:sender", node_port=0,
                            node_host="127.0.0.1", node_quiet_seconds=0.5, node_min_free_mb=0, node_receivers=0,
                            node_export_stow_url=f"{orthanc.base}/dicom-web", node_export_backoff_s=0.2,
                            node_export_backoff_max_s=1.0)
    node = api = None
    try:
        node = Node(settings, SeriesAnalyzer(settings, engine=shared_engine()), poll_s=0.05).start()
        api = ApiServer(settings, engine=shared_engine(), host="127.0.0.1", port=0).start()
        api.app.state.ldh.use_node(node)
        template = phantom_series(root / "phantom", seed=11, slices=12)
        yield SimpleNamespace(url=api.url.rstrip("/"), node=node, data=root / "data", orthanc=orthanc,
                              template=template, root=root)
    finally:
        if api is not None:
            api.stop()
        if node is not None:
            node.stop()
        orthanc.stop()


def fresh_study(env) -> list[Path]:
    """A copy of the phantom series in a study of its own (new Study/Series/SOP UIDs, same pixels)."""
    (files,) = replicate(env.template, env.root / f"copy-{uuid.uuid4().hex[:8]}", 1,
                         study_uid=pydicom.uid.generate_uid())
    return files


def multipart(parts: list[bytes], boundary: str = "ldh-test-boundary", part_type: str = "application/dicom") -> bytes:
    body = b"".join(f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode() + p + b"\r\n" for p in parts)
    return body + f"--{boundary}--\r\n".encode()


def post(env, parts: list[bytes], path: str = "/dicomweb/studies", headers=R, boundary="ldh-test-boundary", **kw):
    content_type = f'{DICOM_MEDIA}; boundary="{boundary}"'
    return requests.post(env.url + path, data=multipart(parts, boundary, **kw), timeout=120,
                         headers={**headers, "Content-Type": content_type})


def inbox_file(env, path: Path) -> Path:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return env.data / "inbox" / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"


def uids(seq) -> list[str]:
    return sorted(str(item.ReferencedSOPInstanceUID) for item in seq)


def sop(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


# -------------------------------------------------------------------------------------------- clients
def test_dicomweb_client_store_instances_puts_every_instance_on_disk_before_answering(env):
    from dicomweb_client.api import DICOMwebClient

    files = fresh_study(env)
    client = DICOMwebClient(url=f"{env.url}/dicomweb", headers=S)
    result = client.store_instances([pydicom.dcmread(f) for f in files])
    assert uids(result.ReferencedSOPSequence) == sorted(sop(f) for f in files)
    assert "FailedSOPSequence" not in result
    assert all(item.ReferencedSOPClassUID == pydicom.uid.MRImageStorage for item in result.ReferencedSOPSequence)
    for f in files:  # already there the moment the response arrived
        stored = pydicom.dcmread(inbox_file(env, f))
        assert stored.PixelData == pydicom.dcmread(f).PixelData
        assert stored.file_meta.SourceApplicationEntityTitle == "STOW-RS"
    rows = env.node.db.query("SELECT calling_ae, peer, outcome FROM associations WHERE calling_ae = 'STOW-RS'")
    assert ("STOW-RS", "127.0.0.1", "released") in [tuple(r) for r in rows]


def test_curl_with_a_hand_built_body_gets_the_xml_response_and_a_repeat_is_stored_once(env, tmp_path):
    curl = require("curl")
    files = fresh_study(env)
    study = str(pydicom.dcmread(files[0]).StudyInstanceUID)
    body = tmp_path / "body"
    body.write_bytes(multipart([f.read_bytes() for f in files], "curl-made-4f1c"))

    def send():
        out = subprocess.run(
            [curl, "-sS", "-o", str(tmp_path / "resp"), "-D", str(tmp_path / "head"), "-w", "%{http_code}",
             "-H", f"X-API-Key: {SENDER[0]}", "-H", "Accept: application/dicom+xml",
             "-H", f'Content-Type: {DICOM_MEDIA}; boundary=curl-made-4f1c',
             "--data-binary", f"@{body}", f"{env.url}/dicomweb/studies/{study}"],
            capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return int(out.stdout), (tmp_path / "head").read_text().lower(), (tmp_path / "resp").read_bytes()

    code, head, xml = send()
    assert code == 200 and "content-type: application/dicom+xml" in head
    tree = ElementTree.fromstring(xml)
    assert tree.tag == f"{NS}NativeDicomModel"
    by_keyword = {e.attrib["keyword"]: e for e in tree}
    assert set(by_keyword) == {"RetrieveURL", "ReferencedSOPSequence"}
    items = by_keyword["ReferencedSOPSequence"].findall(f"{NS}Item")
    got = sorted(i.find(f"{NS}DicomAttribute[@keyword='ReferencedSOPInstanceUID']/{NS}Value").text for i in items)
    assert got == sorted(sop(f) for f in files)
    assert all(inbox_file(env, f).exists() for f in files)

    code, head, xml = send()  # e.g. a retry after a lost response: stored, kept once, said so
    assert code == 200 and "already stored; kept once" in head
    assert len(ElementTree.fromstring(xml).findall(f"{NS}DicomAttribute[@keyword='ReferencedSOPSequence']/"
                                                   f"{NS}Item")) == len(files)
    assert env.node.db.query("SELECT count(*) n FROM instances WHERE study_uid = ?", (study,))[0]["n"] == len(files)


def test_a_mixed_request_stores_the_good_parts_and_fails_the_broken_ones_with_their_reasons(env):
    files = fresh_study(env)
    good = [f.read_bytes() for f in files[:3]]
    pdf = pydicom.dcmread(files[3])
    pdf.SOPClassUID = pdf.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.104.1"
    pdf_raw = io.BytesIO()
    pdf.save_as(pdf_raw, enforce_file_format=True)
    truncated = files[4].read_bytes()[:-3000]
    other_study = fresh_study(env)[0].read_bytes()
    study = str(pydicom.dcmread(files[0]).StudyInstanceUID)

    r = post(env, [good[0], b"not DICOM at all", good[1], pdf_raw.getvalue(), truncated, other_study, good[2]],
             path=f"/dicomweb/studies/{study}")
    assert r.status_code == 202, r.text
    assert r.headers["content-type"] == "application/dicom+json"
    result = pydicom.Dataset.from_json(r.json())
    assert uids(result.ReferencedSOPSequence) == sorted(sop(f) for f in files[:3])
    reasons = {str(i.get("ReferencedSOPInstanceUID", "") or ""): int(i.FailureReason) for i in result.FailedSOPSequence}
    assert reasons == {"": 0xC000, str(pdf.SOPInstanceUID): 0x0122, sop(files[4]): 0xC000,
                       str(pydicom.dcmread(io.BytesIO(other_study)).SOPInstanceUID): 0xA900}
    warning = r.headers["warning"]
    assert "not a DICOM Part 10 file" in warning and "1.2.840.10008.5.1.4.1.1.104.1 is not stored here" in warning
    assert f"not to the study {study} of the request" in warning
    assert all(inbox_file(env, f).exists() for f in files[:3])
    assert not inbox_file(env, files[3]).exists() and not inbox_file(env, files[4]).exists()

    r = post(env, [b"junk", truncated])  # nothing stored: 409, every failure listed
    assert r.status_code == 409
    assert [int(i.FailureReason) for i in pydicom.Dataset.from_json(r.json()).FailedSOPSequence] == [0xC000] * 2


def test_a_uid_with_control_characters_still_gets_a_response_whose_warning_is_a_legal_header(env):
    """Found by bench.fuzz: a mutated part whose SOP Instance UID held a control byte went into the Warning header
    as it was; the HTTP server refused the header and closed the connection without any response."""
    ds = pydicom.dcmread(fresh_study(env)[0])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3\x01\x0b4"
    raw = io.BytesIO()
    ds.save_as(raw, enforce_file_format=True)
    r = post(env, [raw.getvalue(), b"\x00\x1f\x7f not DICOM"])
    assert r.status_code == 409, r.text
    assert "1.2.3''4" in r.headers["warning"]
    assert not any(ord(c) < 32 and c != "\t" or ord(c) == 127 for c in r.headers["warning"])


# ------------------------------------------------------------------------------------------ refusals
def test_wrong_media_types_are_refused_with_415_and_nothing_is_stored(env):
    files = fresh_study(env)
    raw = files[0].read_bytes()
    r = requests.post(f"{env.url}/dicomweb/studies", data=raw, headers={**R, "Content-Type": "application/dicom"})
    assert r.status_code == 415 and "multipart/related" in r.json()["detail"]
    r = requests.post(f"{env.url}/dicomweb/studies", data=multipart([raw], "b1"),
                      headers={**R, "Content-Type": 'multipart/related; type="application/dicom+json"; boundary=b1'})
    assert r.status_code == 415 and "application/dicom+json" in r.json()["detail"]
    r = post(env, [raw], part_type="application/octet-stream")
    assert r.status_code == 415 and "application/octet-stream" in r.json()["detail"]
    assert not inbox_file(env, files[0]).exists()


def test_malformed_multipart_406_and_a_bad_study_uid_answer_precisely(env):
    raw = fresh_study(env)[0].read_bytes()
    unterminated = multipart([raw], "b2")[: -len("--b2--\r\n")]
    r = requests.post(f"{env.url}/dicomweb/studies", data=unterminated,
                      headers={**R, "Content-Type": f"{DICOM_MEDIA}; boundary=b2"})
    assert r.status_code == 400 and "closing boundary" in r.json()["detail"]
    r = requests.post(f"{env.url}/dicomweb/studies", data=b"--b3--\r\n",
                      headers={**R, "Content-Type": f"{DICOM_MEDIA}; boundary=b3"})
    assert r.status_code == 400 and "no instances" in r.json()["detail"]
    r = post(env, [raw], headers={**R, "Accept": "text/html"})
    assert r.status_code == 406
    r = post(env, [raw], path="/dicomweb/studies/not-a-uid")
    assert r.status_code == 400 and "not a Study Instance UID" in r.json()["detail"]


def test_credentials_no_token_401_viewer_403_sender_may_only_store(env):
    raw = fresh_study(env)[0].read_bytes()
    r = post(env, [raw], headers={})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    r = post(env, [raw], headers=V)
    assert r.status_code == 403 and "needs role sender or reviewer" in r.json()["detail"]
    assert requests.get(f"{env.url}/api/studies", headers=S, timeout=30).status_code == 403
    assert requests.get(f"{env.url}/api/studies", headers=V, timeout=30).status_code == 200


def test_request_size_limit_413_and_api_only_mode_503(env, tmp_path):
    raw = fresh_study(env)[0].read_bytes()
    with client_for(settings_for(tmp_path / "small", api_stow_max_mb=1)) as small:
        small.app.state.ldh.use_node(env.node)
        content_type = f"{DICOM_MEDIA}; boundary=b4"
        r = small.post("/dicomweb/studies", content=multipart([raw] * 12, "b4"),
                       headers={**R, "Content-Type": content_type})
        assert r.status_code == 413 and "LDH_API_STOW_MAX_MB" in r.json()["detail"]
        chunks = (multipart([raw] * 12, "b4")[i:i + 65536] for i in range(0, 12 * len(raw), 65536))
        r = small.post("/dicomweb/studies", content=chunks, headers={**R, "Content-Type": content_type})
        assert r.status_code == 413  # no Content-Length (chunked): counted while streaming
    with client_for(settings_for(tmp_path / "api-only")) as alone:
        r = alone.post("/dicomweb/studies", content=multipart([raw], "b5"),
                       headers={**R, "Content-Type": f"{DICOM_MEDIA}; boundary=b5"})
        assert r.status_code == 503 and "ldh serve" in r.json()["detail"]


# ------------------------------------------------------------------------------------------- analysis
def _result(env, study: str) -> Path:
    def done():
        rows = env.node.db.query("SELECT out_dir FROM jobs WHERE study_uid = ? AND state = 'done'", (study,))
        return rows and Path(rows[0]["out_dir"])

    return wait_for(done, 300, interval=0.2, what=f"analysis of {study}")


def _without_uids(value):
    if isinstance(value, dict):
        return {k: _without_uids(v) for k, v in value.items() if "uid" not in k.lower()}
    if isinstance(value, list):
        return [_without_uids(v) for v in value]
    return value


def test_a_study_sent_by_stow_rs_is_analysed_and_exported_exactly_like_one_sent_by_c_store(env):
    by_stow, by_cstore = fresh_study(env), fresh_study(env)  # same pixels, two studies
    stow_study, cstore_study = (str(pydicom.dcmread(f[0]).StudyInstanceUID) for f in (by_stow, by_cstore))
    assert post(env, [f.read_bytes() for f in by_stow], headers=S).status_code == 200
    assert storescu(env.node.port, by_cstore).returncode == 0

    out_stow, out_cstore = _result(env, stow_study), _result(env, cstore_study)
    findings = [json.loads((d / "findings.json").read_text()) for d in (out_stow, out_cstore)]
    assert findings[0]["discs"], "the phantom's discs are found"
    assert _without_uids(findings[0]) == _without_uids(findings[1])
    labels = [sitk.GetArrayFromImage(sitk.ReadImage(str(d / "discs.mha"))) for d in (out_stow, out_cstore)]
    assert np.array_equal(labels[0], labels[1]) and labels[0].any()

    def exported(study):
        rows = env.node.db.query("SELECT state FROM outbox WHERE study_uid = ?", (study,))
        if not rows or any(r["state"] != "sent" for r in rows):
            return None
        return sorted(i["Modality"] for i in env.orthanc.instances_of_study(study) if i["Modality"] != "MR")

    results = [wait_for(lambda: exported(s), 120, interval=0.5, what="results in Orthanc")
               for s in (stow_study, cstore_study)]
    assert results[0] == results[1] and {"SEG", "SR"} <= set(results[0])
    sources = {r["calling_ae"] for r in env.node.db.query(
        "SELECT DISTINCT a.calling_ae FROM associations a JOIN instances i ON i.assoc_id = a.id"
        " WHERE i.study_uid IN (?, ?)", (stow_study, cstore_study))}
    assert sources == {"STOW-RS", "STORESCU"}
