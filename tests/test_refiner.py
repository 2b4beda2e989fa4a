"""The input-grid disc refiner: neutral until trained, trained and shipped inside a new segmentation version."""

import json
import shutil

import numpy as np
import pytest

from ai_service import preprocess as P
from ai_service.registry import SEG_MODEL, ModelRegistry
from ai_service.runtime import REFINER_SHAPE, compiled_graph, load_refiner, load_runner


def test_the_refiner_features_margin_is_positive_exactly_where_the_unet_calls_disc():
    rng = np.random.default_rng(4)
    probs = rng.dirichlet(np.ones(len(P.SEG_CLASSES)) * 0.5, size=(3, 20, 30)).astype(np.float32)
    image = rng.random((3, 20, 30), dtype=np.float32)
    feats = P.refine_features(image, probs)
    assert feats.shape == (3, 20, 30, P.REFINE_FEATURES) and feats.dtype == np.float32
    np.testing.assert_array_equal(feats[..., 0], image)
    np.testing.assert_array_equal(feats[..., 1:4], probs[..., 1:])
    np.testing.assert_array_equal(feats[..., -1] > 0, np.argmax(probs, axis=-1) == 1)


@pytest.fixture(scope="module")
def phantom():
    from pipelines.training.data import canonical_case
    from pipelines.phantom import generate_case

    return canonical_case(generate_case(2024))


def test_an_untrained_refiner_decides_exactly_as_the_unet(phantom):
    """Its logit is the U-Net's arg-max margin plus a residual that starts at zero: a version with a fresh refiner
    serves the same discs as without one, so training only has improvements to learn."""
    from ai_service.config import Settings
    from ai_service.engine import locate_discs
    from ai_service.networks import build_refiner
    from ai_service.runtime import SegServing

    ref = ModelRegistry(Settings().model_store).resolve(SEG_MODEL)
    seg_fn, serving = load_runner(ref, threads=1)[0], SegServing.of(ref.card)
    plain = locate_discs(seg_fn, phantom.norm, phantom.spacing, serving=serving)
    refined = locate_discs(seg_fn, phantom.norm, phantom.spacing, serving=serving,
                           refine=compiled_graph(build_refiner(), REFINER_SHAPE))
    assert [d.level for d in plain.discs] == ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]
    np.testing.assert_array_equal(refined.label_map, plain.label_map)


