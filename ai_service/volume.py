"""Volume loading: DICOM series (classic or Enhanced MR), MHA/NIfTI, or a folder of JPG/PNG slices.

Everything becomes one :class:`Volume` in the *input* grid plus the permutation/flips that bring it to the one
canonical orientation the models see (slices left-right, rows head→feet, columns anterior→posterior), so outputs
can be mapped back to the exact pixels the user gave us.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset

from ai_service.errors import InputError

MIN_SLICES = 3
MAX_IMAGE_SIDE = 4096  # pixels per side of a JPG/PNG slice we decode (MR slices are <= 1024)
MAX_SLICES = 1024  # slices of one series (a lumbar series has tens; every slice becomes a DICOM instance)
MAX_VOLUME_VOXELS = 1 << 26  # voxels of an MHA/NIfTI volume read (512x512x256; 256 MiB as float32)
SPACING_RANGE_MM = (0.05, 20.0)  # plausible MR voxel spacing; outside it the canvas arithmetic overflows
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
VOLUME_SUFFIXES = (".mha", ".mhd", ".nii", ".nii.gz", ".nrrd")
# canonical patient directions of the array axes (slices, rows, columns): the rows go to the feet (-z),
# the columns go posterior (+y); the slice axis only has to be left-right (either sign).
_CANON_ROW = np.array([0.0, 0.0, -1.0])
_CANON_COL = np.array([0.0, 1.0, 0.0])
_MAX_OBLIQUE_COS = np.cos(np.deg2rad(35.0))


@dataclass
class Volume:
    """A 3D image in its input grid: ``array[slice, row, column]``."""

    array: np.ndarray
    spacing: tuple[float, float, float]  # (column, row, slice) mm
    origin: tuple[float, float, float]
    direction: tuple[float, ...]  # 3x3 row-major, columns = directions of the (column, row, slice) axes
    kind: str
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    frame_of_reference_uid: str | None = None
    sop_instance_uids: list[str] | None = None  # per slice (single-frame DICOM)
    frame_numbers: list[int] | None = None  # per slice (multi-frame DICOM)
    datasets: list[Dataset] = field(default_factory=list)  # headers of the source instances, slice order
    warnings: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.array.shape)

    def axis_directions(self) -> np.ndarray:
        """Patient-space unit vectors of array axes 0 (slice), 1 (row), 2 (column)."""
        d = np.asarray(self.direction, dtype=float).reshape(3, 3)
        return np.stack([d[:, 2], d[:, 1], d[:, 0]])

    def to_sitk(self, array: np.ndarray | None = None) -> sitk.Image:
        image = sitk.GetImageFromArray(self.array if array is None else array)
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image


@dataclass(frozen=True)
class Canonical:
    """How to turn an input-grid array into the canonical one (and back): a permutation, then flips."""

    perm: tuple[int, int, int]
    flips: tuple[bool, bool, bool]
    spacing: tuple[float, float, float]  # (slice, row, column) mm in canonical order

    def forward(self, array: np.ndarray) -> np.ndarray:
        out = np.transpose(array, self.perm + tuple(range(3, array.ndim)))
        for axis, flip in enumerate(self.flips):
            if flip:
                out = np.flip(out, axis)
        return np.ascontiguousarray(out)

    def inverse(self, array: np.ndarray) -> np.ndarray:
        out = array
        for axis, flip in enumerate(self.flips):
            if flip:
                out = np.flip(out, axis)
        inv = tuple(int(i) for i in np.argsort(self.perm))
        return np.ascontiguousarray(np.transpose(out, inv + tuple(range(3, array.ndim))))

    def index_to_input(self, canon_index: tuple[int, int, int], input_shape: tuple[int, int, int]) -> tuple[int, ...]:
        canon_shape = tuple(input_shape[p] for p in self.perm)
        idx = [canon_shape[a] - 1 - canon_index[a] if self.flips[a] else canon_index[a] for a in range(3)]
        out = [0, 0, 0]
        for a, p in enumerate(self.perm):
            out[p] = idx[a]
        return tuple(out)


def canonical_of(volume: Volume) -> Canonical:
    """Find the permutation + flips that make the volume sagittal-canonical, or say why it is not sagittal."""
    axes = volume.axis_directions()
    lr = np.abs(axes[:, 0])
    slice_axis = int(np.argmax(lr))
    if lr[slice_axis] < _MAX_OBLIQUE_COS:
        raise InputError(
            "this is not a sagittal series (no image axis runs left-right); LDH Assist needs a sagittal lumbar series"
        )
    rest = [a for a in range(3) if a != slice_axis]
    row_axis = max(rest, key=lambda a: abs(axes[a] @ _CANON_ROW))
    col_axis = next(a for a in rest if a != row_axis)
    if abs(axes[row_axis] @ _CANON_ROW) < _MAX_OBLIQUE_COS or abs(axes[col_axis] @ _CANON_COL) < _MAX_OBLIQUE_COS:
        raise InputError("this is not a sagittal series (its planes are axial or coronal); LDH Assist needs sagittal")
    spacing_by_axis = {0: volume.spacing[2], 1: volume.spacing[1], 2: volume.spacing[0]}
    perm = (slice_axis, row_axis, col_axis)
    flips = (False, bool(axes[row_axis] @ _CANON_ROW < 0), bool(axes[col_axis] @ _CANON_COL < 0))
    return Canonical(perm, flips, tuple(float(spacing_by_axis[a]) for a in perm))


# ---------------------------------------------------------------------------------------------- loaders


def load_volume(path: Path, *, pixel_spacing_mm: float = 0.75, slice_spacing_mm: float = 4.0) -> Volume:
    """Load any supported input; raise :class:`InputError` with one clear sentence otherwise."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise InputError(f"{path} is an empty folder; give a DICOM series, an MHA/NIfTI file or JPG/PNG slices")
        images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        if images and len(images) == len(files):
            return load_image_slices(images, pixel_spacing_mm=pixel_spacing_mm, slice_spacing_mm=slice_spacing_mm)
        return load_dicom_series(files)
    name = path.name.lower()
    if name.endswith(VOLUME_SUFFIXES):
        return load_itk_volume(path)
    if name.endswith(IMAGE_SUFFIXES):
        raise InputError(f"{path.name} is a single 2D image; LDH Assist needs a series of sagittal slices")
    return load_dicom_series([path])


