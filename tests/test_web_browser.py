"""The web page in headless Debian Chromium (npm playwright-core, never a downloaded browser), against a real server.

Uploads the phantom MHA, waits for the AI boxes, drags one with the mouse, moves/toggles another with the
keyboard, deletes one and adds one, saves; then checks the *stored* feedback record's coordinates against what the
page did. Screenshots land in ``test-artifacts/web/`` (kept for a human to look at).

Skips when /usr/bin/chromium, node or tests/browser/node_modules is missing, except under CI=true, where it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ai_service.feedback import FeedbackStore
from ai_service.storage import LocalStorage
from api_support import REVIEWER, phantom, settings_for, shared_engine

ROOT = Path(__file__).resolve().parent.parent
BROWSER_DIR = ROOT / "tests" / "browser"
ARTIFACTS = ROOT / "test-artifacts" / "web"
CHROMIUM = os.environ.get("LDH_CHROMIUM", "/usr/bin/chromium")


def _missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (apt-get install chromium; scripts/setup.sh --peers)"
    if shutil.which("node") is None:
        return "node is missing"
    if not (BROWSER_DIR / "node_modules" / "playwright-core").exists():
        return "tests/browser/node_modules is missing (cd tests/browser && npm ci)"
    return None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    reason = _missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser test cannot run under CI: {reason}")
        pytest.skip(reason)
    from ai_service.api.server import ApiServer

    data = tmp_path_factory.mktemp("web-data")
    server = ApiServer(settings_for(data), engine=shared_engine(), host="127.0.0.1", port=0).start()
    yield server.url, data
    server.stop()


def test_upload_drag_edit_save_stores_what_the_page_shows(server):
    url, data = server
    _, folder = phantom()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS.parent / ".gitignore").write_text("*\n")  # artifacts are for looking at, never for committing
    env = dict(os.environ, LDH_URL=url, LDH_KEY=REVIEWER[0], LDH_MHA=str(folder / "image.mha"),
               LDH_ARTIFACTS=str(ARTIFACTS), LDH_CHROMIUM=CHROMIUM)
    proc = subprocess.run(["node", "review.mjs"], cwd=BROWSER_DIR, env=env, capture_output=True, text=True,
                          timeout=400)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    (ARTIFACTS / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    assert not [m for m in result["console"] if "Uncaught" in m or "TypeError" in m], result["console"]

    # the drag moved the box by the screen delta converted to source pixels (rounding: ±1 px)
    drag = result["drag"]
    before, after, (dx, dy), scale = drag["before"], drag["after"], drag["screen_delta"], drag["scale"]
    assert after[2] - after[0] == before[2] - before[0] and after[3] - after[1] == before[3] - before[1]
    assert abs((after[0] - before[0]) - dx * scale) <= 1.01 and abs((after[1] - before[1]) - dy * scale) <= 1.01
    assert after != before

    rs = result["resize"]
    grow = [round(v * scale) for v in rs["screen_delta"]]
    assert rs["after"][:2] == rs["before"][:2]
    assert abs((rs["after"][2] - rs["before"][2]) - grow[0]) <= 1 and abs((rs["after"][3] - rs["before"][3]) - grow[1]) <= 1
    after = rs["after"]  # what must be stored for the dragged disc

    kb = result["keyboard"]
    assert kb["focused"] == kb["level"]
    assert kb["after"] == [kb["before"][0] + 3, kb["before"][1] + 10, kb["before"][2] + 3, kb["before"][3] + 10]
    assert kb["herniation_after"] is (not kb["herniation_before"])
    assert result["deleted"]["level"] not in result["deleted"]["remaining"]
    assert result["added"] and result["added"]["level"] not in result["deleted"]["remaining"]

    # the stored record says exactly what the page showed
    assert "Saved corrections" in result["save_status"]
    study = next((data / "feedback" / "corrections").iterdir()).name
    record = FeedbackStore(LocalStorage(data)).current(study)
    assert record["record_id"] == result["record_id"] and record["kind"] == "correction"
    assert record["reviewer"]["login"] == REVIEWER[1]
    stored = {d["level"]: d for d in record["discs"]}
    by_ai = {d["ai"]["level"]: d for d in record["discs"] if d["ai"]}
    assert by_ai[drag["level"]]["box"] == after and "moved" in by_ai[drag["level"]]["changes"]
    keyed = by_ai[kb["level"]]  # moved, herniation toggled and relabelled with the keyboard
    relabel = result["relabel"]
    assert relabel["selected_level"] == relabel["to"]
    assert keyed["box"] == kb["after"] and keyed["herniation"] is kb["herniation_after"]
    assert keyed["level"] == relabel["to"] and {"moved", "herniation", "relabelled"} <= set(keyed["changes"])
    added = stored[result["added"]["level"]]
    assert added["box"] == result["added"]["box"] and added["changes"] == ["added"] and added["ai"] is None
    assert [d["level"] for d in record["deleted"]] == [result["deleted"]["level"]]
    if result.get("drawn"):  # drawn with the mouse in "Add box" mode: the screen rectangle in source pixels
        drawn = stored[result["drawn"]["level"]]
        assert drawn["box"] == result["drawn"]["box"] and drawn["changes"] == ["added"]
        expected = [v * scale for v in result["drawn"]["screen"]]
        assert max(abs(a - b) for a, b in zip(drawn["box"], expected)) <= 1.5
    assert {b["level"]: b["box"] for b in result["final_boxes"]} == {lv: d["box"] for lv, d in stored.items()}
    assert (data / record["reviewed_sr"]).exists()

    # readable at 1366x768: no scrolling, the image and the save button are fully on screen
    layout = result["layout"]
    assert layout["scroll_width"] <= 1366 and layout["scroll_height"] <= 768
    assert layout["save"]["bottom"] <= 768 and layout["image"]["bottom"] <= 768 and layout["image"]["right"] <= 1366
    assert layout["image"]["height"] >= 500  # the slice is shown large, not at a thumbnail size

    # a refused upload shows the API's precise message
    assert "notes.txt is not a DICOM, MHA/NIfTI, PNG or JPG file" in result["bad_upload_message"]
    for name in ("01-upload.png", "02-ai-boxes.png", "03-edited.png", "04-saved.png", "05-bad-upload.png"):
        assert (ARTIFACTS / name).stat().st_size > 10_000, name
