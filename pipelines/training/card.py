"""Writing a trained model into the registry as an immutable version with its model card."""

from __future__ import annotations

import json
import platform
import shlex
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ai_service.registry import ModelRegistry, atomic_write_text
from ai_service.runtime import REFINER_FILE, REFINER_ONNX_FILE, REFINER_SHAPE, export_onnx, input_shape

DISCLAIMER = "trained on synthetic phantoms only, not for clinical use"


def new_version(prefix: str) -> str:
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"


def save_model(model, root: Path, name: str, version: str, card: dict[str, Any], *, production: bool,
               refiner=None) -> Path:
    """Save ``model`` as ``root/name/version`` (refusing to overwrite) and optionally alias it production.

    ``refiner``: a segmentation version's input-grid disc refiner, saved beside the U-Net (``card["refiner"]``
    describes it; its file names and ONNX export are added here)."""
    import keras
    import tensorflow as tf

    path = Path(root) / name / version
    if path.exists():
        raise FileExistsError(f"model version {name}:{version} already exists; versions are immutable")
    staging = path.with_name(f".{version}.saving")  # the version appears whole (rename) or not at all
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        # uncompiled copy: no optimizer state or training-only loss functions in the shipped file (clone_model
        # would try to re-compile with the custom loss and fail)
        shipped = type(model).from_config(model.get_config())
        shipped.set_weights(model.get_weights())
        shipped.save(staging / "model.keras")
        onnx = export_onnx(shipped, staging, input_shape(name, card))  # the serving engine's faster exact path
        if refiner is not None:
            refiner.save(staging / REFINER_FILE)
            card = card | {"refiner": card.get("refiner", {}) | {
                "file": REFINER_FILE,
                "onnx": export_onnx(refiner, staging, REFINER_SHAPE, file=REFINER_ONNX_FILE),
                "parameters": int(refiner.count_params())}}
        full = {
            "name": name,
            "version": version,
            "intended_use": f"Research and product development only; {DISCLAIMER}.",
            "disclaimer": DISCLAIMER,
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": shlex.join(["ldh", *sys.argv[1:]]) if Path(sys.argv[0]).name == "ldh" else shlex.join(sys.argv),
            "software": {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__},
            "parameters": int(model.count_params()),
            "onnx": onnx,
            **card,
        }
        atomic_write_text(staging / "card.json", json.dumps(full, indent=2, sort_keys=True) + "\n")
        staging.rename(path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if production:
        ModelRegistry(root).set_alias(name, "production", version)
    return path


SOURCE_ONLY = ("name", "version", "created_utc", "command", "software", "parameters",
               "onnx", "refiner")  # a refiner learnt one serving's probabilities: a derived version drops it
# (intended use and disclaimer stay: the weights, and what they were trained on, are the source's)


def derive_seg_version(root: Path, source: str, version: str, *, canvas: int, slice_weight: float, sigma_px: float,
                       min_field_mm: float = 0.0, retry_field_mm: float = 0.0, production: bool) -> Path:
    """Publish a segmentation version's weights as a new version served another way (canvas side, smallest field
    the canvas spans, probability smoothing, a second read on a wider field): a serving change goes through the
    registry like a retrained model, so it can be compared with ``ldh evaluate``, promoted and rolled back. The
    card keeps the source's training record under ``derived_from``; its validation figures were measured with the
    source's serving. A refiner learnt one serving's probabilities, so it is dropped, unless only the second read
    changes: the first read, the one it learnt, is then served as before."""
    from ai_service.registry import SEG_MODEL
    from ai_service.runtime import REFINER_FILE, SegServing, load_keras

    ref = ModelRegistry(root).resolve(SEG_MODEL, source)
    card = {k: v for k, v in ref.card.items() if k not in SOURCE_ONLY}
    card["architecture"] = card.get("architecture", {}) | {"canvas": canvas}
    card["preprocess"] = {"min_field_mm": min_field_mm, "retry_field_mm": retry_field_mm}
    card["postprocess"] = {"slice_weight": slice_weight, "sigma_px": sigma_px}
    first_read = SegServing(canvas, slice_weight, sigma_px, min_field_mm)
    refiner = None
    if ref.card.get("refiner") and first_read == replace(SegServing.of(ref.card), retry_field_mm=0.0):
        refiner = load_keras(ref, REFINER_FILE)
        card["refiner"] = {k: v for k, v in ref.card["refiner"].items() if k not in ("onnx", "parameters")}
    card["derived_from"] = {"version": f"{SEG_MODEL}:{ref.version}", "command": ref.card.get("command"),
                            "metrics": card.pop("metrics", {}),
                            "note": "same weights; only how they are served differs"}
    card["metrics"] = {}
    return save_model(load_keras(ref), root, SEG_MODEL, version, card, production=production, refiner=refiner)


def refined_seg_version(root: Path, source: str, version: str, refiner, refiner_card: dict[str, Any], *,
                        production: bool) -> Path:
    """Publish a segmentation version's U-Net, served as before, with an input-grid disc refiner trained on its
    output (``ldh train refine``); like a derived version, the card keeps the source's record under
    ``derived_from``."""
    from ai_service.registry import SEG_MODEL
    from ai_service.runtime import load_keras

    ref = ModelRegistry(root).resolve(SEG_MODEL, source)
    card = {k: v for k, v in ref.card.items() if k not in SOURCE_ONLY}
    card["derived_from"] = {"version": f"{SEG_MODEL}:{ref.version}", "command": ref.card.get("command"),
                            "metrics": card.pop("metrics", {}),
                            "note": "same U-Net weights and serving; adds the input-grid disc refiner"}
    card["metrics"] = refiner_card.pop("metrics", {})
    card["refiner"] = refiner_card
    return save_model(load_keras(ref), root, SEG_MODEL, version, card, production=production, refiner=refiner)
