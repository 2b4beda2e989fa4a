"""The one ``ldh`` command. Subcommands import their heavy dependencies lazily so ``--help`` is instant."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ai_service import __version__
from ai_service.config import Settings
from ai_service.errors import InputError, ModelError
from ai_service.logs import configure

log = logging.getLogger("ldh")


def _analyze(args: argparse.Namespace, settings: Settings) -> int:
    from ai_service.analyze import analyze_path

    if args.pixel_spacing:
        settings = settings.model_copy(update={"default_pixel_spacing_mm": args.pixel_spacing})
    if args.slice_spacing:
        settings = settings.model_copy(update={"default_slice_spacing_mm": args.slice_spacing})
    result = analyze_path(args.input, args.out, settings)
    for disc in result.findings.discs:
        flag = "HERNIATION" if disc.herniation else "no herniation"
        print(f"{disc.level}: P(herniation)={disc.probability:.3f} ({flag}) slice {disc.slice_index} box {list(disc.box)}")
    if not result.findings.discs:
        print("no lumbar disc found")
    for warning in result.findings.warnings:
        print(f"warning: {warning}")
    for name, path in result.files.items():
        print(f"wrote {name}: {path}")
    return 0


def _train(args: argparse.Namespace, settings: Settings) -> int:
    from pipelines.training.cli import run_train

    return run_train(args, settings)


def _evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from pipelines.training.evaluate import run_evaluate

    return run_evaluate(args, settings)


def _models(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from ai_service.registry import CLS_MODEL, SEG_MODEL, ModelRegistry

    registry = ModelRegistry(settings.model_store)
    names = [args.name] if getattr(args, "name", None) else [SEG_MODEL, CLS_MODEL]
    if args.models_command == "show":
        ref = registry.resolve(args.name, args.version)
        print(json.dumps({"name": ref.name, "version": ref.version, "path": str(ref.path), "card": ref.card}, indent=2))
        return 0
    for name in names:
        aliases = registry.aliases(name)
        for version in registry.versions(name):
            tags = ",".join(sorted(a for a, v in aliases.items() if v == version))
            print(f"{name}\t{version}\t{tags}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from pipelines.phantom.cli import add_parser as add_phantom
    from pipelines.training.cli import add_parsers as add_training

    parser = argparse.ArgumentParser(
        prog="ldh",
        description="LDH Assist: lumbar disc herniation AI beside your PACS. "
        "Research software trained on synthetic phantoms only; not for clinical use.",
    )
    parser.add_argument("--version", action="version", version=f"ldh {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add_phantom(sub)

    p = sub.add_parser("analyze", help="analyse one series: findings.json, discs.mha, preview.png",
                       description="Analyse a DICOM series folder, an .mha/.nii.gz volume or a folder of JPG/PNG "
                       "slices; write findings.json, discs.mha and preview.png into --out.")
    p.add_argument("input", type=Path, help="DICOM series folder, .mha/.nii.gz file, or folder of JPG/PNG slices")
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    p.add_argument("--pixel-spacing", type=float, default=None,
                   help="in-plane mm per pixel for JPG/PNG input (default LDH_DEFAULT_PIXEL_SPACING_MM = 0.75)")
    p.add_argument("--slice-spacing", type=float, default=None,
                   help="mm between JPG/PNG slices (default LDH_DEFAULT_SLICE_SPACING_MM = 4.0)")
    p.set_defaults(func=_analyze)

    add_training(sub, train_func=_train, evaluate_func=_evaluate)

    p = sub.add_parser("models", help="list or show model versions in the registry")
    msub = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    lp = msub.add_parser("list", help="versions and aliases")
    lp.add_argument("name", nargs="?", help="model name (disc-seg, herniation-cls)")
    sp = msub.add_parser("show", help="one version's model card")
    sp.add_argument("name", help="model name (disc-seg, herniation-cls)")
    sp.add_argument("version", nargs="?", default="production", help="version or alias (default production)")
    p.set_defaults(func=_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    configure(settings.log_level, settings.log_format)
    try:
        return int(args.func(args, settings) or 0)
    except (InputError, ModelError) as exc:
        print(f"ldh {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
