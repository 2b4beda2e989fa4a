"""PHI: a study with realistic identifiers goes through the service (upload, worker, results, review) and the
retraining pipeline's dataset export; no log line and no exported file may carry its identifiers, and no log line
a secret (API token, de-identification key). The SR sent back to the PACS must carry them: it proves the scan finds
what it looks for."""

from __future__ import annotations

import hmac
import io
import logging

import numpy as np
import pydicom
import pytest

from ai_service.api.auth import Authenticator
from ai_service.logs import JsonFormatter, TextFormatter
from ai_service.storage import storage_for
from pipelines.retrain.config import RetrainConfig
from pipelines.retrain.deid import identifiers_of, scan_for_identifiers
from tests.api_support import KEYS, R, REVIEWER, VIEWER, client_for, dicom_zip, settings_for

# what a real hospital header holds (PS3.15 basic-profile attributes), none of it in the phantom generator
IDENTIFIERS = {
    "PatientName": "Kowalczyk^Agnieszka^Maria", "PatientID": "MRN20948177", "OtherPatientIDs": "NHS4857773915",
    "PatientBirthDate": "19610314", "AccessionNumber": "ACC7731920", "InstitutionName": "St Brigid General Hospital",
    "InstitutionAddress": "14 Harbour Road, Galway", "ReferringPhysicianName": "Okafor^Chidinma",
    "OperatorsName": "Lindqvist^Tove", "StationName": "MRI-EAST-3", "StudyID": "LS20261207",
}
DEID_SECRET = "deid-secret-9d41c7e2b8"
WRONG_TOKEN = "stolen-token-5b8e2d17"


@pytest.fixture
def study(tmp_path):
    """A phantom lumbar series re-labelled with IDENTIFIERS; the folder of its DICOM files."""
    from pipelines.phantom import generate_case, write_case

    case = generate_case(881_207, herniation_rate=0.5)
    folder = write_case(case, tmp_path / "case", formats=("dicom",)) / "dicom"
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        for keyword, value in IDENTIFIERS.items():
            setattr(ds, keyword, value)
        ds.save_as(path)
    return case, folder


@pytest.fixture
def log_lines():
    """Every log record of the run at DEBUG, formatted both ways the service can write them."""
    text, js = io.StringIO(), io.StringIO()
    handlers = [logging.StreamHandler(text), logging.StreamHandler(js)]
    handlers[0].setFormatter(TextFormatter())
    handlers[1].setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.DEBUG)
    for h in handlers:
        root.addHandler(h)
    yield lambda: text.getvalue() + js.getvalue()
    for h in handlers:
        root.removeHandler(h)
    root.setLevel(level)


def test_no_identifier_or_secret_leaves_through_logs_or_the_dataset_export(study, log_lines, tmp_path, monkeypatch,
                                                                            capfd):
    from pipelines.retrain import steps
    from pipelines.retrain.simulate import corrections_from_truth

    case, folder = study
    source = identifiers_of(next(folder.iterdir()))
    assert set(IDENTIFIERS) <= set(source)  # the header really carries them
    monkeypatch.setenv("LDH_PIPELINE_DEID_KEY", DEID_SECRET)
    settings = settings_for(tmp_path / "data", log_level="DEBUG", pipeline_hot_reload_s=0)
    with client_for(settings) as client:
        assert client.get("/api/models", headers={"Authorization": f"Bearer {WRONG_TOKEN}"}).status_code == 401
        r = client.post("/api/studies?wait=120&filename=series.zip", headers={**R, "Content-Type": "application/zip"},
                        content=dicom_zip(folder))
        assert r.status_code in (200, 201), r.text
        uid = case.truth["study_instance_uid"]
        findings = client.get(f"/api/studies/{uid}/findings", headers=R).json()
        r = client.post(f"/api/studies/{uid}/feedback", headers=R, json={
            "action": "corrections", "corrections": corrections_from_truth(findings, case, 0.0,
                                                                           np.random.default_rng(0))})
        assert r.status_code in (200, 201), r.text
    version = steps.build_dataset(RetrainConfig.from_settings(settings, min_new_records=1).model_dump_json())

    storage = storage_for(settings.data_dir)
    exported = tmp_path / "exported"
    keys = storage.list(f"datasets/{version}")
    assert any(k.endswith(".npy") for k in keys) and any(k.endswith("labels.csv") for k in keys)
    for key in keys:  # read back from the data store, as the training step will
        (exported / key).parent.mkdir(parents=True, exist_ok=True)
        (exported / key).write_bytes(storage.read_bytes(key))
    assert scan_for_identifiers(exported, source.values()) == []

    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "service.log").write_text(log_lines() + "".join(capfd.readouterr()), encoding="utf-8")
    scanned = (logs / "service.log").read_text()
    assert source["StudyInstanceUID"] in scanned and "dataset" in scanned  # the service's and the pipeline's lines
    # UIDs are what logs are meant to carry; every other identifier, and every secret, must be absent
    people = [v for k, v in source.items() if not k.endswith("UID")]
    secrets = [REVIEWER[0], VIEWER[0], WRONG_TOKEN, DEID_SECRET]
    assert scan_for_identifiers(logs, people + secrets) == []

    # the SR back to the PACS is clinical, not de-identified: the same scan finds the patient there
    sr = [p for p in (settings.data_dir / "results").rglob("*.dcm") if pydicom.dcmread(p).Modality == "SR"]
    assert sr and scan_for_identifiers(sr[0].parent, [IDENTIFIERS["PatientName"], IDENTIFIERS["PatientID"]])


def test_tokens_are_compared_in_constant_time(tmp_path, monkeypatch):
    """Every configured key is compared with hmac.compare_digest, whichever matches (or none): the time does not
    tell an attacker how far down the list a guess got, nor how many leading bytes were right."""
    auth = Authenticator(settings_for(tmp_path))
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    for token, login in ((REVIEWER[0], "jdoe"), (VIEWER[0], "watcher"), (WRONG_TOKEN, None)):
        calls.clear()
        who = auth.authenticate(token)
        assert (who.login if who else None) == login and len(calls) == KEYS.count(",") + 1
