"""Helpers of the retraining tests: a data dir with a writable model store, phantom studies sent through the API
and reviewed by the simulated radiologist (pipelines.retrain.simulate)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from ai_service.config import SHIPPED_MODEL_STORE
from pipelines.retrain.deid import patient_key, split_of
from tests.api_support import R, dicom_zip

DEID_KEY = "test-deid-key"


def writable_store(root: Path) -> Path:
    """A copy of the production versions of the shipped store (what a retraining deployment starts from)."""
    store = root / "models"
    for name in ("disc-seg", "herniation-cls"):
        (store / name).mkdir(parents=True)
        shutil.copy(SHIPPED_MODEL_STORE / name / "aliases.json", store / name / "aliases.json")
        import json

        version = json.loads((SHIPPED_MODEL_STORE / name / "aliases.json").read_text())["production"]
        shutil.copytree(SHIPPED_MODEL_STORE / name / version, store / name / version)
    return store


def seeds_for_splits(wanted: dict[str, int], start: int = 880_000, holdout: float = 0.25, val: float = 0.15
                     ) -> list[int]:
    """Phantom seeds whose patients (PatientID PH<seed>) fall ``wanted`` times in each split under DEID_KEY."""
    out, left = [], dict(wanted)
    seed = start
    while any(left.values()):
        split = split_of(patient_key(DEID_KEY.encode(), f"PH{seed:010d}"), holdout, val)
        if left.get(split):
            left[split] -= 1
            out.append(seed)
        seed += 1
    return out


def review_phantoms(client, seeds: list[int], *, profile: str = "default", flip: float = 0.0, rng_seed: int = 0,
                    rate: float = 0.5) -> list:
    """Upload each phantom's DICOM series through the API, then post the simulated radiologist's corrections."""
    from pipelines.phantom import generate_case, write_case
    from pipelines.retrain.simulate import corrections_from_truth

    rng = np.random.default_rng(rng_seed)
    cases = []
    with tempfile.TemporaryDirectory(prefix="ldh-retrain-phantoms-") as tmp:
        for seed in seeds:
            case = generate_case(seed, herniation_rate=rate, profile=profile)
            folder = write_case(case, Path(tmp) / str(seed), formats=("dicom",))
            r = client.post("/api/studies?wait=120&filename=series.zip",
                            headers={**R, "Content-Type": "application/zip"}, content=dicom_zip(folder / "dicom"))
            assert r.status_code in (200, 201), r.text
            study = case.truth["study_instance_uid"]
            findings = client.get(f"/api/studies/{study}/findings", headers=R).json()
            r = client.post(f"/api/studies/{study}/feedback", headers=R, json={
                "action": "corrections", "corrections": corrections_from_truth(findings, case, flip, rng)})
            assert r.status_code in (200, 201), r.text
            cases.append(case)
    return cases
