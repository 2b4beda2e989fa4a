"""De-identification of exported datasets (DICOM PS3.15 basic profile, as far as an export of pixels goes).

Exported crops are bare pixel arrays (``.npy``: no DICOM header); file names and ``labels.csv`` carry only a
pseudonymous patient key = HMAC-SHA256(secret, PatientID) (the study UID when a series has no PatientID), so the
same patient always gets the same key (patient-level splits across versions) and nobody without the secret can
link a key back. The secret is created once where the data lives and read by every run (on Vertex every run is a
fresh machine: a key per machine would re-split patients). :func:`scan_for_identifiers` is run on every export
before its manifest is written.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from ai_service.storage import Storage

KEY = "pipelines/deid.key"

# attributes of the PS3.15 basic profile whose values must never appear in an exported file or file name
IDENTIFYING_KEYWORDS = (
    "PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "InstitutionName", "InstitutionAddress",
    "ReferringPhysicianName", "OtherPatientIDs", "PatientAddress", "StudyID", "StudyInstanceUID",
    "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID", "OperatorsName", "PerformingPhysicianName",
    "StationName", "DeviceSerialNumber",
)


class DeidError(RuntimeError):
    """An export would contain an identifier."""


def deid_key(storage: Storage, configured: str | None = None, secret: str | None = None) -> bytes:
    """The secret of the keyed hash: LDH_PIPELINE_DEID_KEY, else the Secret Manager secret version ``secret`` (how a
    Vertex step gets the key Cloud Run has as LDH_PIPELINE_DEID_KEY), else a random one in the data storage
    (``pipelines/deid.key``), created with write-if-absent so concurrent first runs still agree on one key.
    Surrounding whitespace is not part of the key (``echo KEY | gcloud secrets versions add`` stores a newline)."""
    configured = configured or os.environ.get("LDH_PIPELINE_DEID_KEY")
    if configured:
        return configured.strip().encode()
    if secret:
        return secret_payload(secret).strip()
    storage.write_if_absent(KEY, secrets.token_hex(32).encode())
    return storage.read_bytes(KEY).strip()


def secret_payload(name: str) -> bytes:
    """The data of Secret Manager secret version ``projects/P/secrets/S/versions/V`` through its REST API
    (``:access``), as the Application Default Credentials (on Vertex: the run's service account), checked against
    its CRC32C. ``SECRET_MANAGER_EMULATOR_HOST`` (host:port: plain HTTP, no credentials) points it at a local
    server, as ``STORAGE_EMULATOR_HOST`` does for GCS. A secret that cannot be read is an error, never a reason to
    fall back to another key (that would re-split every patient)."""
    import base64

    import google_crc32c
    import requests

    emulator = os.environ.get("SECRET_MANAGER_EMULATOR_HOST")
    url = f"{f'http://{emulator}' if emulator else 'https://secretmanager.googleapis.com'}/v1/{name}:access"
    if emulator:
        session = requests.Session()
    else:
        import google.auth
        from google.auth.transport.requests import AuthorizedSession

        session = AuthorizedSession(google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])[0])
    with session:
        response = session.get(url, timeout=30)
    if response.status_code != 200:
        raise DeidError(f"de-identification key: Secret Manager answered {response.status_code} for {name}: "
                        f"{response.text[:300]}")
    payload = response.json().get("payload", {})
    data = base64.b64decode(payload.get("data", ""))
    if "dataCrc32c" in payload and int(payload["dataCrc32c"]) != google_crc32c.value(data):
        raise DeidError(f"de-identification key: {name} arrived corrupted (CRC32C mismatch)")
    if not data.strip():
        raise DeidError(f"de-identification key: {name} is empty")
    return data


def patient_key(key: bytes, patient_id: str) -> str:
    return "p" + hmac.new(key, patient_id.encode(), hashlib.sha256).hexdigest()[:16]


def split_of(patient: str, holdout: float, val: float) -> str:
    """``test`` / ``val`` / ``train`` from the key alone, so a patient keeps its split in every dataset version."""
    u = int(hashlib.sha256(patient.encode()).hexdigest()[:12], 16) / float(16**12)
    return "test" if u < holdout else "val" if u < holdout + val else "train"


def identifiers_of(path: Path) -> dict[str, str]:
    """The identifying values in one DICOM file's header (empty values left out)."""
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    out = {}
    for kw in IDENTIFYING_KEYWORDS:
        value = ds.get(kw)
        text = str(value).strip() if value is not None else ""
        if len(text) >= 3:  # shorter values (e.g. "1") would match anywhere
            out[kw] = text
    return out


def scan_for_identifiers(folder: Path, identifiers: Iterable[str]) -> list[str]:
    """Every ``file: value`` where an identifier occurs in a file's name or bytes (text or UTF-16 or ^-free)."""
    needles = set()
    for value in identifiers:
        for variant in (value, value.replace("^", " "), value.replace("^", ", ")):
            if len(variant.strip()) >= 3:
                needles.add(variant.strip())
    hits = []
    for path in sorted(Path(folder).rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        for needle in needles:
            if needle in path.name or needle.encode() in data or needle.encode("utf-16-le") in data:
                hits.append(f"{path.relative_to(folder)}: {needle}")
    return hits
