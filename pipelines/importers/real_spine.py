"""Real sagittal lumbar MRI with manual masks (``shared/data/real_spine``), read in place, in our label convention.

Two public layouts, both MATLAB files with ``I`` (image) and ``GT`` (mask) on a 1 mm isotropic grid whose axes are
(superior→inferior, anterior→posterior, sagittal slice):

- **IVD** (``ivd_fmrp_usp/``): disc masks, ``GT`` 1 = L5-S1 … 5 = L1-L2 → our 205 … 201.
- **VB2** (``vb2_zukic/``): seven vertebral body masks T11 … L5 in *no fixed label order*; which label is which
  vertebra is read from the geometry (bodies ordered head→feet), → our 99 (T11), 100 (T12), 101 … 105 (L1 … L5).

Each exam becomes a :class:`RealExam`: a canonical :class:`~ai_service.volume.Volume` (slices left-right, rows
head→feet, columns anterior→posterior) with a physical geometry, so any resampling of it (:func:`clinical_like`)
and any prediction can be compared with the manual mask in patient space. Nothing is copied out of the folder.
The anatomy of every mask is checked on import (levels ordered head→feet, bodies apart); a mask one slice longer
than its image (VB2 ``02.mat``) is trimmed only when the extra slice is empty, and the exam says so in ``notes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import scipy.io
import SimpleITK as sitk

from ai_service import labels as L
from ai_service.volume import Volume

DEFAULT_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real_spine"
IVD, VB2 = "ivd", "vb2"
FOLDERS = {IVD: "ivd_fmrp_usp", VB2: "vb2_zukic"}
CITATIONS = {
    IVD: "Menezes-Reis R. et al., Lumbar intervertebral discs T2 relaxometry and T1rho relaxometry correlation with "
         "age in asymptomatic young adults, Quant Imaging Med Surg 6(4):402-412 (2016), doi:10.21037/qims.2016.08.01",
    VB2: "Zukic D. et al., Robust Detection and Segmentation for Diagnosis of Vertebral Diseases Using Routine MR "
         "Images, Computer Graphics Forum 33:190-204 (2014), doi:10.1111/cgf.12343",
}
LICENCE_CAVEAT = ("real exams from the public repository JonathanRamos/fastcleverseg (GPL-3.0, resampled there to "
                  "1 mm isotropic); no separate data licence is stated: research and internal testing only")
VB2_BODIES = (L.UPPER_VERTEBRA, L.VERTEBRA_T12) + tuple(L.vertebra_label(v) for v in ("L1", "L2", "L3", "L4", "L5"))
# canonical array (slices, rows, cols) as a patient-space image: x = columns run posterior, y = rows run to the
# feet, z = slices run left-right (the files do not store which way; we take +x)
CANONICAL_DIRECTION = (0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0)
# the files' own array order (rows, cols, slices) as an MHA/NIfTI would store it: x = slices, y = cols, z = rows
NATIVE_DIRECTION = (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


class RealExamError(ValueError):
    """A real exam whose file or mask does not hold what its layout promises (says which and why)."""


@dataclass(frozen=True)
class RealExam:
    """One real exam in our convention: image volume (canonical, with geometry) and its manual labels."""

    name: str  # e.g. "ivd-42", "vb2-02"
    dataset: str  # IVD | VB2
    volume: Volume  # canonical array (slices, rows, cols) float32, physical geometry
    labels: np.ndarray  # uint8, same grid, our label values (discs 201..205 or bodies 99..105)
    labelled: str  # "disc" or "vertebra": the only structures the mask marks (the rest is unknown, not background)
    notes: tuple[str, ...] = field(default=())

    @property
    def spacing(self) -> tuple[float, float, float]:
        """(slice, row, column) mm."""
        col, row, sl = self.volume.spacing
        return (sl, row, col)

    def label_image(self, labels: np.ndarray | None = None) -> sitk.Image:
        return self.volume.to_sitk((self.labels if labels is None else labels).astype(np.uint8))


def exam_paths(root: Path = DEFAULT_ROOT, dataset: str | None = None) -> list[Path]:
    """The exam files of one layout (or both), sorted; empty when the folder is not there."""
    sets = [dataset] if dataset else [IVD, VB2]
    return [p for d in sets for p in sorted((Path(root) / FOLDERS[d]).glob("*.mat"))]


def load_exams(root: Path = DEFAULT_ROOT, dataset: str | None = None) -> list[RealExam]:
    return [load_exam(p) for p in exam_paths(root, dataset)]


def load_exam(path: Path) -> RealExam:
    """Read one exam file where it lies; its folder name says which layout it has."""
    path = Path(path)
    dataset = next((d for d, folder in FOLDERS.items() if path.parent.name == folder), None)
    if dataset is None:
        raise RealExamError(f"{path}: not in a known layout folder ({', '.join(FOLDERS.values())})")
    try:
        mat = scipy.io.loadmat(path)
    except Exception as exc:  # noqa: BLE001 - scipy raises several types for a bad file
        raise RealExamError(f"{path.name}: not a readable MATLAB file ({exc})") from exc
    if "I" not in mat or "GT" not in mat:
        raise RealExamError(f"{path.name}: expected variables I and GT, found {sorted(k for k in mat if k[:2] != '__')}")
    image, mask = np.asarray(mat["I"]), np.asarray(mat["GT"])
    mask, notes = _match_slices(image, mask, path.name)
    if dataset == IVD:
        labels = _ivd_labels(mask, path.name)
    else:
        labels = _vb2_labels(mask, path.name)
    name = f"{dataset}-{path.stem}"
    volume = Volume(_canonical(image).astype(np.float32), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), CANONICAL_DIRECTION,
                    "real")
    return RealExam(name, dataset, volume, _canonical(labels), "disc" if dataset == IVD else "vertebra", notes)


def _canonical(array: np.ndarray) -> np.ndarray:
    """Files' (rows S→I, cols A→P, slices) → canonical (slices, rows, cols)."""
    return np.ascontiguousarray(np.transpose(array, (2, 0, 1)))


