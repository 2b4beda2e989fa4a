"""``ldh train seg|cls`` and ``ldh evaluate`` argument parsing and orchestration."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from ai_service.config import Settings
from ai_service.registry import CLS_MODEL, SEG_MODEL

TRAIN_SEED_DEFAULTS = {"seg": 11, "cls": 22, "refine": 33}
VAL_SEED_OFFSET = 1000  # validation phantoms: a different base seed than training ones


def canvas_side(text: str) -> int:
    side = int(text)
    if side < 64 or side % 16:
        raise argparse.ArgumentTypeError(f"canvas must be a multiple of 16 (the U-Net halves it 4 times), >= 64; got {side}")
    return side


def neighbour_share(text: str) -> float:
    share = float(text)
    if not 0.0 <= share < 1.0 / 3.0:
        raise argparse.ArgumentTypeError(f"a neighbouring slice's share must be in [0, 1/3); got {share}")
    return share


def field_mm(text: str) -> float:
    mm = float(text)
    if not 0.0 <= mm <= 1000.0:
        raise argparse.ArgumentTypeError(f"a field of view in mm must be in [0, 1000]; got {text}")
    return mm


def zoom_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"zoom must be LO,HI (e.g. 0.8,1.4); got {text!r}") from None
    if not 0.25 <= lo <= hi <= 4.0:
        raise argparse.ArgumentTypeError(f"zoom needs 0.25 <= LO <= HI <= 4; got {text!r}")
    return lo, hi


def add_parsers(sub, *, train_func, evaluate_func) -> None:
    p = sub.add_parser("train", help="train the segmentation (seg), its disc refiner (refine) or the herniation "
                       "(cls) model on phantoms",
                       description="Train on freshly generated synthetic phantoms and write a new immutable model "
                       "version (model.keras + card.json) into the model store. `refine` writes a new segmentation "
                       "version: --seg-model's U-Net, served as before, plus an input-grid disc refiner.")
    p.add_argument("task", choices=["seg", "cls", "refine"],
                   help="seg = disc/vertebra U-Net, cls = herniation classifier, refine = disc boundary refiner")
    p.add_argument("--count", type=int, default=None, help="training phantoms (default seg 200, cls 320, refine 240)")
    p.add_argument("--val-count", type=int, default=None,
                   help="validation phantoms (default seg 24, cls 100, refine 24)")
    p.add_argument("--seed", type=int, default=None, help="base seed (default seg 11, cls 22, refine 33)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default seg 20, cls 10, refine 8)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default seg 16, cls 128, refine 64)")
    p.add_argument("--base-filters", type=int, default=8, help="seg: U-Net base filters")
    p.add_argument("--canvas", type=canvas_side, default=256,
                   help="seg: side of the square network canvas the field of view is scaled to (multiple of 16; "
                        "default 256). Finer canvases resolve disc boundaries better and cost U-Net time with their "
                        "area; the version's card records it and serving follows it")
    p.add_argument("--window", type=canvas_side, default=128,
                   help="seg: side of the random training windows cut from each canvas (default 128, 4x cheaper than "
                        "whole 256² canvases); the canvas side trains on whole canvases as served")
    p.add_argument("--zoom", type=zoom_range, default=(1.0, 1.0), metavar="LO,HI",
                   help="seg: each training window spans window x z canvas pixels, z uniform in [LO, HI], resized "
                        "to the window: anatomy seen from 1/HI to 1/LO times its canvas size (default 1,1: none)")
    p.add_argument("--slice-weight", type=neighbour_share, default=0.0,
                   help="seg: serve with this share of each neighbouring slice in a slice's probabilities (card "
                        "postprocess; `ldh models derive` changes it later without retraining)")
    p.add_argument("--sigma-px", type=float, default=0.0,
                   help="seg: serve with this in-plane Gaussian on the probabilities, canvas pixels")
    p.add_argument("--channels", type=int, default=8, help="refine: filters per refiner layer (cost grows with it)")
    p.add_argument("--trials", type=int, default=2, help="cls: Keras Tuner trials (the search budget)")
    p.add_argument("--herniation-rate", type=float, default=0.35, help="per-level herniation probability")
    p.add_argument("--profile", default="default", help="phantom profile (default, shifted)")
    p.add_argument("--random-contrast", type=float, default=None, metavar="P",
                   help="share of training phantoms with SynthSeg-style random tissue contrast (default: the "
                        "profile's, 0.3 for default); the U-Net's hardest cases, so a fine-tune may ask for more. "
                        "Validation phantoms keep the profile's own share")
    p.add_argument("--store", type=Path, default=None, help="model store (default LDH_MODEL_STORE)")
    p.add_argument("--version", default=None, help="version name (default <task>-<UTC time>)")
    p.add_argument("--production", action="store_true", help="point the production alias at the new version")
    p.add_argument("--workers", type=int, default=2, help="phantom generator processes")
    p.add_argument("--init", default=None,
                   help="warm start from this version (or alias) of the same model in the store")
    p.add_argument("--real-negatives", type=int, default=0, metavar="REPEAT",
                   help="cls: add the healthy discs of the shared real exams' training split as negatives, "
                        "repeated REPEAT times (pipelines.training.real_cls; 0 = phantoms only)")
    p.add_argument("--real-bodies", type=int, default=0, metavar="REPEAT",
                   help="seg: add the shared real exams' training split with partial labels (bodies as marked, "
                        "discs between them, the rest unknown: pipelines.training.real_seg), repeated REPEAT times")
    p.add_argument("--lr", type=float, default=1e-3, help="seg, refine: initial learning rate")
    p.add_argument("--schedule", choices=["plateau", "cosine"], default="plateau",
                   help="seg: plateau = halve the rate when the validation loss stalls, stop early (default); "
                        "cosine = decay to 1 %% of --lr over all epochs and run them all (long runs)")
    p.add_argument("--checkpoints", type=Path, default=None, help="seg: save each epoch's model into this folder")
    p.add_argument("--seg-model", default="production",
                   help="cls: segmentation version whose predicted disc masks the classifier is trained on; "
                        "refine: segmentation version whose U-Net the refiner learns to correct")
    p.add_argument("--cache", type=Path, default=None,
                   help="keep generated samples here (keyed by generator code + arguments) so re-runs skip generation")
    p.set_defaults(func=train_func)

    e = sub.add_parser("evaluate", help="evaluate the models on a phantom hold-out: Dice, levels, AUC, ROC",
                       description="Generate hold-out phantoms (a seed never used in training), analyse each with "
                       "the inference engine and report per-level Dice, level-assignment accuracy, AUC, "
                       "sensitivity/specificity at the operating threshold; writes metrics.json, roc.png, "
                       "calibration.png. Figures describe synthetic phantoms only.")
    e.add_argument("--count", type=int, default=200, help="hold-out phantoms (default 200)")
    e.add_argument("--seed", type=int, default=909, help="hold-out base seed (default 909; training uses 11/22)")
    e.add_argument("--herniation-rate", type=float, default=0.35)
    e.add_argument("--profile", default="default")
    e.add_argument("--out", type=Path, required=True, help="folder for metrics.json and plots")
    e.add_argument("--workers", type=int, default=1, help="phantom generator processes")
    e.set_defaults(func=evaluate_func)


def _progress(label: str):
    def show(done: int, total: int) -> None:
        bar = "#" * int(30 * done / total)
        print(f"\r{label} [{bar:<30}] {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)

    return show


def run_train(args: argparse.Namespace, settings: Settings) -> int:
    from pipelines.training import data as D
    from pipelines.training.card import new_version, save_model

    task = args.task
    seed = TRAIN_SEED_DEFAULTS[task] if args.seed is None else args.seed
    store = args.store or settings.model_store
    val_common = {"herniation_rate": args.herniation_rate, "profile": args.profile, "workers": args.workers,
                  "cache": args.cache}
    changes = {} if args.random_contrast is None else {"random_contrast_prob": args.random_contrast}
    common = val_common | {"profile_changes": changes}
    data_card = {"generator": "pipelines.phantom (synthetic lumbar MRI phantoms)", "profile": args.profile,
                 "herniation_rate": args.herniation_rate, "seed": seed, "validation_seed": seed + VAL_SEED_OFFSET}
    if changes:
        data_card["profile_changes"] = changes
    if task == "refine":
        return _train_refine(args, store, seed, common, val_common, data_card)
    if task == "seg":
        count, val_count = args.count or 200, args.val_count or 24
        epochs, batch = args.epochs or 20, args.batch or 16
        from pipelines.training.seg import disc_dice, train_seg

        x, y = D.build_seg(seed, count, canvas=args.canvas, progress=_progress("training phantoms"), **common)
        xv, yv = D.build_seg(seed + VAL_SEED_OFFSET, val_count, canvas=args.canvas,
                             progress=_progress("validation phantoms"), **val_common)
        init = None
        if args.init:
            import keras

            from ai_service.registry import ModelRegistry

            init_ref = ModelRegistry(store).resolve(SEG_MODEL, args.init)
            init = keras.saving.load_model(init_ref.model_file, compile=False)
            data_card["warm_start"] = f"{SEG_MODEL}:{init_ref.version}"
        extra: dict = {}
        if args.real_bodies:
            x, y, extra = _with_real_bodies(x, y, args.canvas, args.real_bodies, init)
            data_card |= extra.pop("data")
        print(f"segmentation samples: {len(x)} train, {len(xv)} validation slices", file=sys.stderr)
        model, history = train_seg(x, y, xv, yv, epochs=epochs, batch=batch, base_filters=args.base_filters,
                                   lr=args.lr, seed=seed, init=init, window=args.window,
                                   zoom=args.zoom, schedule=args.schedule, checkpoints=args.checkpoints)
        metrics = disc_dice(model, xv, yv)
        card = {"task": "segmentation of intervertebral discs, vertebral bodies and sacrum on sagittal slices",
                "architecture": {"type": "2.5D U-Net", "base_filters": args.base_filters, "depth": 4,
                                 "canvas": args.canvas},
                "postprocess": {"slice_weight": args.slice_weight, "sigma_px": args.sigma_px},
                "training": {"epochs": epochs, "batch": batch, "lr": args.lr, "schedule": args.schedule,
                             "window": min(args.window, args.canvas), "zoom": list(args.zoom), "cases": count, "validation_cases": val_count,
                             "slices": int(len(x)), "history": history},
                "data": data_card | {"count": count, "validation_count": val_count},
                "metrics": {"validation_canvas": metrics}, **extra}
        name, prefix = SEG_MODEL, "seg"
    else:
        count, val_count = args.count or 320, args.val_count or 100
        epochs, batch = args.epochs or 10, args.batch or 128
        from pipelines.training.cls import train_cls

        from ai_service.registry import ModelRegistry

        seg_ref = ModelRegistry(store).resolve(SEG_MODEL, args.seg_model)
        data_card["disc_masks"] = f"predicted by {SEG_MODEL}:{seg_ref.version} (the serving path)"
        data = D.build_cls(seed, count, seg=seg_ref, augment=True,
                           progress=_progress("training phantoms"), **common)
        val = D.build_cls(seed + VAL_SEED_OFFSET, val_count, seg=seg_ref, augment=False,
                          progress=_progress("validation phantoms"), **val_common)
        extra: dict = {}
        if args.real_negatives:
            data, extra = _with_real_negatives(data, settings, store, seg_ref, args.real_negatives)
            data_card |= extra.pop("data")
        print(f"classifier samples: {len(data.y)} train crops ({int(data.y.sum())} positive), "
              f"{len(val.y)} validation crops", file=sys.stderr)
        init = None
        if args.init:
            import keras

            init_ref = ModelRegistry(store).resolve(CLS_MODEL, args.init)
            init = keras.saving.load_model(init_ref.model_file, compile=False)
            data_card["warm_start"] = f"{CLS_MODEL}:{init_ref.version}"
        with tempfile.TemporaryDirectory(prefix="ldh-tuner-") as work:
            model, hps, threshold, metrics, history = train_cls(data, val, epochs=epochs, batch=batch,
                                                                trials=args.trials, seed=seed, workdir=Path(work),
                                                                init=init)
        card = {"task": "P(herniation) of one disc on one sagittal slice; disc P = max over its slices",
                "architecture": {"type": "CNN", "hyperparameters": hps, "search": {"tuner": "keras_tuner.RandomSearch",
                                                                                 "trials": args.trials}},
                "operating_threshold": threshold,
                "operating_point": "highest threshold keeping validation disc-level sensitivity >= 0.95",
                "training": {"epochs": epochs, "batch": batch, "crops": int(len(data.y)), "history": history},
                "data": data_card | {"count": count, "validation_count": val_count},
                "metrics": {"validation": metrics}, **extra}
        name, prefix = CLS_MODEL, "cls"
    version = args.version or new_version(prefix)
    path = save_model(model, store, name, version, card, production=args.production)
    print(json.dumps(card["metrics"], indent=2))
    print(f"wrote {name}:{version} to {path}{' (production)' if args.production else ''}")
    return 0


def _real_card(exams, variants, caveat: str) -> dict:
    """What a model card says of the real exams a version learnt from: which, their citations and licence caveat,
    what cannot be measured, and the changed disclaimer."""
    from pipelines.importers.real_spine import CITATIONS, LICENCE_CAVEAT

    disclaimer = ("trained on synthetic phantoms and on public real exams of healthy volunteers (research and "
                  "internal testing only), not for clinical use")
    return {"data": {"real_exams": [e.name for e in exams], "real_variants": list(variants)},
            "real_data": {"citations": [CITATIONS[e] for e in sorted({x.dataset for x in exams})],
                          "licence": LICENCE_CAVEAT, "caveat": caveat},
            "disclaimer": disclaimer, "intended_use": f"Research and product development only; {disclaimer}."}


def _training_exams() -> list:
    from pipelines.importers.real_spine import load_exams
    from pipelines.training.real_cls import CLS_TRAIN_EXAMS

    exams = [e for e in load_exams() if e.name in CLS_TRAIN_EXAMS]
    if len(exams) != len(CLS_TRAIN_EXAMS):
        raise SystemExit(f"real-exam training needs the shared real exams {', '.join(CLS_TRAIN_EXAMS)}")
    return exams


def _with_real_bodies(x, y, canvas: int, repeat: int, teacher=None):
    """Phantom canvas samples + the real training split with partial labels (``real_seg``), repeated; the warm
    start's U-Net, if any, is the teacher below L5."""
    import numpy as np

    from pipelines.training.real_seg import TRAIN_VARIANTS, real_seg_samples

    if teacher is None:
        print("warning: --real-bodies without --init: no teacher labels the sacrum on real exams", file=sys.stderr)
    exams = _training_exams()
    rx, ry = real_seg_samples(exams, canvas, teacher=None if teacher is None else
                              (lambda inputs: teacher.predict(inputs, batch_size=16, verbose=0)))
    print(f"real partial-label samples: {len(rx)} slices of {len(exams)} exams", file=sys.stderr)
    extra = _real_card(exams, [("given" if s is None else f"{s:g}mm x {p:g}mm") for s, p in TRAIN_VARIANTS],
                       "real exams mark vertebral bodies only: disc targets there are the space between two marked "
                       "bodies, and the sacrum, L5-S1 and everything above T11 are left out of the loss; real disc "
                       "Dice is measured on the IVD exams, which are held out")
    extra["data"] |= {"real_slices": int(len(rx)), "real_repeat": repeat,
                      "real_teacher": "the warm start below L5 (background, L5-S1 disc, sacrum where p >= 0.9)"
                      if teacher is not None else None}
    return np.concatenate([x] + [rx] * repeat), np.concatenate([y] + [ry] * repeat), extra


