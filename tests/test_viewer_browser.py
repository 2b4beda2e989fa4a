"""The OHIF viewer's LDH review mode end to end: Orthanc (+DICOMweb) -> DICOM node -> analysis -> SEG/SR back to
Orthanc; the prebuilt OHIF at /viewer reads Orthanc through our /dicom-web proxy; headless Debian Chromium checks
the AI boxes, drags one, saves, and we check the stored feedback record and the reviewed SR that reached Orthanc.
OHIF's own longitudinal viewer then hydrates the AI SR and a reviewed SR into RectangleROI measurements.

Screenshots land in ``test-artifacts/viewer/``. Skips when Orthanc, chromium, node, playwright-core or the
installed OHIF is missing, except under CI=true, where it fails.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import pydicom
import pytest

from ai_service.encoders.sr_reader import read_sr_findings
from ai_service.feedback import FeedbackStore
from ai_service.storage import LocalStorage
from api_support import REVIEWER, settings_for, shared_engine
from peers import Orthanc, free_port, wait_for
from viewer_plugin import DEFAULT_OHIF_DIR

ROOT = Path(__file__).resolve().parent.parent
BROWSER_DIR = ROOT / "tests" / "browser"
ARTIFACTS = ROOT / "test-artifacts" / "viewer"
CHROMIUM = os.environ.get("LDH_CHROMIUM", "/usr/bin/chromium")
SEED = 777_100  # a phantom with all five discs (not a training seed)
SR = "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR


def _missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (scripts/setup.sh --peers)"
    if shutil.which("node") is None:
        return "node is missing"
    if not (BROWSER_DIR / "node_modules" / "playwright-core").exists():
        return "tests/browser/node_modules is missing (cd tests/browser && npm ci)"
    if not (DEFAULT_OHIF_DIR / "index.html").exists():
        return "OHIF is not installed (viewer_plugin/install-ohif.sh)"
    return None


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    reason = _missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"viewer test cannot run under CI: {reason}")
        pytest.skip(reason)
    from ai_service.api.server import ApiServer
    from ai_service.worker import SeriesAnalyzer
    from dicom_node.node import Node
    from pipelines.phantom import generate_case, write_case

    root = tmp_path_factory.mktemp("viewer")
    node_port = free_port()
    orthanc = Orthanc(root / "orthanc", modalities={"LDH": ["LDHASSIST", "127.0.0.1", node_port]}, dicomweb=True)
    orthanc.start()
    settings = settings_for(root / "data", node_port=node_port, node_host="127.0.0.1", node_receivers=0,
                            node_quiet_seconds=0.5, node_min_free_mb=0, node_export_backoff_s=0.2,
                            node_export_dimse=f"{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}",
                            viewer_dicomweb_url=f"{orthanc.base}/dicom-web")
    engine = shared_engine()
    node = Node(settings, SeriesAnalyzer(settings, engine=engine), poll_s=0.05).start()
    api = None
    try:
        api = ApiServer(settings, engine=engine, host="127.0.0.1", port=0).start()
        api.app.state.ldh.use_node(node)
        cases = Path(tempfile.mkdtemp(prefix="ldh-viewer-cases-"))
        studies, ids = [], []
        for seed in (SEED, SEED + 1):  # the second study stays in the PACS only: never analysed
            case = generate_case(seed, herniation_rate=0.5)
            folder = write_case(case, cases / str(seed), formats=("dicom",))
            ids.append([orthanc.upload(p)["ID"] for p in sorted((folder / "dicom").iterdir())])
            studies.append(case.truth["study_instance_uid"])
        study, ids = studies[0], ids[0]
        # the PACS routes the study to us; SEG + AI SR (+ preview) come back into the same study
        orthanc.post("/modalities/LDH/store", {"Resources": ids, "Synchronous": True})
        wait_for(lambda: sum(i["SOPClassUID"] == SR for i in orthanc.instances_of_study(study)) == 1, 180, 0.5,
                 "the AI SR in Orthanc")
        yield {"url": api.url, "data": root / "data", "orthanc": orthanc, "study": study, "unanalysed": studies[1],
               "settings": settings}
    finally:
        if api is not None:
            api.stop()
        node.stop()
        orthanc.stop()


def test_viewer_config_and_proxy_are_generated_from_the_settings(stack):
    def get(path):
        with urllib.request.urlopen(stack["url"] + path.lstrip("/"), timeout=30) as r:
            return r.status, r.headers.get("Content-Type"), r.read()

    _, kind, body = get("/viewer/app-config.js")
    text = body.decode()
    assert kind.startswith("text/javascript")
    assert '"/viewer/ldh/ldh-extension.js"' in text and '"/viewer/ldh/ldh-mode.js"' in text
    assert "window.location.origin + \"/dicom-web\"" in text and '"authRequired": true' in text
    # SPA fallback: a viewer route is index.html with OHIF's paths moved under /viewer/
    _, kind, body = get("/viewer/ldh-review?StudyInstanceUIDs=1.2.3")
    assert kind.startswith("text/html") and b'window.PUBLIC_URL="/viewer/"' in body and b'src="/app' not in body
    # QIDO-RS through our origin returns what Orthanc holds
    _, kind, body = get(f"/dicom-web/studies?StudyInstanceUID={stack['study']}")
    assert kind.startswith("application/dicom+json") and json.loads(body)[0]["0020000D"]["Value"] == [stack["study"]]
    with pytest.raises(urllib.error.HTTPError) as err:
        get("/viewer/no-such-bundle.js")
    assert err.value.code == 404


def test_review_in_ohif_drag_save_reaches_the_record_and_orthanc(stack):
    result = _browse("viewer.mjs", "result.json", 500, LDH_URL=stack["url"], LDH_KEY=REVIEWER[0],
                     LDH_STUDY=stack["study"], LDH_UNANALYSED=stack["unanalysed"])
    assert not [m for m in result["console"] if "Uncaught" in m], result["console"]

    # one rectangle per AI disc, on the key slice, exactly at the findings' box as Cornerstone itself maps it
    # back to pixels (its image coordinates, like DICOM SCOORD, put (0, 0) at the first pixel's top-left corner)
    discs = {d["level"]: d for d in result["findings"]["discs"]}
    assert len(discs) == 5 and sorted(result["rows"]) == sorted(discs)
    drawn = {b["level"]: b for b in result["drawn"]}
    assert sorted(drawn) == sorted(discs)
    for level, d in discs.items():
        b = drawn[level]
        assert b["sop"] == d["sop_instance_uid"] and b["slice_index"] == d["slice_index"]
        x0, y0, x1, y1 = d["box"]
        expected = [[x0, y0], [x1, y0], [x0, y1], [x1, y1]]
        assert max(abs(p - e) for pt, ex in zip(b["image_points"], expected) for p, e in zip(pt, ex)) < 1e-3, level
        assert b["label"].startswith(f"{level} · P {round(d['probability'] * 100)} %")  # what the box shows
    # our slice order is the loader's: findings' slice_index k is the k-th slice the viewer sorted
    assert all(result["slice_sops"][d["slice_index"]] == d["sop_instance_uid"] for d in discs.values())
    assert result["disclaimer"] == "AI output, not a diagnosis" and result["initial_state"] == "clean"
    assert result["auto_jump"]  # opening the study shows the first row's key slice with its box
    assert result["jump"]["shown_sop"] == result["jump"]["sop"]  # clicking a row shows that row's key slice

    # the drag moved the box by the screen delta in source pixels, same size; the resize moved only its
    # bottom-right corner
    drag, rs = result["drag"], result["resize"]
    before, moved, (dx, dy), scale = drag["before"], drag["after"], drag["screen_delta"], drag["scale"]
    assert before == discs[drag["level"]]["box"] and moved != before
    assert moved[2] - moved[0] == before[2] - before[0] and moved[3] - moved[1] == before[3] - before[1]
    assert abs((moved[0] - before[0]) - dx * scale) <= 1.01 and abs((moved[1] - before[1]) - dy * scale) <= 1.01
    after = rs["after"]
    assert after[:2] == moved[:2]
    assert abs((after[2] - moved[2]) - rs["screen_delta"][0] * scale) <= 1.01
    assert abs((after[3] - moved[3]) - rs["screen_delta"][1] * scale) <= 1.01
    assert result["dirty_state"] == "dirty" and result["saved_state"] == "clean" and result["toast"]

    # the drawn box covers the screen rectangle (as Cornerstone maps it) to within a pixel
    edits = result["edits"]
    assert sorted(edits["rows"]) == sorted(discs)
    assert max(abs(a - b) for a, b in zip(edits["added"], edits["added_expected"])) <= 1

    # the stored records hold exactly what the viewer showed, in the reviewer's name: the accept, then the
    # correction that supersedes it
    store = FeedbackStore(LocalStorage(stack["data"]))
    accept, record = store.records(stack["study"])
    assert accept["record_id"] == result["accepted"]["record_id"] and accept["kind"] == "accept"
    assert result["accepted"]["toast"] and result["accepted"]["status"].startswith("Reviewed (accept) by")
    assert {d["level"]: d["box"] for d in accept["discs"]} == {lv: d["box"] for lv, d in discs.items()}
    assert store.current(stack["study"]) == record and record["supersedes"] == [accept["record_id"]]
    assert record["record_id"] == result["saved"]["record_id"] and record["kind"] == "correction"
    assert accept["reviewer"]["login"] == record["reviewer"]["login"] == REVIEWER[1]
    stored = {d["level"]: d for d in record["discs"]}
    assert {c["level"]: c["box"] for c in result["final"]} == {lv: d["box"] for lv, d in stored.items()}
    dragged = stored[drag["level"]]
    assert dragged["box"] == after and {"moved", "resized"} <= set(dragged["changes"])
    toggled = stored[edits["toggled"]]
    assert toggled["herniation"] is not discs[edits["toggled"]]["herniation"] and toggled["changes"] == ["herniation"]
    relabelled = stored[edits["deleted"]]  # the relabelled AI box now holds the deleted box's level
    assert relabelled["ai"]["level"] == edits["relabelled"] and relabelled["box"] == discs[edits["relabelled"]]["box"]
    assert "relabelled" in relabelled["changes"]
    added = stored[edits["relabelled"]]
    assert added["ai"] is None and added["changes"] == ["added"] and added["box"] == edits["added"]
    assert [d["level"] for d in record["deleted"]] == [edits["deleted"]]
    untouched = set(discs) - {drag["level"], edits["toggled"], edits["deleted"], edits["relabelled"]}
    for level in untouched:
        assert stored[level]["box"] == discs[level]["box"] and stored[level]["changes"] == ["unchanged"]
    assert result["dirty_before_leaving"] and result["unload_dialog"] == "beforeunload"
    assert result["return_dialog"] == {"type": "confirm", "path": "/viewer/ldh-review", "dirty": True}

    # both reviewed SRs went back to Orthanc (the node's export destination): the accept's with the AI boxes,
    # the correction's with the edited ones
    orthanc = stack["orthanc"]
    srs = wait_for(lambda: (lambda s: s if len(s) == 3 else None)(
        [i for i in orthanc.instances_of_study(stack["study"]) if i["SOPClassUID"] == SR]), 60, 0.5, "reviewed SRs")
    verified = []
    for sr in srs:
        hits = orthanc.post("/tools/lookup", sr["SOPInstanceUID"].encode())
        with urllib.request.urlopen(f"{orthanc.base}/instances/{hits[0]['ID']}/file", timeout=30) as r:
            ds = pydicom.dcmread(io.BytesIO(r.read()))
        if ds.get("VerificationFlag") == "VERIFIED":
            verified.append({d.level: list(d.box) for d in read_sr_findings(ds)})
    assert sorted(verified, key=str) == sorted([{lv: d["box"] for lv, d in discs.items()},
                                                {lv: d["box"] for lv, d in stored.items()}], key=str)

    # robustness: a refused key, a study without AI result, a plugin module that fails to load
    assert "refused" in result["expired"] and "expired" in result["expired"]
    reopened = result["reopened"]  # the study opens on the corrections in force, which cannot be "accepted"
    assert reopened["status"].startswith(f"Reviewed (correction) by {REVIEWER[1]}")
    assert reopened["source"].startswith("Showing the corrections in force") and reopened["accept_disabled"]
    assert {b["level"]: b["box"] for b in reopened["boxes"]} == {lv: d["box"] for lv, d in stored.items()}
    assert {b["level"]: b["ai_level"] for b in reopened["boxes"]} == \
        {lv: d["ai"]["level"] if d["ai"] else None for lv, d in stored.items()}
    refused = result["refused_save"]
    assert "Nothing was saved" in refused["message"] and refused["toast"]
    assert refused["after_new_key"] == {"state": "dirty", "rows": 5, "boxes": 5}  # edits kept, nothing drawn twice
    assert "Not saved:" in result["refused_by_api"] and "appears twice" in result["refused_by_api"]
    assert store.current(stack["study"])["record_id"] == record["record_id"]  # nothing more was stored
    assert "Not analysed" in result["not_analysed"]["text"] and result["not_analysed"]["save_buttons"] == 0
    assert "could not load its extension" in result["broken"]["banner"]
    assert result["broken"]["status"] == {"extension": "failed", "mode": "failed"} and result["broken"]["study_list"]
    for name in ("01-ai-boxes.png", "02-dragged.png", "03-edited.png", "04-saved.png", "05-expired-key.png",
                 "05b-refused-by-api.png", "06-not-analysed.png", "07-plugin-failed.png"):
        assert (ARTIFACTS / name).stat().st_size > 10_000, name


def _browse(script: str, result_name: str, timeout: int, **env) -> dict:
    """Run a playwright script in tests/browser; its last stdout line is its JSON result, kept as an artifact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS.parent / ".gitignore").write_text("*\n")
    env = dict(os.environ, LDH_ARTIFACTS=str(ARTIFACTS), LDH_CHROMIUM=CHROMIUM, **env)
    proc = subprocess.run(["node", script], cwd=BROWSER_DIR, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    (ARTIFACTS / result_name).write_text(json.dumps(result, indent=2) + "\n")
    assert "error" not in result, result["error"]
    return result


def _dataset(orthanc, sop: str) -> pydicom.Dataset:
    hits = orthanc.post("/tools/lookup", sop.encode())
    with urllib.request.urlopen(f"{orthanc.base}/instances/{hits[0]['ID']}/file", timeout=30) as r:
        return pydicom.dcmread(io.BytesIO(r.read()))


def _box(points) -> list[float]:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return [min(xs), min(ys), max(xs), max(ys)]


def test_ohif_hydrates_the_ai_and_a_reviewed_sr_as_rectangles_at_the_findings_boxes(stack):
    """OHIF's own longitudinal viewer turns each disc group of our SRs into an editable RectangleROI: the reason
    the SR's groups carry a SCOORD POLYLINE and no NUM (FACTS.md). Runs last: the reviewed SR it stores would
    otherwise count among the review test's SRs in Orthanc."""
    from ai_service.encoders import ReviewedDisc, Reviewer, encode_reviewed_sr

    orthanc, study = stack["orthanc"], stack["study"]
    request = urllib.request.Request(f"{stack['url']}api/studies/{study}/findings",
                                     headers={"Authorization": f"Bearer {REVIEWER[0]}"})
    with urllib.request.urlopen(request, timeout=30) as r:
        discs = json.loads(r.read())["discs"]
    instances = orthanc.instances_of_study(study)
    sources = [_dataset(orthanc, i["SOPInstanceUID"]) for i in instances if i["Modality"] == "MR"]
    ai_sr = next(ds for ds in (_dataset(orthanc, i["SOPInstanceUID"]) for i in instances if i["SOPClassUID"] == SR)
                 if ds.VerificationFlag == "UNVERIFIED")
    # a reviewer moves and resizes every box, flips each herniation and deletes the last level
    corrections = [ReviewedDisc(d["level"], d["slice_index"], tuple(v + s for v, s in zip(d["box"], (3, -2, 5, 1))),
                                not d["herniation"]) for d in discs[:-1]]
    reviewed = encode_reviewed_sr(sources, ai_sr, corrections, Reviewer("Doe^Jane", "jdoe"), stack["settings"])
    buffer = io.BytesIO()
    reviewed.save_as(buffer)
    orthanc.post("/instances", buffer.getvalue())
    expected = {ai_sr.SOPInstanceUID: {d["level"]: (d["sop_instance_uid"], d["box"]) for d in discs},
                reviewed.SOPInstanceUID: {c.level: (d["sop_instance_uid"], list(c.box))
                                          for c, d in zip(corrections, discs)}}

    result = _browse("sr_hydrate.mjs", "sr-hydration.json", 300, LDH_URL=stack["url"], LDH_STUDY=study,
                     LDH_SRS=json.dumps(list(expected)))
    assert not result["console"], result["console"]
    for sop, levels in expected.items():
        seen = result["srs"][sop]
        assert seen["rehydratable"] and seen["error"] is None, seen
        rects = seen["measurements"]
        assert [m["tool"] for m in rects] == ["RectangleROI"] * len(levels), rects
        for level, (image_sop, box) in levels.items():  # OHIF shows no label; the finding site names the level
            site = f"Level of {level.replace('-', '/')} intervertebral disc"
            mine = [m for m in rects if m["finding_sites"] == [site]]
            assert len(mine) == 1, (level, [m["finding_sites"] for m in rects])
            assert mine[0]["sop"] == image_sop, level
            assert max(abs(a - b) for a, b in zip(_box(mine[0]["image_points"]), box)) <= 0.5, (level, mine[0])