_MET_BYTES = {"MET_UCHAR": 1, "MET_CHAR": 1, "MET_USHORT": 2, "MET_SHORT": 2, "MET_UINT": 4, "MET_INT": 4,
              "MET_FLOAT": 4, "MET_DOUBLE": 8, "MET_ULONG": 8, "MET_LONG": 8}


def check_metaimage(path: Path) -> None:
    """Refuse a corrupt or truncated MetaImage before ITK reads it (ITK would print its complaints on stderr).

    Checks the text header's required keys, that the pixels are in this file or in a plain file beside it (ITK
    crashed on a file-name pattern such as ``%s.raw 1 9 1``, and would follow ``../`` out of the upload) and, for
    uncompressed local data, that every pixel byte is there.
    """
    head = path.read_bytes()[:4096] if path.stat().st_size else b""
    if not head:
        raise InputError(f"{path.name} is empty (0 bytes)")
    fields: dict[str, str] = {}
    offset = 0
    for raw in head.split(b"\n"):
        offset += len(raw) + 1
        if not raw.strip():
            continue
        key, sep, value = raw.decode("latin-1").partition("=")
        if not sep:
            raise InputError(f"{path.name} is not a MetaImage (its header has a line without '='; corrupt file?)")
        fields[key.strip()] = value.strip()
        if key.strip() == "ElementDataFile":
            break
    else:
        raise InputError(f"{path.name} has no complete MetaImage header (corrupt or truncated file)")
    missing = [k for k in ("NDims", "DimSize", "ElementType") if k not in fields]
    if missing:
        raise InputError(f"{path.name} has a corrupt MetaImage header (missing {', '.join(missing)})")
    ndims = _header_ints(path, fields, "NDims", 1)[0]
    dims = _header_ints(path, fields, "DimSize", ndims)
    channels = _header_ints(path, fields, "ElementNumberOfChannels", 1, "1")[0]
    data_file = fields["ElementDataFile"]
    if data_file != "LOCAL" and not re.fullmatch(r"[\w.-]+", data_file) or data_file in ("LIST", ".", ".."):
        raise InputError(f"{path.name} names its pixel data {data_file!r}; give LOCAL (one .mha file) or the name "
                         "of a .raw file uploaded beside it (no paths, lists or patterns)")
    if data_file == "LOCAL" and fields.get("CompressedData", "False").lower() != "true":
        expected = int(np.prod(dims)) * channels * _MET_BYTES.get(fields["ElementType"], 1)
        found = path.stat().st_size - offset
        if found < expected:
            raise InputError(f"{path.name} is truncated: {found} of {expected} pixel bytes present")


