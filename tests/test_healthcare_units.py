"""Cloud Healthcare receiver parts that need no emulator: notification parsing, the subscription setting, the
per-study debouncer, the Google-authorised session and STOW-RS answers of 409.

Mocked, because no stand-in can show them: Google's OAuth credentials (``google.auth.default``) and the Cloud
Healthcare API's own 409 bodies. The 409 bodies are served by a real local HTTP server and follow PS3.18's Store
Instances Response Module (FailedSOPSequence with Failure Reason 0x0111 for an instance already held) and Google's
JSON error format (``"status": "ALREADY_EXISTS"``); the exact text Cloud Healthcare sends was not available here.
"""

from __future__ import annotations

import http.server
import json
import threading

import pydantic
import pydicom
import pytest
from google.oauth2.credentials import Credentials

from healthcare_support import STORE, notice
from node_support import phantom_series

from ai_service.config import Settings
from dicom_node import healthcare_dicomweb
from dicom_node.db import Database
from dicom_node.exporter import DEAD, RETRY, SENT, Exporter, StowDestination, send_stow
from dicom_node.healthcare_debounce import Debouncer
from dicom_node.healthcare_notice import BadNotice, parse_notice, store_dicomweb_url


def test_a_notification_names_store_study_series_and_instance():
    n = parse_notice(notice("1.2.3", "1.2.3.4", "1.2.3.4.5") + b"\n")
    assert (n.store, n.key) == (STORE, ("1.2.3", "1.2.3.4", "1.2.3.4.5"))
    assert store_dicomweb_url(n.store) == f"https://healthcare.googleapis.com/v1/{STORE}/dicomWeb"
    for bad in (b"", b"hello", notice("1.2.3", "1.2.3.4", "1.2.3.4.5")[:-4] + b"/frames/1",
                f"{STORE}/dicomWeb/studies/1.2/series/x/instances/1.3".encode(), b"\xff\xfe",
                notice("1." + "2" * 70, "1.2", "1.3")):
        with pytest.raises(BadNotice):
            parse_notice(bad)


def test_the_subscription_setting_is_validated():
    ok = Settings(_env_file=None, healthcare_subscription="projects/ldh-prod-1/subscriptions/ldh-dicom-instances")
    assert ok.healthcare_subscription.endswith("/ldh-dicom-instances")
    assert Settings(_env_file=None, healthcare_subscription=" ").healthcare_subscription is None  # an empty line
    for bad in ("ldh-dicom-instances", "projects/p/subscriptions/s", "projects/ldh-prod-1/topics/ldh-dicom",
                "projects/ldh-prod-1/subscriptions/"):
        with pytest.raises(pydantic.ValidationError):
            Settings(_env_file=None, healthcare_subscription=bad)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_the_debouncer_waits_for_a_quiet_study_joins_redeliveries_and_honours_backoff():
    clock = Clock()
    d = Debouncer(3.0, clock)
    a1, a2 = parse_notice(notice("1.1", "1.1.1", "1.1.1.1")), parse_notice(notice("1.1", "1.1.1", "1.1.1.2"))
    b1 = parse_notice(notice("2.2", "2.2.1", "2.2.1.1"))
    d.add(a1, "m1")
    clock.now += 2
    d.add(a2, "m2")
    d.add(a1, "m1-again")  # a redelivery is no new arrival: it does not restart the quiet period
    clock.now += 2.5
    assert d.due() == []  # study 1.1 saw its last new instance 2.5 s ago
    d.add(b1, "m3")  # another study has its own quiet period
    clock.now += 0.5
    (batch,) = d.due()
    assert batch.study == "1.1" and {i.notice.instance: i.messages for i in batch.items} == \
        {"1.1.1.1": ["m1", "m1-again"], "1.1.1.2": ["m2"]}
    failed = [i for i in batch.items if i.notice.instance == "1.1.1.2"]
    failed[0].attempts = 1
    d.retry(batch.store, batch.study, failed, 2.0)
    clock.now += 1.9
    assert d.due() == [] and d.pending() == 2  # the retried instance and study 2.2
    clock.now += 0.2
    (again,) = d.due()
    assert [(i.notice.instance, i.attempts) for i in again.items] == [("1.1.1.2", 1)]
    assert d.drain() == ["m3"] and d.pending() == 0  # study 2.2 is still quiet for less than 3 s


class Recorder(http.server.BaseHTTPRequestHandler):
    """A local HTTP endpoint: records request headers; answers ``answer`` = (status, content type, body)."""

    seen: list = []
    answer = (200, "application/dicom+json", b"{}")

    def log_message(self, *args):
        pass

    def _reply(self):
        type(self).seen.append({k.lower(): v for k, v in self.headers.items()})
        length = int(self.headers.get("Content-Length", 0) or 0)
        if length:
            self.rfile.read(length)
        elif self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while (size := int(self.rfile.readline().strip(), 16)) != 0:
                self.rfile.read(size + 2)
            self.rfile.readline()
        status, kind, body = type(self).answer
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _reply


