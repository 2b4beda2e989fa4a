"""Turn phantom cases into network samples through the *serving* preprocessing (ai_service.preprocess).

A case goes through the same Volume → canonical → normalise path as a study at inference time; only the
targets come from the phantom's ground truth.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ai_service import labels as L
from ai_service import preprocess as P
from ai_service.discs import NamedDisc
from ai_service.registry import ModelRef
from ai_service.volume import Volume, canonical_of
from pipelines.phantom import PhantomCase, generate_case
from pipelines.phantom.profile import resolve_profile

MIN_HERNIATION_MM2 = 2.0  # a slice shows the herniation when it cuts at least this much herniated material


@dataclass
class CanonicalCase:
    norm: np.ndarray  # float32 (S, R, C)
    labels: np.ndarray  # uint8 (S, R, C)
    herniated: np.ndarray  # bool (S, R, C)
    spacing: tuple[float, float, float]  # (slice, row, col) mm
    truth: dict


def case_seed(seed: int, index: int) -> int:
    """Seed of case ``index`` of a dataset with base ``seed`` (kept apart from the phantom's own derivation)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def canonical_case(case: PhantomCase) -> CanonicalCase:
    volume = Volume(case.image.astype(np.float32), case.spacing, case.origin, case.direction, "mha")
    canon = canonical_of(volume)
    return CanonicalCase(
        P.normalize_volume(canon.forward(volume.array)),
        canon.forward(case.labels),
        canon.forward(case.herniation_mask),
        canon.spacing,
        case.truth,
    )


def seg_input_bytes(x: np.ndarray) -> np.ndarray:
    """U-Net canvas inputs (float, 0…1 once clipped) as the uint8 0…255 that samples are kept in (a quarter of the
    memory; training divides by 255 again)."""
    return (np.clip(x, 0, 1) * 255).round().astype(np.uint8)


def seg_samples(cc: CanonicalCase, canvas: int = P.SEG_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(slices, canvas, canvas, 3) uint8 inputs and (slices, canvas, canvas, classes) uint8 soft targets."""
    x, affine = P.seg_inputs(cc.norm, cc.spacing[1], cc.spacing[2], canvas)
    y = P.seg_targets(P.seg_classes(cc.labels), affine, canvas)
    return seg_input_bytes(x), y


def cls_samples(cc: CanonicalCase, discs: list[NamedDisc], rng: np.random.Generator | None = None
                ) -> tuple[np.ndarray, np.ndarray, list]:
    """Crops (N, CROP, CROP, 2) float16, per-slice herniation labels (N,), and (disc, slice, truth) per crop.

    The disc masks are the *segmentation model's* named discs (``discs``, from
    :func:`ai_service.engine.locate_discs` as at serving time); each predicted disc takes its truth from the
    phantom disc it overlaps most, so the classifier learns to read herniations from the image even where the
    predicted mask misses them. With ``rng`` the masks are also jittered (dilated/eroded).
    """
    crops, ys, meta = [], [], []
    pixel_mm2 = cc.spacing[1] * cc.spacing[2]
    truth = {lv["level"]: bool(lv["herniation"]) for lv in cc.truth["levels"]}
    for disc in discs:
        overlaps = {lv: int((disc.mask & (cc.labels == L.disc_label(lv))).sum()) for lv in L.LEVELS}
        level = max(overlaps, key=overlaps.get)
        true_mask = cc.labels == L.disc_label(level) if overlaps[level] else np.zeros_like(disc.mask)
        herniated = cc.herniated & true_mask
        mask = _jitter(disc.mask, rng) if rng is not None else disc.mask
        read = P.classified_slices(mask)
        centre, axis = P.disc_pose(mask, cc.spacing[1], cc.spacing[2], read)
        for s in read:
            crops.append(P.disc_crop(cc.norm[s], mask[s], centre, axis, cc.spacing[1], cc.spacing[2]))
            ys.append(float(herniated[s].sum() * pixel_mm2 >= MIN_HERNIATION_MM2))
            meta.append((disc.level, int(s), bool(overlaps[level]) and truth[level]))
    if not crops:
        return np.zeros((0, P.CROP_SIZE, P.CROP_SIZE, 2), np.float16), np.zeros(0, np.float32), []
    return np.stack(crops).astype(np.float16), np.asarray(ys, np.float32), meta


def _jitter(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    import cv2

    k = np.ones((3, 3), np.uint8)
    op = rng.integers(0, 3)
    out = mask.astype(np.uint8)
    if op == 1:
        out = np.stack([cv2.dilate(m, k) for m in out])
    elif op == 2:
        out = np.stack([cv2.erode(m, k) for m in out])
    return out.astype(bool) if out.any() else mask


def _make(args) -> tuple:
    seed, index, rate, profile, changes, kind, canvas = args
    if changes:
        profile = resolve_profile(profile).with_(**changes)
    cc = canonical_case(generate_case(case_seed(seed, index), herniation_rate=rate, profile=profile))
    return seg_samples(cc, canvas) if kind == "seg" else cc


@dataclass
class ClsData:
    x: np.ndarray  # crops
    y: np.ndarray  # per-slice label
    disc: np.ndarray  # disc id per crop ("case:level")
    disc_y: np.ndarray  # disc-level truth per crop (the phantom's herniation flag)


def build_seg(seed: int, count: int, *, canvas: int = P.SEG_SIZE, cache: Path | None = None, **kw
              ) -> tuple[np.ndarray, np.ndarray]:
    def make():
        parts = list(_run("seg", seed, count, canvas=canvas, **kw))
        return {"x": np.concatenate([p[0] for p in parts]), "y": np.concatenate([p[1] for p in parts])}

    key = ("seg", seed, count, kw.get("herniation_rate"), kw.get("profile"), _changes_key(kw), canvas)
    arrays = _cached(cache, key, make)
    return arrays["x"], arrays["y"]


def build_cls(seed: int, count: int, *, seg: ModelRef, augment: bool = True, cache: Path | None = None,
              **kw) -> ClsData:
    """Classifier samples whose disc masks come from the segmentation version ``seg``."""
    def make():
        from ai_service.engine import compiled_segmenter, locate_discs
        from ai_service.runtime import load_keras, load_refiner

        seg_fn, serving = compiled_segmenter(load_keras(seg), seg.card)
        refiner = load_refiner(seg, threads=os.cpu_count() or 1)
        refine = refiner[0] if refiner else None
        xs, ys, discs, disc_ys = [], [], [], []
        for index, cc in enumerate(canonical_cases(seed, count, **kw)):
            rng = np.random.default_rng(case_seed(seed, index) + 1) if augment else None
            located = locate_discs(seg_fn, cc.norm, cc.spacing, serving=serving, refine=refine)
            crops, y, meta = cls_samples(cc, located.discs, rng)
            xs.append(crops)
            ys.append(y)
            discs += [f"{index}:{level}" for level, _, _ in meta]
            disc_ys += [t for _, _, t in meta]
        return {"x": np.concatenate(xs), "y": np.concatenate(ys), "disc": np.asarray(discs),
                "disc_y": np.asarray(disc_ys, dtype=np.float32)}

    digest = serving_digest(seg)
    key = ("cls", seed, count, augment, kw.get("herniation_rate"), kw.get("profile"), digest, _changes_key(kw))
    a = _cached(cache, key, make)
    return ClsData(a["x"], a["y"], a["disc"], a["disc_y"])


def build_refine(seed: int, count: int, *, seg: ModelRef, per_slice: int = 8, cache: Path | None = None, **kw
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Refiner patches and truth masks (``pipelines.training.refine.refine_samples``) through the serving path
    of the segmentation version ``seg``."""
    def make():
        from ai_service.runtime import SegServing, load_runner
        from pipelines.training.refine import refine_samples

        seg_fn, serving = load_runner(seg, threads=os.cpu_count() or 1)[0], SegServing.of(seg.card)
        xs, ys = [], []
        for index, cc in enumerate(canonical_cases(seed, count, **kw)):
            x, y = refine_samples(cc, seg_fn, serving, np.random.default_rng(case_seed(seed, index) + 2), per_slice)
            xs.append(x)
            ys.append(y)
        return {"x": np.concatenate(xs), "y": np.concatenate(ys)}

    key = ("refine", seed, count, per_slice, kw.get("herniation_rate"), kw.get("profile"), serving_digest(seg),
           _changes_key(kw))
    a = _cached(cache, key, make)
    return a["x"], a["y"]


def canonical_cases(seed: int, count: int, **kw):
    """The phantoms of a dataset as the serving path sees them (generated in worker processes, in order)."""
    return _run("case", seed, count, **kw)


def serving_digest(seg: ModelRef) -> str:
    """What decides a segmentation version's masks: its weights and how its card serves them (canvas, smallest
    field, smoothing, refiner), so a derived version never reuses its source's cached classifier samples."""
    h = hashlib.sha256(seg.model_file.read_bytes())
    served = {k: seg.card.get(k) for k in ("architecture", "preprocess", "postprocess", "refiner")}
    h.update(json.dumps(served, sort_keys=True).encode())
    return h.hexdigest()[:12]


def _changes_key(kw: dict) -> tuple:
    """Profile changes as an order-free part of the cache key (any edit of this module re-keys every entry
    anyway: the code digest is part of the key)."""
    return tuple(sorted((kw.get("profile_changes") or {}).items()))


def _cached(cache: Path | None, key: tuple, make) -> dict[str, np.ndarray]:
    """Samples are a pure function of (generator code, key): keep them in ``cache`` so a re-run skips generation."""
    if cache is None:
        return make()
    from ai_service import discs, engine
    from pipelines.phantom import __file__ as phantom_init

    # the generator, preprocessing, this module, and what turns network output into named masks (classifier
    # and refiner samples are cut from those)
    serving = [Path(P.__file__), Path(engine.__file__), Path(discs.__file__), Path(__file__).with_name("refine.py")]
    code = hashlib.sha256()
    for source in sorted(Path(phantom_init).parent.glob("*.py")) + serving + [Path(__file__)]:
        code.update(source.read_bytes())
    digest = hashlib.sha256(repr(key).encode() + code.digest()).hexdigest()[:16]
    path = Path(cache) / f"{key[0]}-{digest}.npz"
    if path.exists():
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    arrays = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
    return arrays


def _run(kind: str, seed: int, count: int, *, herniation_rate: float = 0.35, profile: str = "default",
         profile_changes: dict | None = None, canvas: int = P.SEG_SIZE, workers: int = 2, progress=None):
    """Generate ``count`` phantoms in parallel worker processes; yield each case's samples in order.

    ``profile_changes`` adjust the named profile (field -> value) inside the workers: profiles do not pickle."""
    jobs = [(seed, i, herniation_rate, profile, profile_changes or {}, kind, canvas) for i in range(count)]
    with mp.get_context("spawn").Pool(workers) as pool:
        for i, part in enumerate(pool.imap(_make, jobs, chunksize=2)):
            if progress:
                progress(i + 1, count)
            yield part