def _header_ints(path: Path, fields: dict[str, str], key: str, count: int, default: str | None = None) -> list[int]:
    """``count`` positive integers from a MetaImage header field, or an :class:`InputError` naming the field."""
    raw = fields.get(key, default) or ""
    values = raw.split()
    if len(values) != count or not all(v.isdigit() and int(v) > 0 for v in values):
        want = "a positive integer" if count == 1 else f"{count} positive integers (one per dimension)"
        raise InputError(f"{path.name} has a corrupt MetaImage header ({key} {raw!r} is not {want})")
    return [int(v) for v in values]


def check_itk_header(path: Path) -> None:
    """Refuse, from its header alone, a volume ITK would read into too much memory or fill with zeros: a header
    can claim 32767 x 8 x 4 voxels, or a million channels, over 512 bytes of pixels (ITK allocates them all before
    it fails), and ITK reads a short NIfTI without an error."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise InputError(f"{path.name} could not be read as an MHA/NIfTI volume (corrupt or truncated file)") from exc
    size = reader.GetSize()
    if len(size) != 3 or reader.GetNumberOfComponents() != 1:  # before ITK allocates 1000000 channels
        raise InputError(f"{path.name} is not a 3D single-channel volume; LDH Assist needs a series of slices")
    voxels = int(np.prod(size, dtype=np.int64))
    if max(size) > max(MAX_IMAGE_SIDE, MAX_SLICES) or voxels > MAX_VOLUME_VOXELS:
        raise InputError(f"{path.name} claims {' x '.join(map(str, size))} voxels; LDH Assist reads 3D volumes of at "
                         f"most {MAX_VOLUME_VOXELS} voxels and {MAX_IMAGE_SIDE} per side (corrupt or hostile file?)")
    if ".nii" in path.name.lower():
        pixel = sitk.Image([1, 1, 1], reader.GetPixelID()).GetSizeOfPixelComponent()
        needed = NIFTI1_HEADER_BYTES + voxels * pixel
        found = _stream_bytes(path, needed)
        if found < needed:
            raise InputError(f"{path.name} is truncated: its header and {voxels} voxels need at least {needed} bytes, "
                             f"the file holds {found}")


NIFTI1_HEADER_BYTES = 348


def _stream_bytes(path: Path, limit: int) -> int:
    """The bytes a (maybe gzipped) file holds, counted up to ``limit`` (a gzip bomb is not inflated further)."""
    import gzip

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    total = 0
    try:
        with opener(path, "rb") as fh:
            while total < limit and (chunk := fh.read(min(1 << 20, limit - total))):
                total += len(chunk)
    except (OSError, EOFError) as exc:  # a corrupt gzip stream
        raise InputError(f"{path.name} could not be read as an MHA/NIfTI volume (corrupt or truncated file)") from exc
    return total


def load_itk_volume(path: Path) -> Volume:
    if path.suffix.lower() in (".mha", ".mhd"):
        check_metaimage(path)
    check_itk_header(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(f"{path.name} could not be read as an MHA/NIfTI volume (corrupt or truncated file)") from exc
    image = _slice_axis_last(image)
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    kind = "nifti" if ".nii" in path.name.lower() else "mha"
    volume = Volume(array, image.GetSpacing(), image.GetOrigin(), image.GetDirection(), kind)
    _check_slices(volume, path.name)
    return volume


def _slice_axis_last(image: sitk.Image) -> sitk.Image:
    """Make the left-right axis the slice axis (sitk z = array axis 0), so slices are sagittal planes."""
    d = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    lr_axis = int(np.argmax(np.abs(d[0, :])))
    if lr_axis == 2:
        return image
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    thick = int(np.argmax(spacing))
    if thick != lr_axis and spacing[thick] / spacing.min() > 1.5:  # thick slices along a non-LR axis: an axial
        # or coronal acquisition, whatever the array order; thick left-right slices are sagittal in any order
        raise InputError("this is not a sagittal series (its slices are axial or coronal); LDH Assist needs sagittal")
    order = [a for a in range(3) if a != lr_axis] + [lr_axis]
    return sitk.PermuteAxes(image, order)


def _slice_number(path: Path) -> tuple[int, str]:
    numbers = re.findall(r"\d+", path.stem)
    return (int(numbers[-1]) if numbers else -1, path.name)


def load_image_slices(files: list[Path], *, pixel_spacing_mm: float, slice_spacing_mm: float) -> Volume:
    """JPG/PNG slices ordered by the number in their names; geometry from the stated default spacing."""
    import cv2

    files = sorted(files, key=_slice_number)
    slices = []
    for f in files:
        _check_image_size(f)
        try:
            img = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
        except cv2.error:
            img = None
        if img is None:
            raise InputError(f"{f.name} is not a readable JPG/PNG image")
        if img.ndim == 3:
            img = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2GRAY)
        if slices and img.shape != slices[0].shape:
            raise InputError(
                f"slices have different sizes ({files[0].name} is {slices[0].shape[1]}x{slices[0].shape[0]}, "
                f"{f.name} is {img.shape[1]}x{img.shape[0]}); all slices of a series must have one size"
            )
        slices.append(img.astype(np.float32))
    volume = Volume(
        np.stack(slices),
        (pixel_spacing_mm, pixel_spacing_mm, slice_spacing_mm),
        (0.0, 0.0, 0.0),
        (0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0),  # assumed sagittal, anterior left, head up
        "images",
    )
    _check_slices(volume, "the image folder")
    return volume


def _check_image_size(path: Path) -> None:
    """Refuse a JPG/PNG whose header claims more pixels than any MR slice before it is decoded: a few hundred
    bytes can announce a 65535² image (a decompression bomb that would take gigabytes)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            width, height = im.size
    except Image.DecompressionBombError:  # PIL's own limit (~179 M pixels) refuses the header outright
        raise InputError(f"{path.name} claims more pixels than PIL will decode; an MR slice has at most "
                         f"{MAX_IMAGE_SIDE} per side (corrupt or hostile file?)") from None
    except (UnidentifiedImageError, OSError, ValueError):
        return  # not a header PIL reads: the decoder below decides, and says "not a readable image"
    if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE:
        raise InputError(f"{path.name} claims {width}x{height} pixels; an MR slice has at most "
                         f"{MAX_IMAGE_SIDE} per side (corrupt or hostile file?)")


