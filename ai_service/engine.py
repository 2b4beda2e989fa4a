"""The inference engine: models loaded once, one fixed-signature compiled graph each, thread-safe.

segment (2.5D U-Net on every slice, probabilities smoothed as the version's card says) → name discs by anatomy on
the network canvas → map the named discs back to the input grid (bilinear probabilities, arg-max) → classify each
disc on the slices it covers (max over slices) → typed :class:`Findings` in input pixels.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from ai_service import preprocess as P  # noqa: E402
from ai_service.config import Settings  # noqa: E402
from ai_service.discs import DiscAssignment, anatomy_problem, assign_levels, discs_of, unread_levels  # noqa: E402
from ai_service.errors import InputError  # noqa: E402
from ai_service.findings import DiscFinding, Extent3D, Findings, ModelVersions  # noqa: E402
from ai_service.registry import CLS_MODEL, SEG_MODEL, ModelRef, ModelRegistry  # noqa: E402
from ai_service.runtime import Runner, SegServing, compiled_graph, input_shape, load_refiner, load_runner  # noqa: E402
from ai_service.volume import Canonical, Volume, canonical_of  # noqa: E402

log = logging.getLogger(__name__)


@dataclass
class Analysis:
    findings: Findings
    label_map: np.ndarray  # uint8 on the input grid, 201..205
    timings_ms: dict[str, float]


def compiled_segmenter(model, card: dict) -> tuple:
    """The fixed-signature compiled graph of a Keras segmentation version and how it is served (training's path
    to predicted masks)."""
    return compiled_graph(model, input_shape(SEG_MODEL, card)), SegServing.of(card)


def locate_discs(seg_fn, norm: np.ndarray, spacing: tuple[float, float, float], *, serving: SegServing,
                 refine: Runner | None = None, timings: dict[str, float] | None = None) -> DiscAssignment:
    """Segment, name and map back: the named disc masks on the canonical input grid.

    ``seg_fn`` runs the segmentation model (ONNX Runtime or the compiled graph, equal to 1e-4) on the version's
    canvas, whose probabilities are then smoothed as its card says; the classifier's training masks come from
    this same function.
    Levels are named on the network canvas (~1 mm pixels: a quarter of the voxels of a 512² series); then only the
    rectangle holding the named discs is mapped back: there the arg-max of the bilinearly mapped probabilities
    decides which voxels are disc, or, for a version that carries one, its ``refine`` network, which reads the
    input-grid image beside them; each disc voxel takes the name of the canvas disc under it (names grown by one
    canvas pixel so a boundary voxel finds its disc). ``timings`` gets the milliseconds of ``segment`` (canvas +
    network) and ``levels`` (naming + mapping back + refining).
    """
    t = time.perf_counter()
    probs, affine = canvas_probabilities(seg_fn, norm, spacing, serving)
    t_levels = time.perf_counter()
    named, region = named_region(probs, affine, norm.shape, spacing)
    label_map = np.zeros(norm.shape, dtype=np.uint8)
    if region is not None:
        roi, mapped = region
        r0, r1, c0, c1 = roi
        grown = np.stack([cv2.dilate(sl, _GROW) for sl in named.label_map])
        names = P.labels_to_grid(grown, affine, *norm.shape[1:], roi)
        if refine is None:
            disc = np.argmax(mapped, axis=-1) == 1
        else:
            disc = _refined(refine, norm[:, r0:r1, c0:c1], mapped, names)
        label_map[:, r0:r1, c0:c1] = np.where(disc, names, 0)
    if timings is not None:
        timings["segment"] = (t_levels - t) * 1e3
        timings["levels"] = (time.perf_counter() - t_levels) * 1e3
    return DiscAssignment(discs_of(label_map), label_map, named.vertebrae, named.sacrum_found, named.warnings)


def _refined(refine: Runner, image: np.ndarray, mapped: np.ndarray, names: np.ndarray) -> np.ndarray:
    """The refiner's disc decision on the voxels a named disc can take, one level at a time: its box (over the
    slices it reaches) grown by the refiner's reach, so each voxel reads the same neighbourhood as on the whole
    rectangle, but the vertebral bodies between the discs (about half of it) are not computed."""
    disc = np.zeros(names.shape, dtype=bool)
    reach = P.REFINER_DEPTH
    _, rows, cols = names.shape
    for level in np.unique(names[names > 0]):
        where = names == level
        s, r, c = (np.flatnonzero(where.any(axis=axes)) for axes in ((1, 2), (0, 2), (0, 1)))
        box = (slice(s[0], s[-1] + 1), slice(max(0, r[0] - reach), min(rows, r[-1] + 1 + reach)),
               slice(max(0, c[0] - reach), min(cols, c[-1] + 1 + reach)))
        disc[box] |= (refine(P.refine_features(image[box], mapped[box]))[..., 0] > 0) & where[box]
    return disc


def canvas_probabilities(seg_fn, norm: np.ndarray, spacing: tuple[float, float, float], serving: SegServing
                         ) -> tuple[np.ndarray, np.ndarray]:
    """The network's class probabilities on the version's canvas, smoothed as its card says, and the affine."""
    inputs, affine = P.seg_inputs(norm, spacing[1], spacing[2], serving.canvas, serving.min_field_mm)
    return P.smooth_probabilities(seg_fn(inputs), serving.slice_weight, serving.sigma_px), affine


def named_region(probs: np.ndarray, affine: np.ndarray, shape: tuple[int, int, int],
                 spacing: tuple[float, float, float]) -> tuple[DiscAssignment, tuple | None]:
    """Levels named on the canvas, and the input-grid rectangle holding them with the probabilities mapped onto it
    (``((r0, r1, c0, c1), probabilities)``; None when no disc was named): where the refiner works and trains."""
    canvas_mm = P.canvas_pixel_mm(affine, spacing[2])
    named = assign_levels(np.argmax(probs, axis=-1).astype(np.uint8), (spacing[0], canvas_mm, canvas_mm))
    roi = P.grid_roi(named.label_map, affine, shape[1], shape[2])
    if roi is None:
        return named, None
    return named, (roi, P.probabilities_to_grid(probs, affine, shape[1], shape[2], roi))


_GROW = np.ones((3, 3), np.uint8)


def _verdict(assignment: DiscAssignment, spacing: tuple[float, float, float]) -> tuple[str | None, list[str]]:
    """Why the named discs are not analysable (or None), and the warnings of an analysable read's unread levels.

    A version with a second read (``SegServing.retry``) reads an exam again on a wider field when the first read
    fails here, and keeps it only when it passes whole: small fields of view (a 221 mm exam magnified onto the
    canvas) lose their lowest disc at the fill-the-canvas scale the phantoms need, and an exam the first read
    passes is never read twice."""
    problem = anatomy_problem(assignment, spacing)
    return problem, [] if problem else unread_levels(assignment)


class InferenceEngine:
    """Load once, call :meth:`analyze` from any thread."""

    def __init__(self, settings: Settings):
        registry = ModelRegistry(settings.model_store)
        self.seg_ref: ModelRef = registry.resolve(SEG_MODEL, settings.seg_model)
        self.cls_ref: ModelRef = registry.resolve(CLS_MODEL, settings.cls_model)
        self.serving = SegServing.of(self.seg_ref.card)
        self.threshold = (
            settings.operating_threshold
            if settings.operating_threshold is not None
            else float(self.cls_ref.card.get("operating_threshold", 0.5))
        )
        t0 = time.perf_counter()
        onnx = settings.inference_runtime == "auto"
        self._seg, seg_runtime = load_runner(self.seg_ref, settings.inference_threads, onnx=onnx)
        self._cls, cls_runtime = load_runner(self.cls_ref, settings.inference_threads, onnx=onnx)
        self.runtimes = {"segmentation": seg_runtime, "classification": cls_runtime}
        refiner = load_refiner(self.seg_ref, settings.inference_threads, onnx=onnx)
        self._refine = refiner[0] if refiner else None
        if refiner:
            self.runtimes["refiner"] = refiner[1]
        self.load_seconds = time.perf_counter() - t0
        log.info("models loaded", extra={"seg": self.seg_ref.version, "cls": self.cls_ref.version,
                                          "runtimes": "/".join(self.runtimes.values()),
                                          "seconds": round(self.load_seconds, 2)})

    @property
    def versions(self) -> ModelVersions:
        return ModelVersions(self.seg_ref.version, self.cls_ref.version)

    def warm_up(self) -> None:
        """Trace and compile the graphs now, not on the first study."""
        self._seg(np.zeros((1, self.serving.canvas, self.serving.canvas, 3), np.float32))
        self._cls(np.zeros((1, P.CROP_SIZE, P.CROP_SIZE, 2), np.float32))
        if self._refine is not None:
            self._refine(np.zeros((1, 16, 16, P.REFINE_FEATURES), np.float32))

    def locate(self, norm: np.ndarray, spacing: tuple[float, float, float], timings=None,
               serving: SegServing | None = None) -> DiscAssignment:
        return locate_discs(self._seg, norm, spacing, serving=serving or self.serving, refine=self._refine,
                            timings=timings)

    def analyze(self, volume: Volume) -> Analysis:
        timings: dict[str, float] = {}
        t = time.perf_counter()
        canon = canonical_of(volume)
        norm = P.normalize_volume(canon.forward(volume.array))
        spacing = canon.spacing  # (slice, row, col) mm
        timings["prepare"] = (time.perf_counter() - t) * 1e3

        assignment = self.locate(norm, spacing, timings)
        if not assignment.discs and assignment.vertebrae == 0 and not assignment.sacrum_found:
            raise InputError("no lumbar spine was found in this series (is it a sagittal lumbar spine MRI?)")

        problem, unread = _verdict(assignment, spacing)
        retry = self.serving.retry() if problem or unread else None
        if retry is not None:  # the version's second read on a wider field (card preprocess.retry_field_mm)
            second: dict[str, float] = {}
            again = self.locate(norm, spacing, second, serving=retry)
            for k, v in second.items():
                timings[k] = timings.get(k, 0.0) + v
            if _verdict(again, spacing) == (None, []):
                log.info("read on the retry field", extra={"series": volume.series_instance_uid,
                                                           "field_mm": retry.min_field_mm})
                assignment, problem, unread = again, None, []
        if problem:  # never confident wrong levels: no disc is reported, the reason is
            log.info("not analysable", extra={"series": volume.series_instance_uid, "reason": problem})
            assignment = DiscAssignment([], np.zeros_like(assignment.label_map), assignment.vertebrae,
                                        assignment.sacrum_found, assignment.warnings)
        t = time.perf_counter()
        discs = self._classify(volume, canon, norm, assignment.discs, spacing)
        timings["classify"] = (time.perf_counter() - t) * 1e3

        findings = Findings(
            models=self.versions,
            operating_threshold=self.threshold,
            discs=discs,
            shape=volume.shape,
            spacing=tuple(float(v) for v in volume.spacing),
            study_instance_uid=volume.study_instance_uid,
            series_instance_uid=volume.series_instance_uid,
            frame_of_reference_uid=volume.frame_of_reference_uid,
            source=volume.kind,
            warnings=volume.warnings + assignment.warnings + unread,
            not_analysable=problem,
        )
        return Analysis(findings, canon.inverse(assignment.label_map), timings)

    def _classify(self, volume, canon, norm, named, spacing) -> list[DiscFinding]:
        crops, owners = disc_crops(norm, named, spacing)
        probs = self._cls(crops)[:, 0] if len(crops) else np.zeros(0)

        voxel_mm3 = float(np.prod(spacing))
        out = []
        for i, disc in enumerate(named):
            local, (s0, r0, c0) = disc.mask[disc.box], (b.start for b in disc.box)
            mine = [(float(p), s) for p, (j, s) in zip(probs, owners) if j == i]
            p_disc, p_slice = max(mine)
            areas = local.sum(axis=(1, 2))
            key = p_slice if p_disc >= self.threshold else s0 + int(np.argmax(areas))
            ends = sorted(_input_slice(canon, s0 + int(t), volume.shape) for t in (0, len(areas) - 1))
            in_slice = _input_slice(canon, key, volume.shape)
            out.append(
                DiscFinding(
                    level=disc.level,
                    probability=round(p_disc, 6),
                    herniation=p_disc >= self.threshold,
                    slice_index=in_slice,
                    box=_box_to_input(canon, _bbox(local[key - s0], r0, c0), volume.shape),
                    extent=Extent3D(
                        first_slice=ends[0],
                        last_slice=ends[1],
                        box=_box_to_input(canon, _bbox(local.any(axis=0), r0, c0), volume.shape),
                        volume_mm3=round(float(areas.sum()) * voxel_mm3, 1),
                    ),
                    sop_instance_uid=volume.sop_instance_uids[in_slice] if volume.sop_instance_uids else None,
                    frame_number=volume.frame_numbers[in_slice] if volume.frame_numbers else None,
                )
            )
        return out


def disc_crops(norm: np.ndarray, named: list, spacing) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The classifier's inputs for named discs: a crop per classified section, and (disc index, slice) per crop.
    Serving and the training of real negatives (``pipelines.training.real_cls``) both cut them here.

    A thin-slice series (1 mm) is read as slabs of about :data:`preprocess.CLS_SLAB_MM` (the mean of
    consecutive slices, the mask where most of them hold the disc): the classifier learnt 3-5 mm sections, and
    on 1 mm slices its disc maximum ran over four times the noisy sections (real healthy exams: 8 calls as given,
    0 on their 4 mm resamplings). The owner slice of a slab is its slice with the most disc.
    """
    crops, owners = [], []
    per_slab = P.slab_slices(spacing[0])
    for i, disc in enumerate(named):
        local, (s0, r0, c0) = disc.mask[disc.box], (b.start for b in disc.box)
        read = P.classified_slices(local)
        centre, axis = P.disc_pose(local, spacing[1], spacing[2], read)
        centre = centre + (r0, c0)
        for slab in P.slabs(read, per_slab):
            section = s0 + slab
            image, mask = norm[section].mean(axis=0), disc.mask[section].mean(axis=0) >= 0.5  # one slice: itself
            crops.append(P.disc_crop(image, mask, centre, axis, spacing[1], spacing[2]))
            owners.append((i, int(section[np.argmax(local[slab].sum(axis=(1, 2)))])))
    if not crops:
        return np.zeros((0, P.CROP_SIZE, P.CROP_SIZE, 2), np.float32), owners
    return np.stack(crops), owners


