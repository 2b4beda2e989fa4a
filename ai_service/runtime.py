"""Running a registered model the fastest exact way this machine has: ONNX Runtime, else a compiled XLA graph.

A model version may carry ``model.onnx`` beside ``model.keras``: the same weights exported when the version was
saved, checked against Keras on probe batches of two sizes (output shapes, dtypes and values; the largest difference
is in the card). ONNX Runtime ran our U-Net in ~0.85x and the small classifier in ~0.3x the time of the
XLA-compiled TensorFlow graph on this 2-core CPU. A version without an ONNX file, or whose file does not match the hash in its card, runs on TensorFlow.
A segmentation version may also carry a disc refiner (``refiner.keras`` + ``refiner.onnx``, card ``refiner``) that
runs on input-grid rectangles of any size, loaded the same way.
Both paths are thread-safe and return NumPy arrays.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ai_service import preprocess as P
from ai_service.errors import ModelError
from ai_service.registry import CLS_MODEL, SEG_MODEL, ModelRef, atomic_write_text

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
ONNX_OPSET = 17
MAX_EXPORT_DIFF = 1e-4  # an export differing more than this from Keras on the probe batch is refused

Runner = Callable[[np.ndarray], np.ndarray]
REFINER_FILE = "refiner.keras"
REFINER_ONNX_FILE = "refiner.onnx"
REFINER_SHAPE = (None, None, P.REFINE_FEATURES)  # any rectangle of the input grid


@dataclass(frozen=True)
class SegServing:
    """How a segmentation version is served, from its card: canvas side, the smallest field the canvas spans,
    and probability smoothing.

    Properties of the version, not of the engine, so a rollback serves the old version as it was measured.
    Cards from before they were recorded: a 256² canvas the field of view fills, no smoothing.
    """

    canvas: int = P.SEG_SIZE
    slice_weight: float = 0.0  # share each neighbouring slice gets in a slice's probabilities
    sigma_px: float = 0.0  # in-plane Gaussian on the canvas probabilities, canvas pixels
    min_field_mm: float = 0.0  # the canvas spans at least this many mm (smaller fields are padded, not magnified)
    retry_field_mm: float = 0.0  # read again on a canvas spanning at least this when the anatomy check fails (0: no)

    @classmethod
    def of(cls, card: Mapping[str, Any]) -> SegServing:
        post, pre = card.get("postprocess", {}), card.get("preprocess", {})
        return cls(int(card.get("architecture", {}).get("canvas", P.SEG_SIZE)),
                   float(post.get("slice_weight", 0.0)), float(post.get("sigma_px", 0.0)),
                   float(pre.get("min_field_mm", 0.0)), float(pre.get("retry_field_mm", 0.0)))

    def retry(self) -> SegServing | None:
        """The serving of the second read, or None when the version has none."""
        if self.retry_field_mm <= self.min_field_mm:
            return None
        return replace(self, min_field_mm=self.retry_field_mm, retry_field_mm=0.0)


def input_shape(name: str, card: Mapping[str, Any]) -> tuple[int, ...]:
    """The one float32 input of a registered model version, (batch, *shape) without the batch."""
    if name == SEG_MODEL:
        side = SegServing.of(card).canvas
        return (side, side, 3)
    if name == CLS_MODEL:
        return (P.CROP_SIZE, P.CROP_SIZE, 2)
    raise ModelError(f"unknown model name {name!r}")


def compiled_graph(model, shape: tuple[int | None, ...]) -> Runner:
    """A fixed-signature TensorFlow graph of ``model`` for inputs (batch, *shape): XLA-compiled where the shape is
    fixed; a free size (``None``, the refiner) would recompile XLA for every new rectangle, so that graph is not."""
    import tensorflow as tf

    fn = tf.function(
        lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec([None, *shape], tf.float32)],
        jit_compile=None not in shape,
        reduce_retracing=True,
    )
    return lambda x: fn(x).numpy()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def probe_batches(shape: tuple[int | None, ...], seed: int = 0) -> list[np.ndarray]:
    """Inputs an export is checked on: two batch sizes, and two different sizes (one odd) wherever ``shape`` leaves
    a size free, so an export that fixed a size or added an axis cannot pass by broadcasting."""
    rng = np.random.default_rng(seed)
    return [rng.random((batch, *(free[i % 2] if n is None else n for i, n in enumerate(shape))), dtype=np.float32)
            for batch, free in ((4, (40, 40)), (1, (23, 57)))]


def check_export(onnx_run: Runner, keras_run: Runner, probes: list[np.ndarray]) -> float:
    """The largest difference between an export and its Keras model over ``probes``; ModelError naming the input
    when the export cannot run an input, or the outputs differ in shape or dtype (checked first: a difference
    computed with broadcasting cannot see a wrong shape) or by more than MAX_EXPORT_DIFF."""
    worst = 0.0
    for x in probes:
        try:
            got = np.asarray(onnx_run(x))
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own error types
            raise ModelError(f"ONNX export fails on input {list(x.shape)}: {exc}; not shipped") from exc
        want = np.asarray(keras_run(x))
        if got.shape != want.shape or got.dtype != want.dtype:
            raise ModelError(f"ONNX export gives {got.dtype}{list(got.shape)} where Keras gives "
                             f"{want.dtype}{list(want.shape)} for input {list(x.shape)}; not shipped")
        diff = float(np.abs(got - want).max())
        if diff > MAX_EXPORT_DIFF:
            raise ModelError(f"ONNX export differs from Keras by {diff:.2e} for input {list(x.shape)}; not shipped")
        worst = max(worst, diff)
    return worst


def export_onnx(model, folder: Path, shape: tuple[int | None, ...], seed: int = 0, *, file: str = ONNX_FILE
                ) -> dict[str, Any]:
    """Write ``folder/file`` for inputs (batch, *shape), checked on :func:`probe_batches`; return the card entry
    (hash, probe inputs, largest difference). A failed check leaves no file. ``None`` in ``shape`` leaves that size
    free (the refiner runs on rectangles of any size)."""
    import tensorflow as tf
    import tf2onnx
    from tf2onnx.optimizer import _get_optimizers

    # tf2onnx 1.17's transpose optimizer rewrites nodes in an order set by Python's per-process string hash; in some
    # orders (PYTHONHASHSEED 2, 4, 8 for the trained refiner) it folds the last NCHW->NHWC transpose into a Reshape
    # that adds a leading axis, (B, H, W, 1) -> (1, B, H, W, 1). Without it every process exports the right shapes,
    # and ONNX Runtime removes the transposes itself when it loads the model.
    optimizers = {k: v for k, v in _get_optimizers().items() if k != "optimize_transpose"}
    spec = (tf.TensorSpec([None, *shape], tf.float32, name="x"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=ONNX_OPSET, optimizers=optimizers)
    path = Path(folder) / file
    path.write_bytes(proto.SerializeToString())
    probes = probe_batches(shape, seed)
    try:
        diff = check_export(_onnx_session(path, threads=1), lambda x: model(x, training=False).numpy(), probes)
    except BaseException:
        path.unlink()
        raise
    return {"file": file, "sha256": _sha256(path), "opset": ONNX_OPSET, "probe_max_abs_diff": diff,
            "probe_inputs": [list(x.shape) for x in probes]}


def add_onnx_export(ref: ModelRef) -> dict[str, Any]:
    """Export a version saved without ONNX and record it in its card (the one addition a version may receive)."""
    if ref.card.get("onnx"):
        raise ModelError(f"{ref.name}:{ref.version} already has an ONNX export")
    entry = export_onnx(load_keras(ref), ref.path, input_shape(ref.name, ref.card))
    atomic_write_text(ref.path / "card.json", json.dumps(ref.card | {"onnx": entry}, indent=2, sort_keys=True) + "\n")
    return entry


def _onnx_session(path: Path, threads: int) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]


def load_runner(ref: ModelRef, threads: int, *, onnx: bool = True) -> tuple[Runner, str]:
    """The runner for a registered model version and the name of the path it uses (``onnxruntime`` / ``xla``).

    ``onnx=False`` forces TensorFlow (``LDH_INFERENCE_RUNTIME=tensorflow``).
    """
    return _runner(ref, None, ref.card.get("onnx"), input_shape(ref.name, ref.card), threads, onnx)


def load_refiner(ref: ModelRef, threads: int, *, onnx: bool = True) -> tuple[Runner, str] | None:
    """The input-grid disc refiner a segmentation version carries (card ``refiner``) and its runtime, as
    :func:`load_runner`; None when the version has none."""
    entry = ref.card.get("refiner")
    if not entry:
        return None
    return _runner(ref, entry["file"], entry.get("onnx"), REFINER_SHAPE, threads, onnx)


def _runner(ref: ModelRef, keras_file: str | None, entry: Mapping[str, Any] | None, shape: tuple[int | None, ...],
            threads: int, onnx: bool) -> tuple[Runner, str]:
    path = ref.path / entry["file"] if entry else None
    if onnx and path is not None and path.exists():
        if _sha256(path) != entry.get("sha256"):
            log.warning("ONNX file does not match its model card; using TensorFlow",
                        extra={"model": f"{ref.name}:{ref.version}", "file": path.name})
        else:
            try:
                return _onnx_session(path, threads), "onnxruntime"
            except ImportError:
                log.info("onnxruntime not installed; using TensorFlow", extra={"model": f"{ref.name}:{ref.version}"})
    _tensorflow_threads(threads)
    return compiled_graph(load_keras(ref, keras_file), shape), "xla" if None not in shape else "tensorflow"


def _tensorflow_threads(threads: int) -> None:
    """TensorFlow is imported only when a model runs on it (a service on ONNX Runtime never pays its ~1 GB)."""
    import tensorflow as tf

    if tf.config.threading.get_intra_op_parallelism_threads() != threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        except RuntimeError:  # TensorFlow already initialised in this process: keep its setting
            log.info("TensorFlow already initialised; intra-op threads unchanged")


def load_keras(ref: ModelRef, file: str | None = None):
    """A version's Keras model: the main one, or ``file`` in its folder (the refiner)."""
    import keras

    path = ref.path / file if file else ref.model_file
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"model {ref.name}:{ref.version} could not be loaded from {path}: {exc}") from exc
