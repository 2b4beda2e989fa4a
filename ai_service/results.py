"""Analyse one stored DICOM series and store its results: the API worker's job handler.

Reads ``studies/<StudyUID>/<SeriesUID>/*.dcm``, runs the engine, and writes
``results/<StudyUID>/<seg-version>+<cls-version>/<SeriesUID>/`` (the DICOM node's layout): ``findings.json``
(written last: its presence means the result is complete), ``discs.mha``, ``preview.png``, ``seg.dcm``, ``sr.dcm``, ``preview.dcm`` (as ``ldh analyze``), and for
the web page ``slices/NNNN.png`` (8-bit, one window for the whole series) and ``masks/NNNN.png`` (RGBA disc
overlay in the level colours).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from ai_service.analyze import write_outputs
from ai_service.config import Settings
from ai_service.engine import InferenceEngine
from ai_service.findings import Findings, ModelVersions
from ai_service.labels import LEVELS, disc_label
from ai_service.preview import HERNIATION_COLOUR, LEVEL_COLOURS
from ai_service.storage import NotFound, Storage, safe_name
from ai_service.volume import Volume, load_volume

log = logging.getLogger(__name__)
RESULT_FILES = ("discs.mha", "preview.png", "seg.dcm", "sr.dcm", "preview.dcm")
MARKER = "findings.json"
MASK_ALPHA = 110


def series_prefix(study_uid: str, series_uid: str) -> str:
    return f"studies/{safe_name(study_uid)}/{safe_name(series_uid)}"


def version_key(models: ModelVersions) -> str:
    return safe_name(f"{models.segmentation}+{models.classification}")


def result_prefix(study_uid: str, series_uid: str, models: ModelVersions) -> str:
    """``results/<StudyUID>/<seg>+<cls>/<SeriesUID>``: the DICOM node's layout too (one folder per analysed series)."""
    return f"results/{safe_name(study_uid)}/{version_key(models)}/{safe_name(series_uid)}"


def load_stored_series(storage: Storage, prefix: str, workdir: Path, settings: Settings) -> Volume:
    """Load the series stored under ``prefix`` (``studies/<study>/<series>`` or the node's ``inbox/...``)."""
    files = storage.download(prefix, workdir)
    if not files:
        raise NotFound(prefix)
    return load_volume(workdir, pixel_spacing_mm=settings.default_pixel_spacing_mm,
                       slice_spacing_mm=settings.default_slice_spacing_mm)


def display_slices(array: np.ndarray) -> np.ndarray:
    """uint8 slices with one robust window for the whole series (what the web page shows)."""
    lo, hi = np.percentile(array[:, ::2, ::2], [0.5, 99.5])
    hi = max(float(hi), float(lo) + 1.0)
    return np.clip((array - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)


def mask_rgba(labels2d: np.ndarray, findings: Findings) -> np.ndarray:
    """RGBA overlay: each reported disc in its level colour (herniated ones in the herniation colour)."""
    out = np.zeros((*labels2d.shape, 4), dtype=np.uint8)
    for level in LEVELS:
        disc = findings.disc(level)
        colour = HERNIATION_COLOUR if disc is not None and disc.herniation else LEVEL_COLOURS[level]
        where = labels2d == disc_label(level)
        out[where, :3] = colour
        out[where, 3] = MASK_ALPHA
    return out


def _png(path: Path, image: np.ndarray) -> None:
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    if not cv2.imwrite(str(path), image, [cv2.IMWRITE_PNG_COMPRESSION, 3]):
        raise OSError(f"could not write {path.name}")


def _page_images(out: Path, volume: Volume, label_map: np.ndarray, findings: Findings) -> None:
    slices = display_slices(volume.array)
    (out / "slices").mkdir(exist_ok=True)
    (out / "masks").mkdir(exist_ok=True)
    for k in range(volume.shape[0]):
        _png(out / "slices" / f"{k:04d}.png", slices[k])
        _png(out / "masks" / f"{k:04d}.png", mask_rgba(label_map[k], findings))


def analyze_stored_series(
    storage: Storage,
    settings: Settings,
    engine: InferenceEngine,
    study_uid: str,
    series_uid: str,
    series_key: str | None = None,
    report: Callable[[str, float], None] = lambda stage, progress: None,
) -> str:
    """Run the engine on a stored series; returns the result prefix. Nothing is visible until it is complete."""
    with tempfile.TemporaryDirectory(prefix="ldh-job-", dir=_tmp_root(settings)) as tmp:
        tmp = Path(tmp)
        report("loading series", 0.1)
        volume = load_stored_series(storage, series_key or series_prefix(study_uid, series_uid), tmp / "series",
                                    settings)
        report("analysing", 0.25)
        analysis = engine.analyze(volume)
        report("encoding results", 0.75)
        out = tmp / "out"
        files = write_outputs(volume, analysis, out, settings)
        _page_images(out, volume, analysis.label_map, analysis.findings)
        report("storing results", 0.9)
        prefix = result_prefix(study_uid, series_uid, analysis.findings.models)
        storage.delete_prefix(prefix)  # a re-run replaces an earlier (possibly partial) result wholesale
        for path in sorted(out.rglob("*")):
            if path.is_file() and path.name != MARKER:
                storage.write_file(f"{prefix}/{path.relative_to(out).as_posix()}", path)
        storage.write_file(f"{prefix}/{MARKER}", files["findings.json"])
    return prefix


def add_page_images(storage: Storage, settings: Settings, series_key: str, prefix: str,
                    report: Callable[[str, float], None] = lambda stage, progress: None) -> None:
    """Slice and mask PNGs for a result someone else (the DICOM node) produced with ``ldh analyze``'s outputs."""
    import SimpleITK as sitk

    report("preparing the page images", 0.9)
    with tempfile.TemporaryDirectory(prefix="ldh-page-", dir=_tmp_root(settings)) as tmp:
        tmp = Path(tmp)
        volume = load_stored_series(storage, series_key, tmp / "series", settings)
        (tmp / "discs.mha").write_bytes(storage.read_bytes(f"{prefix}/discs.mha"))
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp / "discs.mha")))
        findings = read_findings(storage, prefix)
        out = tmp / "out"
        out.mkdir()
        _page_images(out, volume, labels, findings)
        for path in sorted(out.rglob("*")):
            if path.is_file():
                storage.write_file(f"{prefix}/{path.relative_to(out).as_posix()}", path)


def read_findings(storage: Storage, prefix: str) -> Findings:
    import json

    return Findings.from_dict(json.loads(storage.read_bytes(f"{prefix}/{MARKER}")))


def _tmp_root(settings: Settings) -> Path:
    root = settings.local_dir / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    return root
