"""Model registry and findings contract: aliases resolve, versions are immutable, findings round-trip. The registry
runs the same tests on a local store and a gs:// store (GCS emulator, tests/storage_support.py)."""

import json

import pytest

from ai_service.config import SHIPPED_MODEL_STORE
from ai_service.errors import ModelError
from ai_service.findings import DiscFinding, Extent3D, Findings, ModelVersions
from ai_service.registry import CLS_MODEL, SEG_MODEL, AliasMoved, ModelRegistry
from pipelines.retrain.promotion import history, rollback, set_production
from tests.storage_support import race


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
        assert "not for clinical use" in ref.card["disclaimer"]
        real = ref.card["data"].get("real_exams")
        if real:  # real exams used: the card names them, cites their datasets and states the licence caveat
            assert "public real exams" in ref.card["disclaimer"]
            assert ref.card["real_data"]["citations"] and "research and internal testing only" in \
                ref.card["real_data"]["licence"]
            # and what the real exams cannot show: no herniated disc (cls), bodies-only masks (seg)
            unmeasured = "real sensitivity is unmeasured" if name == CLS_MODEL else "disc targets there are"
            assert unmeasured in ref.card["real_data"]["caveat"]
        else:
            assert "trained on synthetic phantoms only, not for clinical use" in json.dumps(ref.card)
        # trained by a command, or derived from a trained one (same weights served another way, `ldh models
        # derive`, or given a refiner, `ldh train refine`): the registry leads back to the run that trained them
        commands = lineage(reg, name, ref.card)
        assert commands[-1].startswith("ldh train") and "seed" in ref.card["data"]
        assert all(c.startswith(("ldh train", "ldh models derive")) for c in commands)
    assert 0 < reg.resolve(CLS_MODEL).card["operating_threshold"] < 1


def lineage(reg, name, card) -> list[str]:
    """The commands from a version back, through the versions it was derived from, to its weights' training."""
    commands = [card["command"]]
    while "derived_from" in card:
        source = card["derived_from"]
        commands.append(source["command"])
        card = reg.resolve(name, source["version"].split(":", 1)[1]).card
    return commands


def saved(tmp_path, version):
    """A version as a training run saves it, before it is published."""
    folder = tmp_path / "saved" / version
    folder.mkdir(parents=True)
    (folder / "model.keras").write_bytes(f"weights of {version}".encode())
    (folder / "model.onnx").write_bytes(b"onnx")
    (folder / "card.json").write_text(json.dumps({"version": version}))
    return folder


def test_publish_list_resolve_on_both_backends(location, tmp_path):
    reg = ModelRegistry(location, cache=tmp_path / "cache")
    ref = reg.publish("m", "v1", saved(tmp_path, "v1"))
    assert reg.versions("m") == ["v1"] and ref.card == {"version": "v1"}
    assert ref.model_file.read_bytes() == b"weights of v1" and (ref.path / "model.onnx").read_bytes() == b"onnx"
    with pytest.raises(FileExistsError, match="immutable"):
        reg.publish("m", "v1", saved(tmp_path, "v1-again"))
    assert reg.resolve("m", "v1").model_file.read_bytes() == b"weights of v1"
    reg.storage.write_bytes("m/v2/model.keras", b"half")  # a publish that died before its card
    assert reg.versions("m") == ["v1"]
    with pytest.raises(ModelError, match="m:v2 not found .*versions: v1"):
        reg.resolve("m", "v2")
    with pytest.raises(ModelError):
        reg.set_alias("m", "production", "v2")


def test_two_publishers_of_one_version_cannot_mix_their_files(location, tmp_path):
    folders = [saved(tmp_path / str(i), "v1") for i in range(4)]
    outcomes = race(lambda i: _publish(ModelRegistry(location, cache=tmp_path / f"cache{i}"), folders[i]), 4)
    winner = [i for i, ok in enumerate(outcomes) if ok]
    assert len(winner) == 1
    ref = ModelRegistry(location, cache=tmp_path / "check").resolve("m", "v1")
    assert ref.model_file.read_bytes() == (folders[winner[0]] / "model.keras").read_bytes()


def _publish(reg, folder) -> bool:
    try:
        reg.publish("m", "v1", folder)
        return True
    except FileExistsError:
        return False


def test_promote_rollback_and_history_on_both_backends(location, tmp_path):
    reg = ModelRegistry(location, cache=tmp_path / "cache")
    for v in ("v1", "v2", "v3"):
        reg.publish("m", v, saved(tmp_path, v))
    set_production(reg, "m", "v1", action="promote", reason="first")
    set_production(reg, "m", "v2", action="promote", reason="gate", run_id="run-1")
    set_production(reg, "m", "v3", action="promote", reason="manual")
    assert rollback(reg, "m")["to"] == "v2" and reg.resolve("m").version == "v2"
    assert [(h["from"], h["to"], h["action"]) for h in history(reg, "m")] == [
        (None, "v1", "promote"), ("v1", "v2", "promote"), ("v2", "v3", "promote"), ("v3", "v2", "rollback")]
    with pytest.raises(AliasMoved, match="moved to v2 meanwhile"):
        reg.set_alias("m", "production", "v1", expected="v3")
    assert reg.aliases("m") == {"production": "v2"}


def test_concurrent_promotions_never_replace_the_same_version(location, tmp_path):
    reg = ModelRegistry(location, cache=tmp_path / "cache")
    for v in ("v0", "v1", "v2", "v3", "v4", "v5"):
        reg.publish("m", v, saved(tmp_path, v))
    reg.set_alias("m", "production", "v0")

    def promote(i):
        try:
            return set_production(ModelRegistry(location), "m", f"v{i + 1}", action="promote", reason="race")
        except AliasMoved:
            return None

    moves = [e for e in race(promote, 5) if e is not None]
    chain = {e["from"]: e["to"] for e in moves}
    assert moves and len(chain) == len(moves)  # no production version was replaced twice
    current = "v0"
    while current in chain:
        current = chain.pop(current)
    assert not chain and reg.aliases("m")["production"] == current  # the moves that happened, in order


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
