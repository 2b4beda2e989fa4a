"""Storage backends for tests. The GCS emulator: gcp-storage-emulator (a real HTTP server) started on 127.0.0.1 and driven by the real
google-cloud-storage client, plus the ``location`` fixture that runs a test on the local backend and on GCS.

The emulator ignores generation preconditions (FACTS.md), which create-once and read-modify-write rely on, so the
fixture adds GCS's rule to its upload handler: an upload with ``ifGenerationMatch`` that does not match the
object's current generation (0 = absent) is refused with 412, as GCS does. The emulator serves one request at a
time, so check and write cannot interleave. Without the emulator the GCS tests skip, or fail when CI=true.
:func:`race` releases concurrent writers together.
"""

from __future__ import annotations

import os
import socket
import threading
from http import HTTPStatus

import pytest

BUCKET = "ldh-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _object_name(request) -> str | None:
    if "name" in request.query:
        return request.query["name"][0]
    data = request.data
    if isinstance(data, dict):
        return (data.get("meta") or data).get("name")
    return None


def _honouring_preconditions(insert):
    from gcp_storage_emulator.exceptions import NotFound

    def checked(request, response, storage, *args, **kwargs):
        wanted = request.query.get("ifGenerationMatch")
        if wanted and "upload_id" not in request.query:
            try:
                current = int(storage.get_file_obj(request.params["bucket_name"], _object_name(request))["generation"])
            except NotFound:
                current = 0
            if current != int(wanted[0]):
                response.status = HTTPStatus.PRECONDITION_FAILED
                response.json({"error": {"code": 412, "message": "conditionNotMet"}})
                return None
        return insert(request, response, storage, *args, **kwargs)

    return checked


@pytest.fixture(scope="module")
def gcs_emulator():
    try:
        from gcp_storage_emulator import server as emulator
        from gcp_storage_emulator.handlers import objects
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("gcp-storage-emulator is required in CI (bash scripts/setup.sh installs it from requirements.lock)")
        pytest.skip("gcp-storage-emulator not installed")
    mp = pytest.MonkeyPatch()
    insert = objects.insert
    checked = _honouring_preconditions(insert)
    mp.setattr(objects, "insert", checked)  # the router's fallback for uploads without the /upload prefix
    for _, handlers in emulator.HANDLERS:  # the routes hold the function itself
        for method, handler in list(handlers.items()):
            if handler is insert:
                mp.setitem(handlers, method, checked)
    port = free_port()
    server = emulator.create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    mp.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    mp.setenv("GOOGLE_CLOUD_PROJECT", "test")
    yield
    mp.undo()
    server.stop()


@pytest.fixture(params=["local", "gcs"])
def location(request, tmp_path) -> str:
    """A fresh data location: a local folder, or a fresh prefix in the emulator's bucket."""
    if request.param == "local":
        return str(tmp_path / "data")
    request.getfixturevalue("gcs_emulator")
    return f"gs://{BUCKET}/{tmp_path.name}"


def race(worker, n: int = 8) -> list:
    """Run ``worker(i)`` in ``n`` threads released together; their results in order (a worker's error is raised)."""
    start, results, errors = threading.Barrier(n), [None] * n, []

    def run(i):
        start.wait()
        try:
            results[i] = worker(i)
        except Exception as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results
