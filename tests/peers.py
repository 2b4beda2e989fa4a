"""Real DICOM peers for tests, started on 127.0.0.1 with free ports: Orthanc (+ DICOMweb) and dcmtk tools.

A missing tool skips its test on a developer machine and fails it when CI=true.
Note: pynetdicom installs its own ``storescu`` / ``echoscu`` scripts into the venv's bin; :func:`dcmtk` finds
dcmtk's binaries instead.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
NODELAY_ENV = {**os.environ, "TCP_NODELAY": "1"}


def require(tool: str) -> str:
    path = shutil.which(tool) if not tool.endswith(".jar") else (tool if Path(tool).exists() else None)
    if path:
        return path
    if os.environ.get("CI") == "true":
        pytest.fail(f"{tool} is required in CI but was not found")
    pytest.skip(f"{tool} not installed")


def dcmtk(tool: str) -> str:
    """Path of dcmtk's ``tool`` (skipping same-named pynetdicom scripts earlier on PATH)."""
    for directory in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/bin", "/usr/local/bin"]:
        candidate = Path(directory) / tool
        if candidate.is_file() and os.access(candidate, os.X_OK):
            with open(candidate, "rb") as f:
                if f.read(4) == b"\x7fELF":
                    return str(candidate)
    return require(f"{tool} (dcmtk)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Orthanc:
    """An Orthanc process with its own storage; stop() and start() again keep its data and ports."""

    def __init__(self, root: Path, modalities: dict | None = None, dicomweb: bool = False, aet: str = "ORTHANC",
                 **config_overrides):
        self.binary = require("Orthanc")
        if dicomweb and not DICOMWEB_PLUGIN.exists():
            require(str(DICOMWEB_PLUGIN))
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.http_port, self.dicom_port = free_port(), free_port()
        self.aet = aet
        self.base = f"http://127.0.0.1:{self.http_port}"
        config = {
            "Name": "ldh-test", "StorageDirectory": str(self.root / "db"), "IndexDirectory": str(self.root / "db"),
            "HttpPort": self.http_port, "DicomPort": self.dicom_port, "DicomAet": aet,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "DicomModalities": modalities or {},
            "DicomAlwaysAllowStore": False, "DicomCheckModalityHost": True,
            "Plugins": [str(DICOMWEB_PLUGIN)] if dicomweb else [], "StableAge": 1, "HttpTimeout": 10,
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            **config_overrides,
        }
        (self.root / "orthanc.json").write_text(json.dumps(config))
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Orthanc":
        log = open(self.root / "orthanc.log", "a")
        self.proc = subprocess.Popen([self.binary, str(self.root / "orthanc.json")], stdout=log,
                                     stderr=subprocess.STDOUT, env=NODELAY_ENV)
        log.close()
        for _ in range(300):
            try:
                urllib.request.urlopen(self.base + "/system", timeout=1)
                return self
            except OSError:
                if self.proc.poll() is not None:
                    pytest.fail((self.root / "orthanc.log").read_text()[-2000:])
                time.sleep(0.1)
        pytest.fail("Orthanc did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.proc = None

    def get(self, path: str):
        with urllib.request.urlopen(self.base + path, timeout=30) as r:
            return json.loads(r.read())

    def post(self, path: str, body) -> dict:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method="POST")
        with urllib.request.urlopen(request, timeout=300) as r:
            raw = r.read()
            return json.loads(raw) if raw else {}

    def upload(self, path: Path) -> dict:
        return self.post("/instances", Path(path).read_bytes())

    def instances_of_study(self, study_uid: str) -> list[dict]:
        """[{SOPInstanceUID, Modality, SOPClassUID}] of every instance in the study (empty if unknown)."""
        found = self.post("/tools/lookup", study_uid.encode())
        out = []
        for hit in found:
            if hit["Type"] != "Study":
                continue
            for series_id in self.get(f"/studies/{hit['ID']}")["Series"]:
                series = self.get(f"/series/{series_id}")
                for instance_id in series["Instances"]:
                    tags = self.get(f"/instances/{instance_id}/simplified-tags")
                    out.append({"SOPInstanceUID": tags["SOPInstanceUID"], "Modality": tags.get("Modality"),
                                "SOPClassUID": tags.get("SOPClassUID"), "StudyInstanceUID": tags["StudyInstanceUID"]})
        return out


# Orthanc refuses unknown calling AE titles at association only when nothing is "always allowed"
STRICT_AE = {"DicomAlwaysAllowEcho": False, "DicomAlwaysAllowFind": False, "DicomAlwaysAllowMove": False,
             "DicomAlwaysAllowGet": False, "DicomAlwaysAllowStore": False}


def orthanc_fixture(tmp_path, modalities=None, dicomweb=False, **config):
    """Generator for pytest fixtures: yields a started Orthanc and stops it afterwards."""
    peer = Orthanc(tmp_path / "orthanc", modalities=modalities, dicomweb=dicomweb, **config)
    try:
        yield peer.start()
    finally:
        peer.stop()


def storescu(port: int, files, *, calling: str = "STORESCU", called: str = "LDHASSIST", extra=(), timeout=300):
    """dcmtk storescu with TCP_NODELAY=1; returns the CompletedProcess."""
    args = [dcmtk("storescu"), "-aet", calling, "-aec", called, *extra, "127.0.0.1", str(port),
            *[str(f) for f in files]]
    return subprocess.run(args, capture_output=True, text=True, env=NODELAY_ENV, timeout=timeout)


def wait_for(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def pubsub_emulator_fixture(tmp_path):
    """Generator for pytest fixtures: yields a started Pub/Sub emulator (``bench.pubsub``) and stops it."""
    from bench.pubsub import EMULATOR, PubSubEmulator

    require(str(EMULATOR))
    require("java")
    emulator = PubSubEmulator(tmp_path / "pubsub")
    try:
        emulator.start()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield emulator
    finally:
        emulator.stop()
