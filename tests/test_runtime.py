"""Model runners: a version's verified ONNX export runs on ONNX Runtime, anything doubtful falls back to TensorFlow."""

import json

import numpy as np
import pytest

from ai_service.errors import ModelError
from ai_service.registry import CLS_MODEL, ModelRegistry
from ai_service.runtime import add_onnx_export, input_shape, load_runner
from pipelines.training.card import save_model


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from ai_service.networks import build_classifier

    root = tmp_path_factory.mktemp("store")
    model = build_classifier(filters=4, blocks=1, dense=8)
    save_model(model, root, CLS_MODEL, "tiny", {"operating_threshold": 0.5}, production=True)
    return root, model


def _probe():
    return np.random.default_rng(7).random((5, *input_shape(CLS_MODEL, {})), dtype=np.float32)


def test_saved_version_carries_a_verified_onnx_export_that_serving_uses(store):
    root, model = store
    ref = ModelRegistry(root).resolve(CLS_MODEL)
    assert ref.card["onnx"]["probe_max_abs_diff"] < 1e-4
    run, runtime = load_runner(ref, threads=1)
    assert runtime == "onnxruntime"
    np.testing.assert_allclose(run(_probe()), model(_probe(), training=False).numpy(), atol=1e-4)
    run_tf, runtime_tf = load_runner(ref, threads=1, onnx=False)
    assert runtime_tf == "xla"
    np.testing.assert_allclose(run_tf(_probe()), run(_probe()), atol=1e-4)


def test_an_onnx_file_that_does_not_match_its_card_is_not_used(tmp_path):
    from ai_service.networks import build_classifier

    save_model(build_classifier(filters=4, blocks=1, dense=8), tmp_path, CLS_MODEL, "v", {}, production=False)
    ref = ModelRegistry(tmp_path).resolve(CLS_MODEL, "v")
    (ref.path / "model.onnx").write_bytes((ref.path / "model.onnx").read_bytes() + b"tampered")
    assert load_runner(ref, threads=1)[1] == "xla"


def test_export_can_be_added_once_to_a_version_saved_without_one(store, tmp_path):
    root, _ = store
    ref = ModelRegistry(root).resolve(CLS_MODEL)
    with pytest.raises(ModelError, match="already has an ONNX export"):
        add_onnx_export(ref)
    # a version as older code saved it: no model.onnx, no "onnx" in the card
    old = tmp_path / CLS_MODEL / "old"
    old.mkdir(parents=True)
    (old / "model.keras").write_bytes((ref.path / "model.keras").read_bytes())
    card = {k: v for k, v in ref.card.items() if k != "onnx"} | {"version": "old"}
    (old / "card.json").write_text(json.dumps(card))
    old_ref = ModelRegistry(tmp_path).resolve(CLS_MODEL, "old")
    assert load_runner(old_ref, threads=1)[1] == "xla"
    entry = add_onnx_export(old_ref)
    again = ModelRegistry(tmp_path).resolve(CLS_MODEL, "old")
    assert again.card["onnx"] == entry and {k: v for k, v in again.card.items() if k != "onnx"} == card
    assert load_runner(again, threads=1)[1] == "onnxruntime"


def test_a_failed_save_leaves_no_version_behind(tmp_path):
    from ai_service.networks import build_classifier

    with pytest.raises(ModelError, match="unknown model name"):
        save_model(build_classifier(filters=4, blocks=1, dense=8), tmp_path, "no-such-model", "v1", {},
                   production=False)
    assert not any((tmp_path / "no-such-model").iterdir())


def test_a_segmentation_version_is_served_on_the_canvas_its_card_records(tmp_path):
    """The canvas side is a property of the version: export, runner and disc location all follow the card, so a
    rollback to a version trained on another canvas keeps its own (cards without one: 256)."""
    from ai_service.engine import compiled_segmenter, locate_discs
    from ai_service.networks import build_unet
    from ai_service.registry import SEG_MODEL

    assert input_shape(SEG_MODEL, {}) == (256, 256, 3)
    model = build_unet(base_filters=2)
    save_model(model, tmp_path, SEG_MODEL, "c96", {"architecture": {"canvas": 96}}, production=False)
    ref = ModelRegistry(tmp_path).resolve(SEG_MODEL, "c96")
    run, runtime = load_runner(ref, threads=1)
    assert runtime == "onnxruntime"
    with pytest.raises(Exception, match="invalid dimensions"):
        run(np.zeros((1, 256, 256, 3), np.float32))  # the export's signature is the recorded canvas
    seen = []
    graph, serving = compiled_segmenter(model, ref.card)
    assert serving.canvas == 96

    def spy(x):
        seen.append(x.shape)
        return run(x)

    norm = np.random.default_rng(3).random((4, 120, 90), dtype=np.float32)
    located = locate_discs(spy, norm, (4.0, 0.8, 0.8), serving=serving)
    assert seen == [(4, 96, 96, 3)] and located.label_map.shape == norm.shape
    np.testing.assert_allclose(graph(np.zeros((2, 96, 96, 3), np.float32)), run(np.zeros((2, 96, 96, 3), np.float32)),
                               atol=1e-4)


