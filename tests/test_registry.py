"""Model registry and findings contract: aliases resolve, versions are immutable, findings round-trip."""

import json

import pytest

from ai_service.errors import ModelError
from ai_service.findings import DiscFinding, Extent3D, Findings, ModelVersions
from ai_service.registry import CLS_MODEL, SEG_MODEL, ModelRegistry
from ai_service.config import SHIPPED_MODEL_STORE


def make_version(root, name, version):
    path = root / name / version
    path.mkdir(parents=True)
    (path / "model.keras").write_bytes(b"not really a model")
    (path / "card.json").write_text(json.dumps({"version": version}))


def test_alias_resolves_and_moves(tmp_path):
    make_version(tmp_path, "m", "v1")
    make_version(tmp_path, "m", "v2")
    reg = ModelRegistry(tmp_path)
    reg.set_alias("m", "production", "v1")
    assert reg.resolve("m").version == "v1"
    reg.set_alias("m", "production", "v2")
    assert reg.resolve("m", "production").version == "v2"
    assert reg.resolve("m", "v1").version == "v1"
    assert reg.versions("m") == ["v1", "v2"]


def test_unknown_version_names_what_exists(tmp_path):
    make_version(tmp_path, "m", "v1")
    with pytest.raises(ModelError, match="versions: v1"):
        ModelRegistry(tmp_path).resolve("m", "v9")
    with pytest.raises(ModelError):
        ModelRegistry(tmp_path).set_alias("m", "production", "v9")


def test_shipped_models_have_production_aliases_and_honest_cards():
    reg = ModelRegistry(SHIPPED_MODEL_STORE)
    for name in (SEG_MODEL, CLS_MODEL):
        ref = reg.resolve(name, "production")
        assert ref.model_file.stat().st_size < 10 * 1024 * 1024  # small enough to ship in git
        assert "trained on synthetic phantoms only, not for clinical use" in json.dumps(ref.card)
        assert ref.card["command"].startswith("ldh train") and "seed" in ref.card["data"]
    assert 0 < reg.resolve(CLS_MODEL).card["operating_threshold"] < 1


def finding(level="L4-L5", p=0.9, box=(10, 20, 30, 28)):
    return DiscFinding(level, p, p >= 0.5, 6, box, Extent3D(4, 8, (8, 18, 32, 30), 1234.5), "1.2.3.4", None)


def test_findings_json_round_trip(tmp_path):
    f = Findings(ModelVersions("seg-a", "cls-b"), 0.5, [finding(), finding("L5-S1", 0.1, (12, 40, 33, 47))],
                 (15, 512, 512), (0.6, 0.6, 4.0), "1.2", "1.2.3", "1.2.3.9", "dicom", ["w"])
    (tmp_path / "f.json").write_text(f.to_json())
    back = Findings.load(tmp_path / "f.json")
    assert back == f
    data = json.loads(f.to_json())
    assert data["models"]["version"] == "seg=seg-a;cls=cls-b" and data["schema_version"] == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"level": "L6-S1"}, "unknown disc level"),
    ({"p": 1.5}, "outside"),
    ({"box": (10, 20, 10, 30)}, "empty box"),
])
def test_findings_reject_invalid_discs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        finding(**kwargs)