def _read_dicom(path: Path) -> Dataset | None:
    try:
        return pydicom.dcmread(path)
    except Exception:  # noqa: BLE001 - any unreadable file is "not DICOM" to us
        return None


def load_dicom_series(files: list[Path]) -> Volume:
    datasets = [ds for ds in (_read_dicom(f) for f in files) if ds is not None and "PixelData" in ds]
    if not datasets:
        raise InputError("no readable DICOM image found (the files are not DICOM or carry no pixel data)")
    series = {str(ds.get("SeriesInstanceUID", "")) for ds in datasets}
    if len(series) > 1:
        raise InputError(f"the input holds {len(series)} DICOM series; give one series at a time")
    if len(datasets) == 1 and int(datasets[0].get("NumberOfFrames", 1) or 1) > 1:
        return _load_multiframe(datasets[0])
    return _load_single_frames(datasets)


def _geometry_of(iop, pixel_spacing) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    iop = np.asarray(iop, dtype=float)
    row_dir, col_dir = iop[:3], iop[3:]  # DICOM: direction of increasing column index, then of increasing row index
    normal = np.cross(row_dir, col_dir)
    return row_dir, col_dir, normal, float(pixel_spacing[0]), float(pixel_spacing[1])


def _slice_spacing(positions: np.ndarray, normal: np.ndarray, what: str) -> tuple[np.ndarray, float]:
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    gaps = np.diff(along[order])
    if len(gaps) == 0 or np.any(gaps < 1e-3):
        raise InputError(f"{what} has slices at the same position (duplicate or overlapping instances)")
    if np.max(np.abs(gaps - np.median(gaps))) > 0.1 * np.median(gaps) + 0.05:
        raise InputError(f"{what} has unevenly spaced slices (a slice is missing or the series is mixed)")
    return order, float(np.median(gaps))


