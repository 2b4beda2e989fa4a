"""Auth refusals, roles, reviewer identity from the credential, CORS allow-list, auth-off local mode."""

from __future__ import annotations

import hashlib
import json

import pytest

from ai_service.api.auth import AuthConfigError, Authenticator
from api_support import R, REVIEWER, V, VIEWER, client_for, phantom, settings_for, upload_mha


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    data = tmp_path_factory.mktemp("auth-data")
    keys = tmp_path_factory.mktemp("keys") / "keys.json"
    keys.write_text(json.dumps([{"token_sha256": hashlib.sha256(b"file-token").hexdigest(), "login": "asmith",
                                 "name": "Smith^Anna", "organization": "Test Hospital", "role": "reviewer"}]))
    settings = settings_for(data, api_keys_file=keys, api_cors_origins="http://viewer.example:3000")
    with client_for(settings) as client:
        yield client, data


@pytest.mark.parametrize("method, path", [
    ("get", "/api/studies"), ("get", "/api/models"), ("get", "/api/jobs/abc"),
    ("get", "/api/studies/1.2.3/findings"), ("post", "/api/studies"), ("post", "/api/studies/1.2.3/feedback"),
])
def test_every_api_route_refuses_a_missing_credential(env, method, path):
    client, _ = env
    r = getattr(client, method)(path)
    assert r.status_code == 401
    assert "missing credential" in r.json()["detail"]
    assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("headers", [
    {"Authorization": "Bearer wrong"}, {"X-API-Key": "wrong"}, {"Authorization": f"Basic {REVIEWER[0]}"},
])
def test_wrong_or_malformed_credentials_are_refused(env, headers):
    client, _ = env
    r = client.get("/api/studies", headers=headers)
    assert r.status_code == 401


def test_viewer_may_read_but_not_upload_or_review(env):
    client, _ = env
    assert client.get("/api/studies", headers=V).status_code == 200
    r = client.post("/api/studies", headers=V, content=b"x", params={"filename": "a.mha"})
    assert r.status_code == 403 and f"{VIEWER[1]} has role viewer" in r.json()["detail"]
    r = client.post("/api/studies/1.2.3/feedback", headers=V, json={"action": "accept"})
    assert r.status_code in (403, 404)  # unknown study may be checked first; never accepted


def test_public_endpoints_need_no_credential(env):
    client, _ = env
    for path in ("/", "/healthz", "/readyz", "/metrics", "/api/config", "/static/app.js", "/openapi.json"):
        assert client.get(path).status_code == 200, path
    assert client.get("/api/config").json()["auth_required"] is True


def test_reviewer_identity_comes_from_the_credential(env):
    client, data = env
    _, folder = phantom()
    r = upload_mha(client, folder / "image.mha", headers={"X-API-Key": "file-token"})
    assert r.status_code == 201, r.text
    study = r.json()["study_instance_uid"]
    fb = client.post(f"/api/studies/{study}/feedback", headers={"Authorization": "Bearer file-token"},
                     json={"action": "accept"})
    assert fb.status_code == 201, fb.text
    reviewer = fb.json()["record"]["reviewer"]
    assert reviewer == {"login": "asmith", "name": "Smith^Anna", "organization": "Test Hospital",
                        "credential": "keys.json[1]"}
    # a body cannot claim another identity
    r = client.post(f"/api/studies/{study}/feedback", headers=R,
                    json={"action": "accept", "reviewer": {"login": "someone-else"}})
    assert r.status_code == 422 and "reviewer" in r.json()["detail"]


def test_cors_allows_only_the_configured_origin(env):
    client, _ = env
    ok = client.options("/api/studies", headers={"Origin": "http://viewer.example:3000",
                                                 "Access-Control-Request-Method": "POST",
                                                 "Access-Control-Request-Headers": "authorization"})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "http://viewer.example:3000"
    bad = client.options("/api/studies", headers={"Origin": "http://evil.example",
                                                  "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in bad.headers
    simple = client.get("/api/studies", headers={**R, "Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in simple.headers


def test_required_auth_without_keys_is_a_configuration_error(tmp_path):
    with pytest.raises(AuthConfigError, match="no credential is configured"):
        Authenticator(settings_for(tmp_path, api_keys=""))
    with pytest.raises(AuthConfigError, match="TOKEN:LOGIN"):
        Authenticator(settings_for(tmp_path, api_keys="just-a-token"))
    with pytest.raises(AuthConfigError, match="role 'admin'"):
        Authenticator(settings_for(tmp_path, api_keys="t:u:admin"))


def test_auth_off_is_the_local_reviewer(tmp_path):
    with client_for(settings_for(tmp_path, api_keys="", api_auth="off", api_local_reviewer="Local^Tester")) as client:
        assert client.get("/api/studies").status_code == 200
        assert client.get("/api/config").json()["auth_required"] is False