def _bbox(mask2d: np.ndarray, row0: int = 0, col0: int = 0) -> tuple[int, int, int, int]:
    """Pixel-edge box (x0, y0, x1, y1) of a 2D mask whose top-left pixel sits at (row0, col0)."""
    rows = np.nonzero(mask2d.any(axis=1))[0] + row0
    cols = np.nonzero(mask2d.any(axis=0))[0] + col0
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _input_slice(canon: Canonical, canon_slice: int, input_shape) -> int:
    if canon.perm[0] != 0:
        raise InputError("the slice axis must be the first axis of the input grid")
    return input_shape[0] - 1 - canon_slice if canon.flips[0] else canon_slice


def _box_to_input(canon: Canonical, box, input_shape) -> tuple[int, int, int, int]:
    """Canonical (col, row) pixel-edge box → input-grid pixel-edge box on the same slice."""
    c0, r0, c1, r1 = box
    canon_rows = input_shape[canon.perm[1]]
    canon_cols = input_shape[canon.perm[2]]
    if canon.flips[1]:
        r0, r1 = canon_rows - r1, canon_rows - r0
    if canon.flips[2]:
        c0, c1 = canon_cols - c1, canon_cols - c0
    if canon.perm[1] == 1:  # canonical rows are input rows
        return int(c0), int(r0), int(c1), int(r1)
    return int(r0), int(c0), int(r1), int(c1)  # rows/columns swapped
