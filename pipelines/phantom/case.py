"""generate_case: one deterministic synthetic sagittal T2 lumbar series with labels and truth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from pydicom.uid import generate_uid

from ai_service.labels import LEVELS, VERTEBRAE, is_disc, vertebra_label
from . import rng as R, tissues as T
from .anatomy import sample_anatomy
from .dicom import protocol
from .herniation import keep_inside, sample_herniations
from .intensity import finish, partial_volume, sample_contrast, texture_field
from .profile import PhantomProfile, resolve_profile
from .render import render
from .scanner import sample_acquisition
from .truth import level_truth

# Column axis -> posterior (+y), row axis -> inferior (-z), slice axis -> patient right (-x); row-major with
# the columns of the matrix being the directions of the x, y and z index axes (SimpleITK convention).
DIRECTION: tuple[float, ...] = (0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0)
UID_PREFIX = "1.2.826.0.1.3680043.8.498."   # pydicom's root: UIDs are derived (hashed) from the seed


@dataclass
class PhantomCase:
    case_id: str
    seed: int
    image: np.ndarray            # uint16 (slices, rows, cols)
    labels: np.ndarray           # uint8, same shape
    spacing: tuple[float, float, float]   # (col, row, slice) mm
    origin: tuple[float, float, float]    # LPS mm of voxel (0, 0, 0)
    direction: tuple[float, ...]
    truth: dict
    herniation_mask: np.ndarray  # bool, same shape: voxels of herniated disc material (per-slice training truth)

    def to_sitk(self) -> tuple[sitk.Image, sitk.Image]:
        """(image, labels) as SimpleITK images sharing this case's geometry."""
        out = []
        for array in (self.image, self.labels):
            img = sitk.GetImageFromArray(array)
            img.SetSpacing(self.spacing)
            img.SetOrigin(self.origin)
            img.SetDirection(self.direction)
            out.append(img)
        return out[0], out[1]


def case_uid(seed: int, case_id: str, what: str) -> str:
    """Deterministic UID for one object of one case."""
    return generate_uid(prefix=UID_PREFIX, entropy_srcs=["LDH Assist phantom", str(seed), case_id, what])


def _majority(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Majority of three; the middle one when all differ."""
    return np.where(a == c, a, b)


def generate_case(seed: int, *, herniation_rate: float = 0.35, profile: str | PhantomProfile = "default",
                  case_id: str | None = None) -> PhantomCase:
    """Generate one case. Same arguments -> identical arrays and truth."""
    if not 0.0 <= herniation_rate <= 1.0:
        raise ValueError(f"herniation_rate must be within [0, 1], got {herniation_rate}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    prof = resolve_profile(profile)
    case_id = case_id or f"phantom_{seed}"
    anat = sample_anatomy(R.stream(seed, "anatomy"), prof)
    acq = sample_acquisition(R.stream(seed, "scanner"), prof, anat)
    g = acq.grid
    s_top, s_bottom = g.s0 - g.spacing / 2, g.s0 + (g.rows - 0.5) * g.spacing
    present = {}
    for i, level in enumerate(LEVELS):
        present[level] = s_top < float(anat.disc_by_level(i).centre[1]) < s_bottom
    anat.herniations = sample_herniations(R.stream(seed, "herniation"), prof, anat, herniation_rate, present)
    keep_inside(anat, anat.herniations, s_top, s_bottom)
    contrast = sample_contrast(R.stream(seed, "contrast"), prof, anat)

    tex_rng = R.stream(seed, "texture")
    n, m = acq.n_slices, prof.sub_slices
    volume = np.empty((n, g.rows, g.cols), np.float32)
    labels = np.empty((n, g.rows, g.cols), np.uint8)
    herniated = np.empty((n, g.rows, g.cols), bool)
    offsets = (np.arange(m) - (m - 1) / 2) * acq.slice_thickness / m
    for k, r in enumerate(acq.slice_positions()):
        subs = [render(anat, g, float(r + o)) for o in offsets]
        volume[k] = partial_volume(subs, contrast, texture_field(tex_rng, g.rows, g.cols, g.spacing))
        lab = [T.LABEL_LUT[s] for s in subs]
        her = [T.HERNIATION_LUT[s] for s in subs]
        if m == 3:
            labels[k] = _majority(*lab)
            herniated[k] = _majority(*her)
        else:
            mid = m // 2
            labels[k], herniated[k] = lab[mid], her[mid]
    herniated &= (labels >= 200)
    image = finish(volume, labels != 0, contrast, R.stream(seed, "noise"))

    degenerated = {level: anat.disc_by_level(i).degenerated for i, level in enumerate(LEVELS)}
    levels = level_truth(labels, herniated, anat.herniations, degenerated)
    present_labels = set(np.unique(labels).tolist())
    truth = {
        "schema": 1,
        "case_id": case_id,
        "seed": int(seed),
        "profile": prof.name,
        "shape": [int(v) for v in labels.shape],
        "spacing": list(acq.spacing),
        "origin": list(acq.origin),
        "direction": list(DIRECTION),
        "slice_thickness": acq.slice_thickness,
        "snr": round(contrast.snr, 3),
        "random_contrast": contrast.random,
        "vertebrae_in_fov": [v for v in VERTEBRAE if vertebra_label(v) in present_labels],
        "t12_l1_disc_in_fov": any(is_disc(v) and v == 200 for v in present_labels),
        "fov_top": acq.fov_rule,
        "lordosis_deg": round(anat.lordosis_deg, 2),
        "sacral_slope_deg": round(anat.sacral_slope_deg, 2),
        "midline_slice": round(float(-acq.r0 / acq.slice_spacing), 3),
        "slice_direction": "patient right (left herniations are at lower slice indices)",
        "study_instance_uid": case_uid(seed, case_id, "study"),
        "series_instance_uid": case_uid(seed, case_id, "series"),
        "frame_of_reference_uid": case_uid(seed, case_id, "frame"),
        "patient_id": f"PH{seed:010d}",
        "protocol": protocol(seed),
        "levels": levels,
    }
    return PhantomCase(case_id, int(seed), image, labels, acq.spacing, acq.origin, DIRECTION, truth, herniated)
