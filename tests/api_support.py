"""Shared helpers of the API / web tests: one real engine and one phantom per test session, app clients."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from ai_service.config import Settings
from ai_service.registry import CLS_MODEL, SEG_MODEL, ModelRegistry

TEST_SEED = 777_005  # not a training seed
REVIEWER = ("rev-token-1", "jdoe")
VIEWER = ("view-token-1", "watcher")
KEYS = f"{REVIEWER[0]}:{REVIEWER[1]}:reviewer,{VIEWER[0]}:{VIEWER[1]}:viewer"
R = {"Authorization": f"Bearer {REVIEWER[0]}"}
V = {"X-API-Key": VIEWER[0]}

_engine = None
_case = None


def models_available() -> bool:
    registry = ModelRegistry(Settings(_env_file=None).model_store)
    try:
        registry.resolve(SEG_MODEL, "production")
        registry.resolve(CLS_MODEL, "production")
        return True
    except Exception:  # noqa: BLE001
        return False


def shared_engine():
    """The real engine with the shipped models, loaded once per test session."""
    global _engine
    if _engine is None:
        if not models_available():
            if os.environ.get("CI") == "true":
                raise RuntimeError("the shipped models are missing from ai_service/model_store")
            pytest.skip("the shipped models are not in ai_service/model_store yet")
        from ai_service.engine import InferenceEngine

        _engine = InferenceEngine(Settings(_env_file=None))
    return _engine


def phantom() -> tuple[object, Path]:
    """(case, folder with image.mha, dicom/, png/) generated once per session."""
    global _case
    if _case is None:
        from pipelines.phantom import generate_case, write_case

        case = generate_case(TEST_SEED, herniation_rate=0.5)
        folder = Path(tempfile.mkdtemp(prefix="ldh-api-phantom-"))
        _case = (case, write_case(case, folder / "case", formats=("mha", "dicom", "png")))
    return _case


def settings_for(data_dir: Path, **overrides) -> Settings:
    values = {"data_dir": data_dir, "api_keys": KEYS, "log_level": "WARNING"}
    values.update(overrides)
    return Settings(_env_file=None, **values)


@contextmanager
def client_for(settings: Settings, engine=None):
    from fastapi.testclient import TestClient

    from ai_service.api import create_app

    app = create_app(settings, engine=engine if engine is not None else shared_engine())
    with TestClient(app) as client:
        yield client


def dicom_zip(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, f"series/{path.name}")
    return buf.getvalue()


def png_files(folder: Path) -> list:
    return [("files", (p.name, p.read_bytes(), "image/png")) for p in sorted(folder.iterdir())]


def upload_mha(client, path: Path, wait: float = 120, headers=R):
    with open(path, "rb") as fh:
        return client.post(f"/api/studies?wait={wait}", headers=headers,
                           files={"files": (path.name, fh.read(), "application/octet-stream")})


def stored_files(data_dir: Path, *areas: str) -> list[str]:
    """Every file under the given storage areas (studies, results, feedback, tmp), relative to data_dir."""
    out = []
    for area in areas:
        base = Path(data_dir) / area
        if base.exists():
            out += [p.relative_to(data_dir).as_posix() for p in base.rglob("*") if p.is_file()]
    return sorted(out)


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