def _rescaled(ds: Dataset, pixels: np.ndarray) -> np.ndarray:
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    return pixels.astype(np.float32) * slope + intercept


def _load_single_frames(datasets: list[Dataset]) -> Volume:
    if len(datasets) < MIN_SLICES:
        raise InputError(
            f"the series has {len(datasets)} image(s); LDH Assist needs a sagittal series of at least {MIN_SLICES} slices"
        )
    first = datasets[0]
    for attr in ("ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing"):
        if any(attr not in ds for ds in datasets):
            raise InputError(f"the DICOM series lacks {attr}, so its geometry is unknown")
    iops = np.array([[float(v) for v in ds.ImageOrientationPatient] for ds in datasets])
    if np.max(np.abs(iops - iops[0])) > 1e-3:
        raise InputError("the DICOM series mixes image orientations (inconsistent geometry)")
    if len({(int(ds.Rows), int(ds.Columns)) for ds in datasets}) > 1:
        raise InputError("the DICOM series mixes image sizes (inconsistent geometry)")
    row_dir, col_dir, normal, row_sp, col_sp = _geometry_of(first.ImageOrientationPatient, first.PixelSpacing)
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in datasets])
    order, spacing = _slice_spacing(positions, normal, "the DICOM series")
    datasets = [datasets[i] for i in order]
    _check_pixel_count(first, len(datasets))
    try:
        array = np.stack([_rescaled(ds, ds.pixel_array) for ds in datasets])
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"the DICOM pixel data could not be decoded ({exc.__class__.__name__})") from exc
    if array.ndim != 3:
        raise InputError("the DICOM images are not single-channel (colour images cannot be analysed)")
    direction = np.stack([row_dir, col_dir, normal], axis=1)
    volume = Volume(
        array,
        (col_sp, row_sp, spacing),
        tuple(float(v) for v in positions[order[0]]),
        tuple(float(v) for v in direction.ravel()),
        "dicom",
        study_instance_uid=str(first.get("StudyInstanceUID", "")) or None,
        series_instance_uid=str(first.get("SeriesInstanceUID", "")) or None,
        frame_of_reference_uid=str(first.get("FrameOfReferenceUID", "")) or None,
        sop_instance_uids=[str(ds.SOPInstanceUID) for ds in datasets],
        datasets=datasets,
    )
    _check_slices(volume, "the DICOM series")
    return volume