def test_ldh_train_refine_ships_the_unet_with_its_refiner_as_a_new_version(tmp_path, monkeypatch, capsys):
    """`ldh train refine` writes a new segmentation version: the source's U-Net and serving, plus refiner.keras and
    its verified ONNX export (any rectangle size); the engine loads it; a derived version drops it; a version that
    already has one is refused; --production promotes only a refiner that improved validation Dice."""
    from ai_service.cli import main
    from ai_service.config import Settings
    from ai_service.runtime import SegServing, load_keras

    shipped = ModelRegistry(Settings().model_store).resolve(SEG_MODEL)
    shutil.copytree(shipped.path, tmp_path / SEG_MODEL / "src")
    if "refiner" in shipped.card:  # the shipped U-Net as its source served it, without the production refiner
        (tmp_path / SEG_MODEL / "src" / "card.json").write_text(
            json.dumps({k: v for k, v in shipped.card.items() if k != "refiner"}))
    ModelRegistry(tmp_path).set_alias(SEG_MODEL, "production", "src")
    assert main(["train", "refine", "--seg-model", "src", "--count", "2", "--val-count", "1", "--epochs", "1",
                 "--store", str(tmp_path), "--version", "refined", "--workers", "1", "--production"]) == 0
    registry = ModelRegistry(tmp_path)
    src, ref = registry.resolve(SEG_MODEL, "src"), registry.resolve(SEG_MODEL, "refined")
    assert load_refiner(src, threads=1) is None
    card = ref.card["refiner"]
    assert (ref.path / card["file"]).exists() and card["onnx"]["probe_max_abs_diff"] < 1e-4
    assert ref.card["derived_from"]["version"] == f"{SEG_MODEL}:src"
    assert SegServing.of(ref.card) == SegServing.of(src.card)
    for a, b in zip(load_keras(ref).get_weights(), load_keras(src).get_weights()):
        np.testing.assert_array_equal(a, b)
    dice = ref.card["metrics"]["validation_input_grid"]
    assert 0.5 < dice["disc_dice_unet"] <= 1 and 0.5 < dice["disc_dice_refined"] <= 1
    assert registry.version_of(SEG_MODEL) == ("refined" if dice["disc_dice_refined"] > dice["disc_dice_unet"]
                                              else "src")

    probe = np.random.default_rng(1).random((2, 37, 53, P.REFINE_FEATURES), dtype=np.float32)
    (onnx_run, onnx_name), (tf_run, tf_name) = load_refiner(ref, threads=1), load_refiner(ref, threads=1, onnx=False)
    assert (onnx_name, tf_name) == ("onnxruntime", "tensorflow") and onnx_run(probe).shape == (2, 37, 53, 1)
    np.testing.assert_allclose(onnx_run(probe), tf_run(probe), atol=1e-4)

    monkeypatch.setenv("LDH_MODEL_STORE", str(tmp_path))
    assert main(["models", "derive", "refined", "rederived", "--canvas", "256"]) == 0
    assert load_refiner(ModelRegistry(tmp_path).resolve(SEG_MODEL, "rederived"), threads=1) is None
    served = SegServing.of(ref.card)  # only a second read added: the first read is the refiner's, so it stays
    assert main(["models", "derive", "refined", "retried", "--canvas", str(served.canvas), "--slice-weight",
                 str(served.slice_weight), "--sigma-px", str(served.sigma_px), "--retry-field-mm", "340"]) == 0
    retried = ModelRegistry(tmp_path).resolve(SEG_MODEL, "retried")
    assert SegServing.of(retried.card).retry() == SegServing(served.canvas, served.slice_weight, served.sigma_px, 340.0)
    np.testing.assert_allclose(load_refiner(retried, threads=1)[0](probe), onnx_run(probe), atol=1e-6)
    capsys.readouterr()
    assert main(["train", "refine", "--seg-model", "refined", "--count", "1", "--store", str(tmp_path)]) == 2
    assert "already has a refiner" in capsys.readouterr().err


def test_the_refiner_runs_on_each_discs_box_and_decides_as_on_the_whole_rectangle(phantom):
    """The engine refines each named disc's box grown by the refiner's reach, not the whole rectangle with the
    vertebral bodies between the discs; every voxel a disc can take must still get the decision the whole
    rectangle gives it. The stand-in refiner sums the image over the 9x9 neighbourhood a depth-4 refiner reads
    (zeros outside its input, like the network's padding), so a box cut too tight changes decisions."""
    import cv2

    from ai_service.config import Settings
    from ai_service.engine import _GROW, canvas_probabilities, locate_discs, named_region
    from ai_service.runtime import SegServing

    ref = ModelRegistry(Settings().model_store).resolve(SEG_MODEL)
    seg_fn, serving = load_runner(ref, threads=1)[0], SegServing.of(ref.card)
    probs, affine = canvas_probabilities(seg_fn, phantom.norm, phantom.spacing, serving)
    named, ((r0, r1, c0, c1), mapped) = named_region(probs, affine, phantom.norm.shape, phantom.spacing)
    grown = np.stack([cv2.dilate(sl, _GROW) for sl in named.label_map])
    names = P.labels_to_grid(grown, affine, *phantom.norm.shape[1:], (r0, r1, c0, c1))
    side = 2 * P.REFINER_DEPTH + 1

    def sums(x):
        return np.stack([cv2.boxFilter(sl[..., 0], -1, (side, side), normalize=False,
                                       borderType=cv2.BORDER_CONSTANT) for sl in x])[..., None]

    whole = sums(P.refine_features(phantom.norm[:, r0:r1, c0:c1], mapped))
    cut = np.median(whole[names > 0])  # half the named voxels either way
    shapes = []

    def refine(x):
        shapes.append(x.shape)
        return sums(x) - cut

    located = locate_discs(seg_fn, phantom.norm, phantom.spacing, serving=serving, refine=refine)
    assert 0.3 < (located.label_map > 0).sum() / (names > 0).sum() < 0.7
    np.testing.assert_array_equal(located.label_map[:, r0:r1, c0:c1], np.where(whole[..., 0] > cut, names, 0))
    assert len(shapes) == 5 and sum(np.prod(s[:3]) for s in shapes) < names.size
