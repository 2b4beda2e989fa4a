"""The service image run for real: `ldh serve` in the container built from Dockerfile, ready by the image's own
HEALTHCHECK command, a phantom study sent with dcmtk storescu from the host, SEG + SR stored back into an Orthanc
started here. Opt-in: scripts/container_check.sh builds the image (a local Debian root file system as the base,
podman) and runs this with LDH_CONTAINER_IMAGE set; CI builds no image (a cold build is minutes of downloads and a
3.7 GB image), so without it this is skipped, also with CI=true."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
import uuid
from pathlib import Path

import pydicom
import pytest

from tests.node_support import phantom_series
from tests.peers import Orthanc, free_port, require, storescu, wait_for

IMAGE = os.environ.get("LDH_CONTAINER_IMAGE")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not IMAGE, reason="set LDH_CONTAINER_IMAGE (scripts/container_check.sh builds it)")]
# what this machine's runtime needs on every `run` (container_check.sh: runc, host network, rlimits it may set)
RUN_OPTS = shlex.split(os.environ.get("LDH_CONTAINER_RUN_OPTS", "--network host"))
SERVICE_UID = 10001  # the Dockerfile's non-root user


def podman(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([require("podman"), *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def service(tmp_path):
    """(Orthanc, node port, host data dir) with `ldh serve` running in the image, exporting to that Orthanc."""
    node_port, api_port = free_port(), free_port()
    orthanc = Orthanc(tmp_path / "orthanc", modalities={"ldh": ["LDHASSIST", "127.0.0.1", node_port]}).start()
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, SERVICE_UID, SERVICE_UID)
    name = f"ldh-check-{uuid.uuid4().hex[:8]}"
    env = {"LDH_NODE_HOST": "127.0.0.1", "LDH_API_HOST": "127.0.0.1", "LDH_NODE_PORT": node_port,
           "LDH_API_PORT": api_port, "LDH_NODE_EXPORT_DIMSE": f"ORTHANC@127.0.0.1:{orthanc.dicom_port}",
           "LDH_NODE_QUIET_SECONDS": 1, "LDH_API_KEYS": f"{uuid.uuid4().hex}:checker"}
    run = podman("run", "-d", "--name", name, *RUN_OPTS, "-v", f"{data}:/data",
                 *[f"--env={k}={v}" for k, v in env.items()], IMAGE)
    assert run.returncode == 0, run.stderr
    try:
        yield name, orthanc, node_port, data
    finally:
        (tmp_path / "container.log").write_text(podman("logs", name).stdout + podman("logs", name).stderr)
        podman("rm", "-f", name)
        orthanc.stop()


def test_image_serves_a_cstore_round_trip_as_its_non_root_user(service, tmp_path):
    name, orthanc, node_port, data = service
    health = podman("inspect", "--format", "{{json .Config.Healthcheck.Test}}", name).stdout
    assert "/readyz" in health, f"the image's HEALTHCHECK is not the /readyz probe: {health}"
    def healthy() -> bool:
        state = podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
        assert state == "running", f"ldh serve exited: {podman('logs', name).stderr[-3000:]}"
        return podman("healthcheck", "run", name).returncode == 0

    # no systemd here to run podman's health timers: run the image's HEALTHCHECK command until it passes
    wait_for(healthy, 300, interval=2, what="the image's HEALTHCHECK (GET /readyz) to pass")
    assert podman("exec", name, "id", "-u").stdout.strip() == str(SERVICE_UID)

    series = phantom_series(tmp_path / "phantom")
    t0 = time.monotonic()
    sent = storescu(node_port, series)
    assert sent.returncode == 0, sent.stderr
    study_uid = str(pydicom.dcmread(series[0]).StudyInstanceUID)

    def results():
        found = {i["Modality"] for i in orthanc.instances_of_study(study_uid)} - {"MR"}
        return found >= {"SEG", "SR"} and found

    assert wait_for(results, 300, interval=1, what="SEG + SR stored back into Orthanc") >= {"SEG", "SR"}
    print(f"container: storescu of {len(series)} instances -> SEG + SR in Orthanc: {time.monotonic() - t0:.1f} s")
    # the node's state is in the mounted volume, owned by the service's user
    assert (data / "node.db").stat().st_uid == SERVICE_UID
    assert any(Path(data, "results", study_uid).rglob("*.dcm"))
