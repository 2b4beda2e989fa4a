"""Input loading: geometry to the canonical orientation and back, and a clear error for each bad input."""

import cv2
import numpy as np
import pytest
import SimpleITK as sitk

from ai_service.engine import _box_to_input
from ai_service.errors import InputError
from ai_service.volume import Volume, canonical_of, load_volume

SAGITTAL = (0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0)  # columns posterior, rows inferior, slices to the right


def volume_with(direction, shape=(5, 40, 30)) -> Volume:
    array = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    return Volume(array, (0.8, 0.9, 4.0), (0.0, 0.0, 0.0), direction, "mha")


@pytest.mark.parametrize(
    "direction, flips, perm",
    [
        (SAGITTAL, (False, False, False), (0, 1, 2)),
        ((0.0, 0.0, 1.0, -1.0, 0.0, 0.0, 0.0, 1.0, 0.0), (False, True, True), (0, 1, 2)),  # head down, anterior right
        ((0.0, 0.0, -1.0, 0.0, 1.0, 0.0, -1.0, 0.0, 0.0), (False, False, False), (0, 2, 1)),  # rows/cols transposed
    ],
)
def test_canonical_round_trip(direction, flips, perm):
    vol = volume_with(direction)
    canon = canonical_of(vol)
    assert canon.flips == flips and canon.perm == perm
    back = canon.inverse(canon.forward(vol.array))
    np.testing.assert_array_equal(back, vol.array)


def test_box_maps_back_to_the_same_pixels_on_flipped_and_transposed_grids():
    for direction in (SAGITTAL, (0.0, 0.0, 1.0, -1.0, 0.0, 0.0, 0.0, 1.0, 0.0), (0.0, 0.0, -1.0, 0.0, 1.0, 0.0, -1.0, 0.0, 0.0)):
        vol = volume_with(direction)
        canon = canonical_of(vol)
        mask = np.zeros(vol.shape, bool)
        mask[2, 5:9, 11:20] = True  # input grid: rows 5..8, columns 11..19
        cmask = canon.forward(mask)
        rows = np.nonzero(cmask[2].any(axis=1))[0]
        cols = np.nonzero(cmask[2].any(axis=0))[0]
        box = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
        assert _box_to_input(canon, box, vol.shape) == (11, 5, 20, 9)


def test_axial_volume_is_refused(tmp_path):
    image = sitk.GetImageFromArray(np.zeros((20, 64, 64), np.int16))  # identity direction = axial slices
    image.SetSpacing((0.7, 0.7, 5.0))
    sitk.WriteImage(image, str(tmp_path / "axial.mha"))
    with pytest.raises(InputError, match="not a sagittal series"):
        load_volume(tmp_path / "axial.mha")


def test_mha_with_sagittal_planes_on_another_axis_is_permuted_to_slices_first(tmp_path):
    image = sitk.GetImageFromArray(np.random.default_rng(0).integers(0, 100, (30, 40, 6)).astype(np.int16))
    # columns of the direction matrix: x axis runs left-right, y axis posterior, z axis to the feet (3D isotropic)
    image.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0))
    sitk.WriteImage(image, str(tmp_path / "v.mha"))
    vol = load_volume(tmp_path / "v.mha")
    assert abs(vol.axis_directions()[0] @ np.array([1.0, 0.0, 0.0])) == 1.0  # slice axis runs left-right
    assert vol.shape[0] == 6  # the 6 sagittal planes became the slices
    canon = canonical_of(vol)
    assert canon.perm[0] == 0


def test_thick_sagittal_slices_along_the_first_file_axis_are_sagittal(tmp_path):
    """A converter's layout: array (rows, cols, slices) with 4 mm slices along x (left-right). The thick axis is
    the left-right one, so it is a sagittal series whatever the array order (was refused as axial/coronal)."""
    image = sitk.GetImageFromArray(np.random.default_rng(1).integers(0, 100, (50, 40, 9)).astype(np.int16))
    image.SetSpacing((4.0, 1.0, 1.0))
    image.SetDirection((-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0))
    sitk.WriteImage(image, str(tmp_path / "v.mha"))
    vol = load_volume(tmp_path / "v.mha")
    assert vol.shape[0] == 9 and vol.spacing[2] == 4.0
    canon = canonical_of(vol)
    assert canon.spacing == (4.0, 1.0, 1.0)


def test_thick_coronal_slices_are_refused_in_any_array_order(tmp_path):
    image = sitk.GetImageFromArray(np.zeros((50, 40, 9), np.int16))
    image.SetSpacing((1.0, 4.0, 1.0))  # y (anterior-posterior) is the thick axis: coronal slices
    image.SetDirection((-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0))
    sitk.WriteImage(image, str(tmp_path / "v.mha"))
    with pytest.raises(InputError, match="axial or coronal"):
        load_volume(tmp_path / "v.mha")


def test_empty_folder(tmp_path):
    with pytest.raises(InputError, match="empty folder"):
        load_volume(tmp_path)


def test_missing_path(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_volume(tmp_path / "nope.mha")


def test_non_image_file(tmp_path):
    (tmp_path / "notes.txt").write_text("this is not an image")
    with pytest.raises(InputError, match="not DICOM"):
        load_volume(tmp_path / "notes.txt")


def test_corrupt_mha(tmp_path):
    (tmp_path / "broken.mha").write_bytes(b"ObjectType = Image\nNDims = 3\nDimSize = 10 10 10\n"
                                          b"ElementType = MET_SHORT\nElementDataFile = LOCAL\n" + b"\x00" * 17)
    with pytest.raises(InputError, match="truncated: 17 of 2000 pixel bytes"):
        load_volume(tmp_path / "broken.mha")
    (tmp_path / "header.mha").write_bytes(b"ObjectType = Image\nNDims = 3\n")
    with pytest.raises(InputError, match="no complete MetaImage header"):
        load_volume(tmp_path / "header.mha")


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.mha").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        load_volume(tmp_path / "empty.mha")


def test_single_2d_image(tmp_path):
    cv2.imwrite(str(tmp_path / "one.png"), np.zeros((32, 32), np.uint8))
    with pytest.raises(InputError, match="single 2D image"):
        load_volume(tmp_path / "one.png")


def test_png_slices_with_mixed_sizes(tmp_path):
    cv2.imwrite(str(tmp_path / "s1.png"), np.zeros((32, 32), np.uint8))
    cv2.imwrite(str(tmp_path / "s2.png"), np.zeros((32, 40), np.uint8))
    cv2.imwrite(str(tmp_path / "s3.png"), np.zeros((32, 32), np.uint8))
    with pytest.raises(InputError, match="different sizes"):
        load_volume(tmp_path)


def test_png_slices_are_ordered_by_the_number_in_their_names(tmp_path):
    for i in (10, 2, 1):
        cv2.imwrite(str(tmp_path / f"img_{i}.png"), np.full((16, 16), i, np.uint8))
    vol = load_volume(tmp_path, pixel_spacing_mm=0.5, slice_spacing_mm=3.0)
    assert [int(s[0, 0]) for s in vol.array] == [1, 2, 10]
    assert vol.spacing == (0.5, 0.5, 3.0) and vol.kind == "images"
