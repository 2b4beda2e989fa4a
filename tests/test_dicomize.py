"""Uploads become DICOM: a converted MHA or PNG series is a valid MR Image series with the volume's geometry."""

import subprocess

import cv2
import numpy as np
import pytest

from ai_service.config import Settings
from ai_service.dicomize import save_series, volume_to_mr_series
from ai_service.volume import Volume, load_dicom_series, load_image_slices
from peers import require


def _oblique_volume() -> Volume:
    rng = np.random.default_rng(3)
    theta = np.deg2rad(12)  # sagittal, tilted about the left-right axis
    col = (0.0, np.cos(theta), -np.sin(theta))
    row = (0.0, np.sin(theta), np.cos(theta))
    direction = np.column_stack([col, row, np.cross(col, row)]).ravel()  # slices along the plane normal
    array = rng.integers(0, 3000, (6, 40, 56)).astype(np.float32)
    return Volume(array, (0.7, 0.9, 4.5), (12.5, -80.0, 40.0), tuple(direction), "mha")


@pytest.fixture
def converted(tmp_path):
    volume = _oblique_volume()
    paths = save_series(volume_to_mr_series(volume, Settings(), original_name="case.mha"), tmp_path / "series")
    return volume, paths


def test_converted_series_keeps_pixels_and_geometry(converted):
    volume, paths = converted
    back = load_dicom_series(paths)
    assert back.shape == volume.shape
    np.testing.assert_array_equal(back.array, volume.array)  # integral values are stored unchanged
    np.testing.assert_allclose(back.spacing, volume.spacing, atol=1e-5)
    np.testing.assert_allclose(back.origin, volume.origin, atol=1e-4)
    np.testing.assert_allclose(np.asarray(back.direction), np.asarray(volume.direction), atol=1e-5)
    assert len({back.study_instance_uid, back.series_instance_uid, back.frame_of_reference_uid}) == 3


def test_converted_series_passes_dciodvfy(converted, tmp_path):
    tool = require("dciodvfy")
    _, paths = converted
    for path in (paths[0], paths[-1]):
        out = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60)
        errors = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]
        assert not errors, errors


def test_png_slices_become_a_series_with_the_stated_spacing(tmp_path):
    files = []
    for k in range(4):
        path = tmp_path / f"slice_{k + 1}.png"
        cv2.imwrite(str(path), np.full((30, 20), 40 * k + 10, np.uint8))
        files.append(path)
    volume = load_image_slices(files, pixel_spacing_mm=0.6, slice_spacing_mm=3.5)
    datasets = volume_to_mr_series(volume, Settings(), original_name="slices.zip")
    assert [int(ds.InstanceNumber) for ds in datasets] == [1, 2, 3, 4]
    assert [float(v) for v in datasets[0].PixelSpacing] == [0.6, 0.6]
    assert float(datasets[0].SpacingBetweenSlices) == 3.5
    assert "stated defaults" in datasets[0].ImageComments
    assert [int(ds.pixel_array[0, 0]) for ds in datasets] == [10, 50, 90, 130]