def _check_pixel_count(ds: Dataset, slices: int) -> None:
    """Refuse, before decoding, pixel data whose header claims more than any MR series: a mutated Rows or
    NumberOfFrames in a small RLE/JPEG file made the decoder allocate gigabytes (bench.fuzz: 0.9 -> 2.0 GB)."""
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
    except (AttributeError, TypeError, ValueError) as exc:
        raise InputError("the DICOM image lacks a valid Rows / Columns / SamplesPerPixel") from exc
    if max(rows, cols) > MAX_IMAGE_SIDE or rows * cols * samples * slices > MAX_VOLUME_VOXELS:
        raise InputError(f"the DICOM series claims {slices} x {rows} x {cols} pixels ({samples} per pixel); LDH "
                         f"Assist reads at most {MAX_VOLUME_VOXELS} and {MAX_IMAGE_SIDE} per side (corrupt header?)")


def _load_multiframe(ds: Dataset) -> Volume:
    try:
        shared = ds.SharedFunctionalGroupsSequence[0]
        frames = ds.PerFrameFunctionalGroupsSequence
        iop = (frames[0].get("PlaneOrientationSequence") or shared.PlaneOrientationSequence)[0].ImageOrientationPatient
        pixel_spacing = (frames[0].get("PixelMeasuresSequence") or shared.PixelMeasuresSequence)[0].PixelSpacing
        positions = np.array([[float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient] for f in frames])
    except (AttributeError, IndexError, KeyError) as exc:
        raise InputError("the multi-frame DICOM image lacks per-frame position/orientation (unknown geometry)") from exc
    if len(frames) < MIN_SLICES:
        raise InputError(f"the image has {len(frames)} frame(s); LDH Assist needs at least {MIN_SLICES} slices")
    row_dir, col_dir, normal, row_sp, col_sp = _geometry_of(iop, pixel_spacing)
    order, spacing = _slice_spacing(positions, normal, "the multi-frame image")
    _check_pixel_count(ds, max(len(frames), int(ds.get("NumberOfFrames", 1) or 1)))
    try:
        pixels = ds.pixel_array.astype(np.float32)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"the DICOM pixel data could not be decoded ({exc.__class__.__name__})") from exc
    array = pixels[order]
    direction = np.stack([row_dir, col_dir, normal], axis=1)
    volume = Volume(
        array,
        (col_sp, row_sp, spacing),
        tuple(float(v) for v in positions[order[0]]),
        tuple(float(v) for v in direction.ravel()),
        "dicom",
        study_instance_uid=str(ds.get("StudyInstanceUID", "")) or None,
        series_instance_uid=str(ds.get("SeriesInstanceUID", "")) or None,
        frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "")) or None,
        sop_instance_uids=[str(ds.SOPInstanceUID)] * len(order),
        frame_numbers=[int(i) + 1 for i in order],
        datasets=[ds],
    )
    _check_slices(volume, "the multi-frame image")
    return volume


def _check_slices(volume: Volume, what: str) -> None:
    if volume.array.shape[0] < MIN_SLICES:
        raise InputError(
            f"{what} holds {volume.array.shape[0]} slice(s); LDH Assist needs a sagittal series of at least "
            f"{MIN_SLICES} slices"
        )
    if volume.array.shape[0] > MAX_SLICES:
        raise InputError(f"{what} holds {volume.array.shape[0]} slices; LDH Assist reads series of at most "
                         f"{MAX_SLICES} slices (a lumbar series has tens)")
    low, high = SPACING_RANGE_MM
    if not all(low <= s <= high for s in volume.spacing):  # NaN fails too
        raise InputError(f"{what} has a voxel spacing of {' x '.join(f'{s:g}' for s in volume.spacing)} mm; an MR "
                         f"series has {low:g} to {high:g} mm (corrupt header?)")
    if not np.all(np.isfinite(volume.direction)) or not np.all(np.isfinite(volume.origin)):
        raise InputError(f"{what} has a non-finite orientation or origin (corrupt header?)")
    if not np.all(np.isfinite(volume.array)):
        raise InputError(f"{what} holds non-finite voxel values (NaN or infinity; corrupt file?)")