def _match_slices(image: np.ndarray, mask: np.ndarray, name: str) -> tuple[np.ndarray, tuple[str, ...]]:
    if image.ndim != 3 or mask.ndim != 3:
        raise RealExamError(f"{name}: I and GT must be 3D, got {image.shape} and {mask.shape}")
    if image.shape == mask.shape:
        return mask, ()
    if image.shape[:2] != mask.shape[:2] or abs(image.shape[2] - mask.shape[2]) != 1:
        raise RealExamError(f"{name}: mask {mask.shape} does not fit image {image.shape}")
    if mask.shape[2] < image.shape[2]:
        raise RealExamError(f"{name}: mask has one slice fewer than the image ({mask.shape[2]} vs {image.shape[2]})")
    if mask[:, :, -1].any():
        raise RealExamError(f"{name}: mask has one slice more than the image and that last slice is labelled")
    note = (f"GT has {mask.shape[2]} slices, I {image.shape[2]}: dropped GT's last slice (empty); the files do not "
            "say which end is extra, so the mask may sit 1 mm off laterally")
    return mask[:, :, :-1], (note,)


def _centre_rows(mask: np.ndarray, values) -> list[float]:
    return [float(np.nonzero(mask == v)[0].mean()) for v in values]


def _ivd_labels(mask: np.ndarray, name: str) -> np.ndarray:
    """IVD: 1 = L5-S1 … 5 = L1-L2 → 205 … 201, checked: L1-L2 on top, each disc below the one before."""
    found = sorted(int(v) for v in np.unique(mask) if v)
    if found != [1, 2, 3, 4, 5]:
        raise RealExamError(f"{name}: IVD mask should hold discs 1..5, holds {found}")
    rows = _centre_rows(mask, (5, 4, 3, 2, 1))  # L1-L2 … L5-S1
    if any(b <= a for a, b in zip(rows, rows[1:])):
        raise RealExamError(f"{name}: IVD discs 5..1 are not ordered head to feet (centre rows {rows})")
    out = np.zeros(mask.shape, np.uint8)
    for g in range(1, 6):
        out[mask == g] = L.disc_label(L.LEVELS[5 - g])
    return out


def _vb2_labels(mask: np.ndarray, name: str) -> np.ndarray:
    """VB2: seven bodies in arbitrary label order → T11 … L5 by their position head→feet, checked for anatomy."""
    found = [int(v) for v in np.unique(mask) if v]
    if len(found) != len(VB2_BODIES):
        raise RealExamError(f"{name}: VB2 mask should hold {len(VB2_BODIES)} vertebral bodies, holds {len(found)}")
    rows = dict(zip(found, _centre_rows(mask, found)))
    order = sorted(found, key=rows.__getitem__)
    gaps = np.diff([rows[v] for v in order])
    if gaps.min() < 15 or gaps.max() > 70:  # adult lumbar bodies sit ~25-45 mm apart centre to centre
        raise RealExamError(f"{name}: VB2 body centres {[round(rows[v]) for v in order]} mm are not one spine")
    out = np.zeros(mask.shape, np.uint8)
    for value, ours in zip(order, VB2_BODIES):
        out[mask == value] = ours
    return out