@pytest.fixture
def endpoint():
    handler = type("Handler", (Recorder,), {"seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield handler, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_healthcare_url_gets_a_google_authorised_session_and_others_a_plain_one(endpoint, monkeypatch):
    handler, url = endpoint
    creds = Credentials(token="test-oauth-token")
    calls = []

    def fake_default(scopes=None, **kw):
        calls.append(scopes)
        return creds, "ldh-test-project"

    monkeypatch.setattr("google.auth.default", fake_default)
    monkeypatch.setattr(healthcare_dicomweb, "_sessions", {})
    session = healthcare_dicomweb.dicomweb_session(store_dicomweb_url(STORE))
    assert session is healthcare_dicomweb.dicomweb_session(f"https://healthcare.googleapis.com/v1/{STORE}/x")
    assert calls == [["https://www.googleapis.com/auth/cloud-platform"]] and session.credentials is creds
    session.get(url, timeout=10)  # the token goes out on every request
    assert handler.seen[-1]["authorization"] == "Bearer test-oauth-token"
    plain = healthcare_dicomweb.dicomweb_session(url)
    plain.get(url, timeout=10)
    assert "authorization" not in handler.seen[-1] and plain is not session


@pytest.fixture(scope="module")
def two_results(tmp_path_factory):
    return phantom_series(tmp_path_factory.mktemp("results"), slices=2)


def failed_json(failures: dict[str, int]) -> bytes:
    items = [{"00081155": {"vr": "UI", "Value": [sop]}, "00081197": {"vr": "US", "Value": [reason]}}
             for sop, reason in failures.items()]
    return json.dumps({"00081198": {"vr": "SQ", "Value": items}}).encode()


def test_stow_409_for_an_instance_already_stored_counts_as_sent_and_other_failures_do_not(endpoint, two_results):
    handler, url = endpoint
    held, wrong = two_results
    sops = [str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in two_results]
    dest = StowDestination(url)

    handler.answer = (409, "application/dicom+json", failed_json({sops[0]: 0x0111, sops[1]: 0xA900}))
    out = send_stow(dest, two_results)
    assert out[held][0] == SENT and "already stored" in out[held][1]
    assert out[wrong] == (DEAD, "HTTP 409, failure reason 0xA900")

    handler.answer = (409, "application/dicom+json", failed_json({sops[0]: 0x0111}))
    assert send_stow(dest, two_results)[wrong][0] == RETRY  # the body does not account for it

    google = {"error": {"code": 409, "message": f"instance {sops[0]} already exists", "status": "ALREADY_EXISTS"}}
    handler.answer = (409, "application/json", json.dumps(google).encode())
    assert {v[0] for v in send_stow(dest, two_results).values()} == {SENT}

    handler.answer = (409, "text/plain", b"conflict")
    assert {v[0] for v in send_stow(dest, two_results).values()} == {DEAD}


def test_the_exporter_marks_an_already_stored_result_sent_not_dead_lettered(endpoint, two_results, tmp_path):
    handler, url = endpoint
    sop = str(pydicom.dcmread(two_results[0], stop_before_pixels=True).SOPInstanceUID)
    handler.answer = (409, "application/dicom+json", failed_json({sop: 0x0111}))
    db = Database(tmp_path / "node.db")
    exporter = Exporter(db, [StowDestination(url)], "LDHASSIST", max_attempts=3)
    with db.tx() as con:
        con.execute("INSERT INTO outbox (study_uid, destination, path, sop_uid, state, next_at, created, updated)"
                    " VALUES ('1.2', ?, ?, ?, 'pending', 0, 0, 0)", (f"stow:{url}", str(two_results[0]), sop))
    assert exporter.run_once() == 1
    (row,) = db.query("SELECT state, error, attempts FROM outbox")
    assert (row["state"], row["error"], row["attempts"]) == ("sent", None, 1)
    assert db.query("SELECT state FROM destinations")[0][0] == "ok"


def test_without_a_fixed_url_results_go_back_to_the_store_they_came_from_also_after_a_restart(tmp_path):
    from dicom_node.healthcare import HealthcareReceiver
    from dicom_node.inbox import Inbox

    url = store_dicomweb_url(STORE)
    settings = Settings(_env_file=None, data_dir=tmp_path,
                        healthcare_subscription="projects/ldh-prod-1/subscriptions/ldh-dicom")
    db = Database(tmp_path / "node.db")
    with db.tx() as con:  # a result still waiting for the store that an earlier notification named
        con.execute("INSERT INTO outbox (study_uid, destination, path, sop_uid, state, next_at, created, updated)"
                    " VALUES ('1.2', ?, '/r.dcm', '1.2.3', 'pending', 0, 0, 0)", (f"stow:{url}",))
    exporter = Exporter(db, [], "LDHASSIST")
    receiver = HealthcareReceiver(settings, Inbox(tmp_path, db), db, exporter)
    assert list(exporter.destinations) == [f"stow:{url}"]
    other = url.replace("ldh-dicom", "other-store")
    receiver._export_to(other)
    assert set(exporter.destinations) == {f"stow:{url}", f"stow:{other}"}
