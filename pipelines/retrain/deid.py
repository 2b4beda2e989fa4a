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


def deid_key(storage: Storage, configured: str | None = None) -> bytes:
    """The secret of the keyed hash: LDH_PIPELINE_DEID_KEY, else a random one in the data storage (``pipelines/
    deid.key``), created with write-if-absent so concurrent first runs still agree on one key."""
    configured = configured or os.environ.get("LDH_PIPELINE_DEID_KEY")
    if configured:
        return configured.encode()
    storage.write_if_absent(KEY, secrets.token_hex(32).encode())
    return storage.read_bytes(KEY).strip()


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
