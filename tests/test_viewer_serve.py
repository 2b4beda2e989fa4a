"""The /viewer routes without a browser: path rewriting of a (tiny, fake) OHIF build, the generated app-config,
and precise answers when OHIF is not installed or the PACS is not configured / not reachable."""

from __future__ import annotations

import pytest

from api_support import client_for, settings_for
from peers import free_port

INDEX = ('<script>window.PUBLIC_URL="/"</script><script src="/app-config.js"></script>'
         '<link href="/app.css" rel="stylesheet"><script defer src="/app.bundle.js"></script>')


@pytest.fixture()
def ohif(tmp_path):
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "index.html").write_text(INDEX)
    (dist / "app.bundle.js").write_text('(() => { __webpack_require__.p = "/"; })();')
    (dist / "plain.bundle.js").write_text("console.log('nothing to rewrite');")
    (dist / "app.css").write_text("@font-face{src:url(/a1.woff2)}")
    return dist


def test_ohif_paths_move_under_viewer_and_routes_fall_back_to_index(tmp_path, ohif):
    with client_for(settings_for(tmp_path / "data", viewer_ohif_dir=ohif)) as client:
        for path in ("/viewer/", "/viewer/ldh-review?StudyInstanceUIDs=1.2.3", "/viewer/viewer/1.2"):
            r = client.get(path)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), path
            assert r.text == INDEX.replace('"/', '"/viewer/'), path
        assert client.get("/viewer/app.bundle.js").text == '(() => { __webpack_require__.p = "/viewer/"; })();'
        assert client.get("/viewer/plain.bundle.js").text == "console.log('nothing to rewrite');"
        assert client.get("/viewer/app.css").text == "@font-face{src:url(/viewer/a1.woff2)}"
        assert client.get("/viewer/missing.bundle.js").status_code == 404  # an asset is never answered with HTML
        assert client.get("/viewer", follow_redirects=False).headers["location"] == "/viewer/"
        r = client.get("/viewer/ldh/ldh-extension.js")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
        assert client.get("/viewer/ldh/guard.mjs").status_code == 404


def test_app_config_follows_the_settings(tmp_path, ohif):
    direct = settings_for(tmp_path / "data", viewer_ohif_dir=ohif, viewer_dicomweb_proxy=False, api_auth="off",
                          viewer_dicomweb_url="http://pacs:8042/dicom-web/")
    with client_for(direct) as client:
        text = client.get("/viewer/app-config.js").text
    assert 'source.qidoRoot = source.wadoRoot = source.wadoUriRoot = "http://pacs:8042/dicom-web";' in text
    assert '"authRequired": false' in text
    proxied = settings_for(tmp_path / "data2", viewer_ohif_dir=ohif, viewer_dicomweb_url="http://x/dw")
    with client_for(proxied) as client:
        text = client.get("/viewer/app-config.js").text
    assert 'window.location.origin + "/dicom-web"' in text and '"authRequired": true' in text


def test_missing_ohif_and_missing_or_unreachable_pacs_say_what_to_do(tmp_path):
    with client_for(settings_for(tmp_path / "data", viewer_ohif_dir=tmp_path / "nothing")) as client:
        r = client.get("/viewer/")
        assert r.status_code == 503 and "viewer_plugin/install-ohif.sh" in r.json()["detail"]
        r = client.get("/dicom-web/studies")
        assert r.status_code == 404 and "LDH_VIEWER_DICOMWEB_URL" in r.json()["detail"]
    down = f"http://127.0.0.1:{free_port()}/dicom-web"
    with client_for(settings_for(tmp_path / "data2", viewer_dicomweb_url=down)) as client:
        r = client.get("/dicom-web/studies")
        assert r.status_code == 502 and f"the PACS DICOMweb at {down} is unreachable" in r.json()["detail"]
        assert client.post("/dicom-web/studies", content=b"x").status_code == 405  # read-only: no STOW through us
    with client_for(settings_for(tmp_path / "data3", viewer_enabled=False)) as client:
        assert client.get("/viewer/").status_code == 404


def test_the_api_logs_where_the_viewer_is_or_why_not(tmp_path, ohif, caplog):
    from ai_service.api.server import ApiServer

    caplog.set_level("INFO", logger="ai_service.api.routers.viewer")
    urls = []
    for folder, ohif_dir in (("ready", ohif), ("missing", tmp_path / "nothing")):
        api = ApiServer(settings_for(tmp_path / folder, viewer_ohif_dir=ohif_dir), host="127.0.0.1", port=0).start()
        urls.append(api.url)
        api.stop()
    ready, missing = [r for r in caplog.records if r.name == "ai_service.api.routers.viewer"]
    assert ready.getMessage() == "viewer ready" and ready.url == f"{urls[0]}viewer/"
    assert missing.getMessage() == "viewer unavailable" and "install-ohif.sh" in missing.reason


def test_an_idle_keep_alive_connection_outlives_a_client_polling_every_few_seconds(tmp_path):
    """A client that reuses its connection after 6 s idle (bench.soak polls every 1-5 s) must not meet a socket the
    server closed meanwhile: that was a 'connection reset' under uvicorn's 5 s default."""
    import http.client
    import time

    from ai_service.api.server import ApiServer

    for keepalive, survives in ((75.0, True), (2.0, False)):
        api = ApiServer(settings_for(tmp_path / f"ka{keepalive:g}", api_keepalive_s=keepalive), host="127.0.0.1",
                        port=0).start()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
            conn.request("GET", "/healthz")
            assert conn.getresponse().read() and conn.sock is not None
            first = conn.sock
            time.sleep(6.0 if survives else 4.0)
            if survives:
                conn.request("GET", "/healthz")
                assert conn.getresponse().status == 200 and conn.sock is first  # same connection, still open
            else:
                assert first.recv(1) == b""  # the server closed it: the case a longer keep-alive avoids
        finally:
            api.stop()
