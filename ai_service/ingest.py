"""Uploaded files → one validated DICOM MR series, ready for the same path as a C-STORE'd series.

``prepare_upload`` looks at what was uploaded (zips are expanded safely), decides what it is, loads it with
:func:`ai_service.volume.load_volume` (the same checks as ``ldh analyze``: unreadable, single 2D image, mixed
sizes, axial/coronal...), and produces a folder of Part 10 files: the uploaded DICOM instances byte for byte, or
the converted series (:mod:`ai_service.dicomize`) for MHA/NIfTI/JPG/PNG. ``store_series`` then puts that series
into the storage as ``studies/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm``, all or nothing.

Seam for the DICOM node (dicom_node/): when the node's durable inbox is available in this process, the API
hands the prepared folder to it instead of ``store_series`` so that uploads and C-STORE share inbox, routing
and jobs (see ``ai_service/api/state.py``).
"""

from __future__ import annotations

import shutil
import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import pydicom

from ai_service.config import Settings
from ai_service.dicomize import save_series, volume_to_mr_series
from ai_service.errors import InputError
from ai_service.results import series_prefix
from ai_service.storage import Storage
from ai_service.volume import IMAGE_SUFFIXES, SPACING_RANGE_MM, VOLUME_SUFFIXES, Volume, canonical_of, load_volume

ZIP_EXPANSION_LIMIT = 4  # a zip may expand to at most 4x the upload limit (zip bombs)
_SKIP = ("__MACOSX/", ".DS_Store", "Thumbs.db", "DICOMDIR")


