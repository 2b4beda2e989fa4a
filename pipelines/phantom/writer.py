"""write_case / generate_dataset: a case directory with MHA volumes, truth.json, a DICOM series and PNGs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
import SimpleITK as sitk

from . import rng as R
from .case import PhantomCase, generate_case
from .dicom import write_series
from .profile import PhantomProfile, resolve_profile

FORMATS = ("mha", "dicom", "png")


def display_window(image: np.ndarray) -> tuple[float, float]:
    """(low, high) robust percentiles of the volume, on a deterministic subsample (fast)."""
    sample = image[:, ::2, ::2]
    lo, hi = np.percentile(sample, [0.5, 99.5])
    return float(lo), float(max(hi, lo + 1.0))


def _check_formats(formats: Iterable[str]) -> tuple[str, ...]:
    out = tuple(f.strip().lower() for f in formats if f.strip())
    bad = [f for f in out if f not in FORMATS]
    if bad:
        raise ValueError(f"unknown format(s) {', '.join(bad)}; expected some of {', '.join(FORMATS)}")
    return out


def write_case(case: PhantomCase, out_dir: Path, formats: Iterable[str] = FORMATS) -> Path:
    """Write one case into ``out_dir`` (created); returns ``out_dir``. truth.json is always written."""
    formats = _check_formats(formats)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "truth.json").write_text(json.dumps(case.truth, indent=2) + "\n", encoding="utf-8")
    lo, hi = display_window(case.image)
    if "mha" in formats:
        image, labels = case.to_sitk()
        sitk.WriteImage(image, str(out_dir / "image.mha"), True)
        sitk.WriteImage(labels, str(out_dir / "labels.mha"), True)
    if "dicom" in formats:
        write_series(case, out_dir / "dicom", ((lo + hi) / 2, hi - lo))
    if "png" in formats:
        png = out_dir / "png"
        png.mkdir(exist_ok=True)
        scaled = np.clip((case.image.astype(np.float32) - lo) * (255.0 / (hi - lo)), 0, 255)
        for k, plane in enumerate(np.rint(scaled).astype(np.uint8)):
            cv2.imwrite(str(png / f"slice_{k:03d}.png"), plane)
    return out_dir


def generate_dataset(out: Path, count: int, seed: int, formats: Iterable[str] = FORMATS,
                     herniation_rate: float = 0.35, profile: str | PhantomProfile = "default",
                     progress=None) -> list[Path]:
    """Generate ``count`` cases into out/case_0000 ...; case i's seed is derived from (seed, i).

    Also writes out/manifest.json (seeds and per-level truth summary). ``progress(path, case)`` is called
    after each case is written.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    formats = _check_formats(formats)
    prof = resolve_profile(profile)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths, manifest = [], []
    for i in range(count):
        case_id = f"case_{i:04d}"
        case = generate_case(R.derive_seed(seed, i), herniation_rate=herniation_rate, profile=prof,
                             case_id=case_id)
        path = write_case(case, out / case_id, formats)
        paths.append(path)
        manifest.append({"case_id": case_id, "seed": case.seed, "shape": case.truth["shape"],
                         "herniated_levels": [lv["level"] for lv in case.truth["levels"] if lv["herniation"]],
                         "present_levels": [lv["level"] for lv in case.truth["levels"] if lv["present"]]})
        if progress is not None:
            progress(path, case)
    summary = {"seed": int(seed), "count": int(count), "profile": prof.name, "herniation_rate": herniation_rate,
               "formats": list(formats), "cases": manifest}
    (out / "manifest.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return paths