# ------------------------------------------------------------------------------------------- resampling


def clinical_like(exam: RealExam, slice_mm: float = 4.0, pixel_mm: float | None = None) -> RealExam:
    """The exam as a PACS series would show it: ``slice_mm`` thick sagittal slices (each the mean of the 1 mm
    planes it covers: through-slice partial volume) and, optionally, ``pixel_mm`` in-plane pixels (bilinear).

    Labels on the new grid are the manual mask sampled at each voxel centre (nearest); figures should still be
    computed on the original mask (:func:`to_grid_of`), as the 1 mm grid is the truth.
    """
    if not 1.0 <= slice_mm <= 10.0:
        raise ValueError(f"slice thickness {slice_mm} mm outside 1..10 mm")
    src = exam.volume
    slab = _slab_mean(src.array, slice_mm / src.spacing[2])
    image = src.to_sitk(slab)
    old_size = np.array(image.GetSize())  # (cols, rows, slices)
    old_spacing = np.array(image.GetSpacing())
    new_spacing = old_spacing.copy()
    new_spacing[2] = slice_mm
    if pixel_mm is not None:
        new_spacing[:2] = pixel_mm
    new_size = np.maximum(1, np.floor(old_size * old_spacing / new_spacing + 1e-6)).astype(int)
    # centre the new grid on the old one (same middle point), in index space of the old grid
    extent_old = (old_size - 1) * old_spacing
    extent_new = (new_size - 1) * new_spacing
    d = np.asarray(src.direction).reshape(3, 3)
    origin = np.asarray(src.origin) + d @ ((extent_old - extent_new) / 2.0)
    ref = sitk.Image([int(v) for v in new_size], sitk.sitkFloat32)
    ref.SetSpacing([float(v) for v in new_spacing])
    ref.SetOrigin([float(v) for v in origin])
    ref.SetDirection(src.direction)
    new_image = sitk.Resample(image, ref, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    new_labels = sitk.Resample(exam.label_image(), ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    volume = replace(src, array=sitk.GetArrayFromImage(new_image), spacing=tuple(ref.GetSpacing()),
                     origin=tuple(ref.GetOrigin()))
    tag = f"{exam.name}@{slice_mm:g}mm" + (f"x{pixel_mm:g}" if pixel_mm else "")
    return replace(exam, name=tag, volume=volume, labels=sitk.GetArrayFromImage(new_labels))


def _slab_mean(array: np.ndarray, width: float) -> np.ndarray:
    """Mean over a ``width``-plane slab around each plane along axis 0 (fractional end weights)."""
    if width <= 1.0:
        return array.astype(np.float32)
    half = width / 2.0
    reach = int(np.ceil(half - 0.5))
    weights = np.array([min(1.0, half + 0.5 - abs(k)) for k in range(-reach, reach + 1)])
    weights = np.clip(weights, 0.0, None) / weights.clip(0.0, None).sum()
    padded = np.pad(array.astype(np.float32), ((reach, reach), (0, 0), (0, 0)), mode="edge")
    return sum(w * padded[k : k + len(array)] for k, w in enumerate(weights)).astype(np.float32)


def to_grid_of(exam: RealExam, volume: Volume, labels: np.ndarray) -> np.ndarray:
    """A label map on ``volume``'s grid (any array order) moved onto ``exam``'s grid in patient space (nearest)."""
    moving = volume.to_sitk(labels.astype(np.uint8))
    out = sitk.Resample(moving, exam.label_image(), sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return sitk.GetArrayFromImage(out)


def native_volume(exam: RealExam) -> Volume:
    """The exam in the files' own array order (rows, cols, slices as an MHA's z, y, x would be: slices along x),
    with the matching direction cosines: how such a series arrives from a converter, not how we sort it."""
    src = exam.volume
    if tuple(src.direction) != CANONICAL_DIRECTION:
        raise ValueError(f"{exam.name} is not in the canonical orientation")
    col, row, sl = src.spacing
    # x = slices, reversed (its direction is -x), y = columns, z = rows; start at the last plane
    array = np.ascontiguousarray(np.transpose(src.array, (1, 2, 0))[:, :, ::-1])
    origin = np.asarray(src.origin) + np.array([1.0, 0.0, 0.0]) * (src.shape[0] - 1) * sl
    return replace(src, array=array, spacing=(sl, col, row), origin=tuple(float(v) for v in origin),
                   direction=NATIVE_DIRECTION)