def _with_real_negatives(data, settings: Settings, store, seg_ref, repeat: int):
    """Phantom samples + the real training split's healthy discs (cut as ``seg_ref`` serves them), and what the
    card must say about them: which exams, their citations and licence caveat, and the changed disclaimer."""
    from ai_service.engine import InferenceEngine
    from pipelines.training.real_cls import NEGATIVE_VARIANTS, combined, real_negatives

    exams = _training_exams()
    engine = InferenceEngine(settings.model_copy(update={"model_store": store, "seg_model": seg_ref.version}))
    negatives = real_negatives(engine, exams)
    print(f"real negatives: {len(negatives.y)} crops of {len(set(negatives.disc))} discs", file=sys.stderr)
    extra = _real_card(exams, NEGATIVE_VARIANTS, "no real herniated disc was available: real sensitivity is "
                       "unmeasured, and the model may have learnt real image texture as a sign of health")
    extra["data"] |= {"real_negative_crops": int(len(negatives.y)), "real_repeat": repeat}
    return combined(data, negatives, repeat), extra


def _train_refine(args: argparse.Namespace, store: Path, seed: int, common: dict, val_common: dict,
                  data_card: dict) -> int:
    import os

    from ai_service.errors import ModelError
    from ai_service.preprocess import REFINER_DEPTH
    from ai_service.registry import ModelRegistry
    from ai_service.runtime import REFINER_SHAPE, SegServing, compiled_graph, load_runner
    from pipelines.training import data as D
    from pipelines.training.card import new_version, refined_seg_version
    from pipelines.training.refine import PATCH, grid_disc_dice, train_refiner

    count, val_count = args.count or 240, args.val_count or 24
    epochs, batch = args.epochs or 8, args.batch or 64
    seg_ref = ModelRegistry(store).resolve(SEG_MODEL, args.seg_model)
    if seg_ref.card.get("refiner"):
        raise ModelError(f"{SEG_MODEL}:{seg_ref.version} already has a refiner; train on its source version "
                         f"({seg_ref.card.get('derived_from', {}).get('version', 'unknown')})")
    x, y = D.build_refine(seed, count, seg=seg_ref, progress=_progress("training phantoms"), **common)
    xv, yv = D.build_refine(seed + VAL_SEED_OFFSET, val_count, seg=seg_ref,
                            progress=_progress("validation phantoms"), **val_common)
    print(f"refiner samples: {len(x)} train, {len(xv)} validation patches of {PATCH}²", file=sys.stderr)
    model, history = train_refiner(x, y, xv, yv, channels=args.channels, epochs=epochs, batch=batch, lr=args.lr,
                                   seed=seed)
    seg_fn, serving = load_runner(seg_ref, threads=os.cpu_count() or 1)[0], SegServing.of(seg_ref.card)
    cases = D.canonical_cases(seed + VAL_SEED_OFFSET, val_count,
                              **{k: v for k, v in val_common.items() if k != "cache"})
    dice = grid_disc_dice(cases, seg_fn, serving, {"unet": None, "refined": compiled_graph(model, REFINER_SHAPE)})
    metrics = {"validation_input_grid": {"disc_dice_unet": dice["unet"], "disc_dice_refined": dice["refined"]}}
    card = {"task": "disc decision on the input grid from the image and the U-Net's mapped probabilities",
            "architecture": {"type": "CNN on the input grid", "channels": args.channels, "depth": REFINER_DEPTH},
            "training": {"epochs": epochs, "batch": batch, "lr": args.lr, "schedule": "cosine", "patch": PATCH,
                         "patches": int(len(x)), "cases": count, "validation_cases": val_count, "history": history},
            "data": data_card | {"count": count, "validation_count": val_count,
                                 "probabilities": f"served by {SEG_MODEL}:{seg_ref.version}"},
            "metrics": metrics}
    production = args.production
    if production and not dice["refined"] > dice["unet"]:
        print(f"not promoted: the refiner does not improve validation disc Dice ({dice['refined']:.4f} vs "
              f"{dice['unet']:.4f} for the U-Net alone)", file=sys.stderr)
        production = False
    version = args.version or new_version("seg")
    path = refined_seg_version(store, seg_ref.version, version, model, card, production=production)
    print(json.dumps(metrics, indent=2))
    print(f"wrote {SEG_MODEL}:{version} to {path}{' (production)' if production else ''}")
    return 0
