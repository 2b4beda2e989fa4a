"""Scale augmentation of the U-Net's training windows (``ldh train seg --zoom``): anatomy at other sizes than the
fill-the-canvas scale, with targets that stay soft class shares and unknown pixels that stay unknown."""

import numpy as np
import pytest


def _canvas():
    """One 64² canvas: a 16² disc (class 1) in the middle, the left quarter unknown (all-zero target)."""
    x = np.zeros((1, 64, 64, 3), np.uint8)
    y = np.zeros((1, 64, 64, 4), np.uint8)
    y[..., 0] = 255
    y[0, 24:40, 24:40] = (0, 255, 0, 0)
    x[0, 24:40, 24:40] = 200
    y[0, :, :16] = 0
    return x, y


def _windows(zoom, n=24):
    from pipelines.training.seg import _dataset

    x, y = _canvas()
    ds = _dataset(np.repeat(x, n, 0), np.repeat(y, n, 0), batch=n, train=True, seed=3, window=32, zoom=zoom)
    a, b = next(iter(ds))
    return a.numpy(), b.numpy()


def test_zoom_out_shows_the_disc_at_half_size_with_soft_targets_renormalised():
    image, target = _windows((2.0, 2.0))  # each window: the whole 64² canvas resized to 32²
    assert image.shape == (24, 32, 32, 3) and target.shape == (24, 32, 32, 4)
    sums = target.sum(-1)
    assert np.all((np.abs(sums - 1) < 1e-4) | (sums == 0))  # shares of known pixels; unknown left out
    disc = target[..., 1] > 0.5
    assert disc.sum(axis=(1, 2)) == pytest.approx(np.full(24, 8 * 8), abs=4)  # 16² canvas pixels -> 8²
    assert (sums[:, :, :8] == 0).all() and (sums[:, :, 9:] > 0).all()  # the unknown quarter is still unknown


def test_no_zoom_keeps_canvas_pixels_as_they_are():
    image, target = _windows((1.0, 1.0))
    disc = target[..., 1] > 0.5
    assert set(np.unique(target)) <= {0.0, 1.0}  # plain crops: no resampling
    assert disc.sum(axis=(1, 2)).max() <= 16 * 16
    assert (np.isclose(image, 0) | np.isclose(image, 200 / 255)).all()


def test_zoom_in_magnifies():
    _, target = _windows((0.5, 0.5))  # 16² of canvas -> 32²: each canvas pixel spans 2 x 2 window pixels
    disc = (target[..., 1] > 0.5).sum(axis=(1, 2))
    assert disc.max() > 16 * 16 and (disc % 4 == 0).all()


def test_zoom_argument_is_checked():
    import argparse

    from pipelines.training.cli import zoom_range

    assert zoom_range("0.8,1.4") == (0.8, 1.4)
    for bad in ("1.4,0.8", "0,2", "x", "1"):
        with pytest.raises(argparse.ArgumentTypeError):
            zoom_range(bad)