class IngestError(InputError):
    """The upload cannot become a series; ``status`` is the HTTP status (415 unsupported, 422 unusable...)."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


@dataclass
class PreparedSeries:
    folder: Path  # Part 10 files of one series
    study_uid: str
    series_uid: str
    kind: str  # dicom | mha | nifti | images (what was uploaded)
    slices: int
    shape: tuple[int, int, int]
    warnings: list[str] = field(default_factory=list)


def _is_dicom(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(132)
    if len(head) == 132 and head[128:132] == b"DICM":
        return True
    try:  # a raw dataset without preamble (rare, but valid from some tools)
        pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"], force=False)
        return True
    except Exception:  # noqa: BLE001
        return False


def _volume_name(name: str) -> bool:
    return name.lower().endswith(VOLUME_SUFFIXES)


def _image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def expand_zips(files: list[Path], folder: Path, max_bytes: int, max_files: int) -> list[Path]:
    """Replace each zip by its members (flattened into ``folder/<zip-stem>/``), refusing traversal and bombs."""
    out: list[Path] = []
    budget = max_bytes * ZIP_EXPANSION_LIMIT
    for path in files:
        with open(path, "rb") as fh:
            magic = fh.read(4)
        if path.suffix.lower() != ".zip" and magic != b"PK\x03\x04":
            out.append(path)
            continue
        target = folder / f"{path.stem}.unzipped"
        try:
            with zipfile.ZipFile(path) as zf:
                members = [m for m in zf.infolist() if not m.is_dir() and not any(s in m.filename for s in _SKIP)]
                members = [m for m in members if not stat.S_ISLNK(m.external_attr >> 16)]
                if not members:
                    raise IngestError(f"{path.name} is an empty zip (no files inside)", 422)
                if len(out) + len(members) > max_files:
                    raise IngestError(f"{path.name} holds more than {max_files} files (LDH_API_MAX_UPLOAD_FILES)", 413)
                size = path.stat().st_size
                for i, m in enumerate(members):
                    if not 0 <= m.header_offset < size:  # zipfile would seek there: EINVAL, or read garbage
                        raise zipfile.BadZipFile(f"member {i} starts at byte {m.header_offset}, outside the file")
                    budget -= m.file_size
                    if budget < 0:
                        raise IngestError(f"{path.name} expands beyond {ZIP_EXPANSION_LIMIT}x the upload limit", 413)
                    name = Path(m.filename).name.lstrip(".") or f"member{i:05d}"
                    dest = target / f"{i:05d}_{name}"
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(m) as src, open(dest, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                    out.append(dest)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, UnicodeDecodeError) as exc:
            # a broken central directory, member data that does not inflate or ends early, a compression
            # method zipfile lacks, or a member name flagged UTF-8 that is not: all a bad upload, not a server error
            raise IngestError(f"{path.name} is a corrupt or unsupported zip file ({exc})", 422) from exc
        except RuntimeError as exc:  # zipfile's "File ... is encrypted, password required"
            raise IngestError(f"{path.name}: {exc}; upload an unencrypted zip", 422) from exc
        path.unlink()
    return out


def _spacing(fields: dict[str, str], name: str, default: float) -> float:
    raw = fields.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise IngestError(f"{name} must be a number of millimetres, got {raw!r}", 422) from None
    low, high = SPACING_RANGE_MM
    if not low <= value <= high:
        raise IngestError(f"{name} must be between {low:g} and {high:g} mm, got {value:g}", 422)
    return value


def classify(files: list[Path]) -> str:
    """``images`` | ``volume`` | ``dicom``, or an :class:`IngestError` saying what is wrong with the set."""
    if not files:
        raise IngestError("the upload holds no file", 400)
    empty = [f.name for f in files if f.stat().st_size == 0]
    if empty:
        raise IngestError(f"{empty[0]} is empty (0 bytes)", 400 if len(files) == 1 else 422)
    images = [f for f in files if _image_name(f.name)]
    volumes = [f for f in files if _volume_name(f.name)]
    if images and len(images) == len(files):
        if len(images) == 1:
            raise IngestError(
                f"{images[0].name} is a single 2D image; LDH Assist needs a series of sagittal slices "
                "(upload all slices of the series, numbered in their names)", 422)
        return "images"
    if volumes:
        others = [f for f in files if f not in volumes and not f.name.lower().endswith((".raw", ".zraw"))]
        if len(volumes) > 1 or others:
            raise IngestError(
                "the upload mixes a volume file with other files; upload one MHA/NIfTI volume, or JPG/PNG "
                "slices, or the DICOM files of one series", 422)
        return "volume"
    not_dicom = [f.name for f in files if not _is_dicom(f)]
    if not_dicom:
        if images:
            raise IngestError(
                f"the upload mixes JPG/PNG slices with other files ({not_dicom[0]}); upload one kind", 422)
        raise IngestError(
            f"{not_dicom[0]} is not a DICOM, MHA/NIfTI, PNG or JPG file; upload one series as DICOM files "
            "(or a zip of them), one .mha/.nii.gz volume, or JPG/PNG slices", 415)
    return "dicom"


def prepare_upload(files: list[Path], fields: dict[str, str], workdir: Path, settings: Settings) -> PreparedSeries:
    """Validate the uploaded files and turn them into one DICOM series folder under ``workdir``."""
    max_bytes = settings.api_max_upload_mb * 1024 * 1024
    files = expand_zips(files, workdir / "unzipped", max_bytes, settings.api_max_upload_files)
    kind = classify(files)
    pixel = _spacing(fields, "pixel_spacing_mm", settings.default_pixel_spacing_mm)
    slice_ = _spacing(fields, "slice_spacing_mm", settings.default_slice_spacing_mm)
    if kind == "images":
        folder = workdir / "images"
        folder.mkdir()
        for f in files:
            f.replace(folder / f.name)
        volume = load_volume(folder, pixel_spacing_mm=pixel, slice_spacing_mm=slice_)
        original = f"{len(files)} slices"
    elif kind == "volume":
        path = next(f for f in files if _volume_name(f.name))
        volume = load_volume(path)
        original = path.name
        kind = volume.kind  # mha | nifti
    else:
        folder = workdir / "dicom-in"
        folder.mkdir()
        for i, f in enumerate(files):
            f.replace(folder / f"{i:05d}_{f.name}")
        volume = load_volume(folder)
        original = None
    canonical_of(volume)  # refuse axial / coronal / oblique series now, not in the job
    out = workdir / "series"
    if kind == "dicom":
        _keep_series_files(volume, folder, out)
    else:
        save_series(volume_to_mr_series(volume, settings, original_name=original), out)
        # the converted series must load exactly like the volume did (slice order, geometry)
        check = load_volume(out)
        if check.shape != volume.shape:
            raise RuntimeError(f"conversion changed the grid {volume.shape} -> {check.shape}")
        volume = check
    return PreparedSeries(out, str(volume.study_instance_uid), str(volume.series_instance_uid), kind,
                          volume.shape[0], volume.shape, list(volume.warnings))


def _keep_series_files(volume: Volume, folder: Path, out: Path) -> None:
    """Move the instances of the loaded series (byte for byte) into ``out`` as ``<SOPInstanceUID>.dcm``."""
    wanted = {str(ds.SOPInstanceUID) for ds in volume.datasets}
    out.mkdir(parents=True, exist_ok=True)
    for f in sorted(folder.iterdir()):
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
        except Exception:  # noqa: BLE001
            continue
        uid = str(ds.get("SOPInstanceUID", ""))
        if uid in wanted:
            f.replace(out / f"{uid}.dcm")
    if len(list(out.iterdir())) != len(wanted):
        raise IngestError("the DICOM upload holds the same SOP Instance UID in different files", 422)


def store_series(storage: Storage, prepared: PreparedSeries) -> str:
    """Put the series into ``studies/<study>/<series>/``; on any failure remove what was written. Returns the prefix."""
    prefix = series_prefix(prepared.study_uid, prepared.series_uid)
    written = []
    try:
        for f in sorted(prepared.folder.iterdir()):
            key = f"{prefix}/{f.name}"
            storage.write_file(key, f)
            written.append(key)
    except BaseException:
        for key in written:
            storage.delete(key)
        raise
    return prefix
