"""The web page is served by the app, ships every asset itself (no CDN), and is wired to the API it calls."""

from __future__ import annotations

import re

import pytest

from ai_service.api.routers.web import STATIC_DIR
from api_support import client_for, settings_for


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    # the page and its assets need no model: a stub engine that is never asked to analyse
    with client_for(settings_for(tmp_path_factory.mktemp("web")), engine=_engine_stub()) as c:
        yield c


def _engine_stub():
    from ai_service.findings import ModelVersions

    class Stub:
        versions = ModelVersions("stub-seg", "stub-cls")
        threshold = 0.5

    return Stub()


def test_index_and_assets_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text):
        r = client.get(asset)
        assert r.status_code == 200, asset
    assert client.get("/static/app.js").headers["content-type"].startswith(("text/javascript", "application/javascript"))


def test_no_asset_is_loaded_from_another_origin():
    for path in STATIC_DIR.iterdir():
        text = path.read_text()
        urls = [u for u in re.findall(r"https?://[^\s\"')]+", text) if u != "http://www.w3.org/2000/svg"]
        assert urls == [], f"{path.name} refers to {urls}"


def test_page_has_the_controls_the_issue_asks_for():
    html = (STATIC_DIR / "index.html").read_text()
    for control in ('id="file-input"', 'id="upload-progress"', 'id="upload-error"', 'role="alert"',
                    'id="slice-range"', 'id="mask-toggle"', 'id="add-box"', 'id="delete-box"', 'id="level-select"',
                    'id="herniation-toggle"', 'id="save-corrections"', 'id="accept-ai"', 'data-download="seg"',
                    'data-download="sr"', 'data-download="findings"', 'id="pixel-spacing"'):
        assert control in html, control
    js = (STATIC_DIR / "app.js").read_text()
    for key in ("ArrowLeft", "Delete", "PageUp", '"h"', "Escape"):
        assert key in js


def test_config_tells_the_page_about_auth_and_defaults(client):
    cfg = client.get("/api/config").json()
    assert cfg["auth_required"] is True and cfg["default_pixel_spacing_mm"] == 0.75
    assert cfg["levels"] == ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]


def test_openapi_docs_are_served_without_a_cdn(client):
    page = client.get("/docs")
    assert page.status_code == 200
    assets = re.findall(r"(?:src|href)=['\"]([^'\"]+)['\"]", page.text)
    assert assets and all(a.startswith("/docs-static/") for a in assets), assets
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
    assert "https://" not in page.text
