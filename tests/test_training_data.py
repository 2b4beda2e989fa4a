"""Training-sample generation: profile changes reach the phantom workers and the cache key."""

from pipelines.training import data as D


def test_profile_changes_reach_the_generated_phantoms():
    def contrast(changes):
        case = D._make((5, 0, 0.35, "default", changes, "cls", 256))
        return case.truth["random_contrast"]

    assert contrast({"random_contrast_prob": 1.0}) is True
    assert contrast({"random_contrast_prob": 0.0}) is False


def test_profile_changes_are_an_order_free_part_of_the_cache_key():
    assert D._changes_key({}) == D._changes_key({"profile_changes": {}}) == ()
    assert D._changes_key({"profile_changes": {"random_contrast_prob": 0.5, "snr": (4, 9)}}) == \
        D._changes_key({"profile_changes": {"snr": (4, 9), "random_contrast_prob": 0.5}}) == \
        (("random_contrast_prob", 0.5), ("snr", (4, 9)))


def test_training_windows_crop_the_canvas_and_the_canvas_side_keeps_it_whole():
    import numpy as np

    from pipelines.training.seg import _dataset

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    y = rng.integers(0, 256, (4, 64, 64, 4), dtype=np.uint8)
    windows = next(iter(_dataset(x, y, 4, True, seed=1, window=32)))
    assert windows[0].shape == (4, 32, 32, 3) and windows[1].shape == (4, 32, 32, 4)
    whole_x, whole_y = (t.numpy() for t in next(iter(_dataset(x, y, 4, True, seed=1, window=64))))
    # shuffled, so match samples by content: every canvas comes back entire, scaled to 0..1
    order = [int(np.argmin(np.abs(x / 255.0 - s).sum(axis=(1, 2, 3)))) for s in whole_x]
    assert sorted(order) == [0, 1, 2, 3]
    np.testing.assert_allclose(whole_x, x[order] / 255.0, atol=1e-6)
    np.testing.assert_allclose(whole_y, y[order] / 255.0, atol=1e-6)


def test_cosine_schedule_runs_every_epoch_decays_to_one_percent_and_checkpoints_each(tmp_path):
    import numpy as np

    from pipelines.training.seg import train_seg

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)
    classes = rng.integers(0, 4, (6, 64, 64))
    y = ((classes[..., None] == np.arange(4)) * 255).astype(np.uint8)
    model, history = train_seg(x, y, x[:2], y[:2], epochs=3, batch=2, base_filters=2, lr=1e-3, seed=0, verbose=0,
                               window=32, schedule="cosine", checkpoints=tmp_path / "ckpt")
    assert len(history["loss"]) == 3  # no early stop
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "epoch-001.keras", "epoch-002.keras", "epoch-003.keras"]
    assert float(model.optimizer.iterations) == 9
    assert np.isclose(float(model.optimizer.learning_rate), 1e-5, rtol=1e-3)  # 1 % of lr after the last step



def test_classifier_samples_are_cached_per_served_segmentation_not_per_weights_file(tmp_path):
    """Versions derived from one another share the U-Net weights but are served differently (canvas, smoothing, a
    refiner), so each predicts other masks: their cached classifier samples must not be shared."""
    import json
    import shutil

    from ai_service.config import Settings
    from ai_service.registry import SEG_MODEL, ModelRegistry

    source = ModelRegistry(Settings().model_store).resolve(SEG_MODEL, "seg-v6")
    served = {"a": {}, "b": {"architecture": {"canvas": 256}}, "c": {"postprocess": {"sigma_px": 0.0}},
              "d": {"refiner": {"file": "refiner.keras"}}}
    for version, change in served.items():
        shutil.copytree(source.path, tmp_path / SEG_MODEL / version)
        (tmp_path / SEG_MODEL / version / "card.json").write_text(json.dumps(source.card | change))
    refs = [ModelRegistry(tmp_path).resolve(SEG_MODEL, v) for v in served]
    assert len({D.serving_digest(r) for r in refs}) == 4
    assert D.serving_digest(refs[0]) == D.serving_digest(source)