def test_ldh_models_derive_serves_the_same_weights_on_another_canvas_with_smoothing(tmp_path, monkeypatch, capsys):
    """A serving change is a new registry version: same weights, its own canvas export and smoothing, the source's
    training record kept aside; the engine's disc location then follows the new card."""
    from ai_service.cli import main
    from ai_service.engine import compiled_segmenter
    from ai_service.networks import build_unet
    from ai_service.registry import SEG_MODEL
    from ai_service.runtime import SegServing, load_keras

    model = build_unet(base_filters=2)
    save_model(model, tmp_path, SEG_MODEL, "src", {"metrics": {"validation_canvas": {"dice_disc": 0.5}}},
               production=True)
    monkeypatch.setenv("LDH_MODEL_STORE", str(tmp_path))
    assert main(["models", "derive", "production", "served", "--canvas", "96", "--slice-weight", "0.15",
                 "--sigma-px", "0.7", "--min-field-mm", "340"]) == 0
    registry = ModelRegistry(tmp_path)
    ref = registry.resolve(SEG_MODEL, "served")
    assert registry.version_of(SEG_MODEL) == "src"  # not promoted unless asked
    assert SegServing.of(ref.card) == SegServing(96, 0.15, 0.7, 340.0)
    assert ref.card["derived_from"]["version"] == f"{SEG_MODEL}:src" and ref.card["metrics"] == {}
    assert ref.card["derived_from"]["metrics"] == {"validation_canvas": {"dice_disc": 0.5}}
    for a, b in zip(load_keras(ref).get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    run, runtime = load_runner(ref, threads=1)
    assert runtime == "onnxruntime" and run(np.zeros((1, 96, 96, 3), np.float32)).shape == (1, 96, 96, 4)
    assert compiled_segmenter(model, ref.card)[1] == SegServing(96, 0.15, 0.7, 340.0)
    assert SegServing.of(registry.resolve(SEG_MODEL, "src").card) == SegServing(256, 0.0, 0.0, 0.0)

    with pytest.raises(SystemExit):
        main(["models", "derive", "src", "bad", "--slice-weight", "0.5"])
    assert "share must be in [0, 1/3)" in capsys.readouterr().err
    assert main(["models", "derive", "src", "served"]) == 2  # versions are immutable
    assert "already exists" in capsys.readouterr().err


def _wrong(kind: str):
    """A real export that is wrong the way a converter can be: an extra leading axis (the broadcast difference is
    zero), a half-precision output, or the free rectangle size fixed at the first probe's."""
    import keras

    from ai_service.networks import build_refiner

    refiner = build_refiner()
    if kind == "extra axis":
        return refiner, keras.Model(refiner.input, keras.layers.Lambda(lambda t: t[None])(refiner.output)), None
    if kind == "float16":
        return refiner, keras.Model(refiner.input, keras.layers.Lambda(lambda t: keras.ops.cast(t, "float16"))(
            refiner.output)), None
    return refiner, refiner, [40, 40, refiner.input.shape[-1]]


@pytest.mark.parametrize("kind, message", [
    ("extra axis", r"gives float32\[1, 4, 40, 40, 1\] where Keras gives float32\[4, 40, 40, 1\] for input \[4, 40, 40, "),
    ("float16", r"gives float16\[4, 40, 40, 1\] where Keras gives float32\[4, 40, 40, 1\]"),
    ("fixed size", r"fails on input \[1, 23, 57, "),
])
def test_an_export_that_differs_in_shape_dtype_or_size_is_refused(tmp_path, monkeypatch, kind, message):
    import tensorflow as tf
    import tf2onnx

    from ai_service.runtime import REFINER_SHAPE, export_onnx

    refiner, exported, fixed = _wrong(kind)
    convert = tf2onnx.convert.from_keras

    def wrong_export(model, input_signature, opset, optimizers):
        if fixed:
            input_signature = (tf.TensorSpec([None, *fixed], tf.float32, name="x"),)
        return convert(exported, input_signature=input_signature, opset=opset, optimizers=optimizers)

    monkeypatch.setattr(tf2onnx.convert, "from_keras", wrong_export)
    with pytest.raises(ModelError, match=message):
        export_onnx(refiner, tmp_path, REFINER_SHAPE, file="refiner.onnx")
    assert not (tmp_path / "refiner.onnx").exists()  # nothing half-verified is left to ship


def test_a_free_size_export_is_checked_on_two_rectangles_and_two_batch_sizes(tmp_path):
    from ai_service.networks import build_refiner
    from ai_service.runtime import REFINER_SHAPE, export_onnx

    entry = export_onnx(build_refiner(), tmp_path, REFINER_SHAPE, file="refiner.onnx")
    features = REFINER_SHAPE[-1]
    assert entry["probe_inputs"] == [[4, 40, 40, features], [1, 23, 57, features]]
    assert entry["probe_max_abs_diff"] < 1e-4
