"""Real lumbar MRI (``shared/data/real_spine``): per exam and level, disc Dice, level naming, herniation calls.

Each exam is shown to the product as given (1 mm isotropic), in the files' own array order through an MHA file,
and as clinical-like thick-slice series (4 mm x 0.43 mm, 3.5 mm x 0.8 mm); every figure is computed on the manual
mask's 1 mm grid. These are development figures on the exams shared with developers (the project keeps others for
acceptance); the summary leaves out every exam a served model's card names under ``data.real_exams`` (used in
training), so it quotes held-out exams only. Every disc of these healthy volunteers is a
negative: a herniation call is a false positive. Cite the datasets (``pipelines.importers.real_spine.CITATIONS``)
with any figure. Run: ``python -m bench.real [--root DIR] [--variants given,4mm]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.common import write_result


def main() -> None:
    from pipelines.importers.real_spine import CITATIONS, DEFAULT_ROOT, LICENCE_CAVEAT
    from pipelines.training.real_eval import VARIANTS

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--seg-model", default=None)
    parser.add_argument("--cls-model", default=None)
    args = parser.parse_args()

    from ai_service.config import Settings
    from ai_service.engine import InferenceEngine
    from pipelines.importers.real_spine import load_exams
    from pipelines.training.real_eval import score_exam, summarise

    overrides = {k: v for k, v in (("seg_model", args.seg_model), ("cls_model", args.cls_model)) if v}
    engine = InferenceEngine(Settings(**overrides))
    exams = load_exams(args.root)
    if not exams:
        raise SystemExit(f"no real exams under {args.root}")
    trained_on = {name for ref in (engine.seg_ref, engine.cls_ref)
                  for name in ref.card.get("data", {}).get("real_exams", [])}
    held_out = [e for e in exams if e.name not in trained_on]  # figures on exams a model learnt from say nothing
    variants = [v for v in args.variants.split(",") if v]
    scores = []
    for exam in exams:
        for variant in variants:
            score = score_exam(engine, exam, variant)
            scores.append(score)
            named = sum(score.levels_correct.values())
            print(f"{exam.name:8s} {variant:6s} levels right {named}/5 (wrong names {score.wrong_levels})  "
                  f"herniation calls {score.herniation_calls}"
                  + (f"  Dice {' '.join(f'{v:.2f}' for v in score.dice.values())}" if score.dice else "")
                  + ("" if score.analysable else f"  not analysable: {score.reason}"), flush=True)
    figures = summarise([s for s in scores if s.exam not in trained_on])
    path = write_result("real", {
        "models": {"segmentation": engine.seg_ref.version, "classification": engine.cls_ref.version},
        "operating_threshold": engine.threshold, "summary": figures,
        "exams": [s.to_dict() | {"used_in_training": s.exam in trained_on} for s in scores],
        "held_out_exams": [e.name for e in held_out], "citations": CITATIONS, "licence": LICENCE_CAVEAT,
        "targets": {"mean_disc_dice": 0.85, "worst_level_dice": 0.75, "levels_correct": 1.0, "herniation_calls": 0},
    })
    for variant, f in figures.items():
        dice = (f"mean disc Dice {f['mean_disc_dice']:.3f} (worst level {f['worst_level_dice']:.3f}), "
                if f["mean_disc_dice"] is not None else "")
        print(f"real exams held out ({f['exams']}), {variant}: {dice}levels right {f['levels_correct'] * 100:.1f}% (reported under a wrong "
              f"name: {f['wrong_levels_reported']}), herniation calls {f['herniation_calls']} on healthy discs, "
              f"not analysable {f['not_analysable']}/{f['exams']}")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
