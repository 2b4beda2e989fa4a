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
    if args.models_command in ("promote", "rollback"):
        from pipelines.retrain.cli import run_model_command

        return run_model_command(args, settings)
    if args.models_command == "export-onnx":
        from ai_service.runtime import add_onnx_export
        from ai_service.storage import is_remote

        if is_remote(settings.model_store):  # it would change only this machine's cached copy
            raise ModelError("export-onnx changes a version in place: run it on a local model store")

        entry = add_onnx_export(registry.resolve(args.name, args.version))
        print(json.dumps(entry, indent=2))
        return 0
    if args.models_command == "derive":
        from ai_service.storage import is_remote
        from pipelines.training.card import derive_seg_version

        if is_remote(settings.model_store):
            raise ModelError("derive writes a version folder: run it on a local model store, then upload it")
        try:
            path = derive_seg_version(settings.model_store, args.source, args.version, canvas=args.canvas,
                                      slice_weight=args.slice_weight, sigma_px=args.sigma_px,
                                      min_field_mm=args.min_field_mm, retry_field_mm=args.retry_field_mm,
                                      production=args.production)
        except FileExistsError as exc:
            raise ModelError(str(exc)) from None
        print(f"wrote {SEG_MODEL}:{args.version} to {path}{' (production)' if args.production else ''}")
        return 0
    for name in names:
        aliases = registry.aliases(name)
        for version in registry.versions(name):
            tags = ",".join(sorted(a for a, v in aliases.items() if v == version))
            print(f"{name}\t{version}\t{tags}")
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from dicom_node.node import Node

    updates = {k: v for k, v in (("node_port", args.port), ("node_ae_title", args.ae_title),
                                  ("data_dir", args.data_dir)) if v is not None}
    settings = settings.model_copy(update=updates)
    analyzer = None
    if not args.receive_only:
        from ai_service.worker import SeriesAnalyzer

        analyzer = SeriesAnalyzer(settings)
    import signal

    node = Node(settings, analyzer).start()
    from pipelines.retrain.scheduler import start_scheduler

    scheduler = start_scheduler(settings)  # LDH_PIPELINE_CRON: retraining inside the embedded default
    signal.signal(signal.SIGTERM, lambda *_: node.request_stop())
    print(f"ldh serve: {settings.node_ae_title} listening on {settings.node_host}:{node.port}, "
          f"data in {settings.data_dir}" + (" (receive only)" if analyzer is None else
                                            f", model {analyzer.model_version}"), flush=True)
    if node.healthcare is not None:
        print(f"ldh serve: receiving from Cloud Healthcare through {settings.healthcare_subscription}", flush=True)
    api = _start_api(args, settings, analyzer, node)
    try:
        node.serve_forever()
    finally:
        if api is not None:
            api.stop()
        if scheduler is not None:
            scheduler.shutdown(wait=False)
    return 0


def _start_api(args: argparse.Namespace, settings: Settings, analyzer, node):
    """The REST API + web page in the same process, sharing the node's loaded engine (LDH_API_*)."""
    if args.no_api or not settings.api_enabled:
        return None
    from ai_service.api.server import ApiServer

    if args.api_port is not None:
        settings = settings.model_copy(update={"api_port": args.api_port})
    try:
        api = ApiServer(settings, engine=getattr(analyzer, "engine", None)).start()
    except Exception:
        node.stop()
        raise
    if analyzer is not None:  # uploads go through the node's inbox, routing, jobs and exporter
        api.app.state.ldh.use_node(node)
        api.app.state.ldh.on_engine_swap(analyzer.use_engine)  # hot reload reaches the node's worker too
    print(f"ldh serve: API and web page on {api.url} (OpenAPI at {api.url}docs)", flush=True)
    return api


def _status(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from dicom_node.status import format_status, load

    status = load(args.data_dir or settings.local_dir)
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from pipelines.phantom.cli import add_parser as add_phantom
    from pipelines.retrain.cli import add_model_commands, add_pipeline_parser
    from pipelines.training.cli import add_parsers as add_training
    from pipelines.training.cli import canvas_side, field_mm, neighbour_share

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

    p = sub.add_parser("serve", help="run the DICOM node: C-STORE receiver, analysis worker, exporter",
                       description="Receive studies over DICOM (C-STORE), analyse routed series, send SEG + SR back "
                       "(C-STORE / STOW-RS). Settings: LDH_NODE_* (see README). Stops on Ctrl-C / SIGTERM.")
    p.add_argument("--port", type=int, default=None, help="DICOM port (default LDH_NODE_PORT = 11112)")
    p.add_argument("--ae-title", default=None, help="our AE title (default LDH_NODE_AE_TITLE = LDHASSIST)")
    p.add_argument("--data-dir", type=Path, default=None, help="data directory (default LDH_DATA_DIR)")
    p.add_argument("--receive-only", action="store_true", help="receive and assemble, do not analyse")
    p.add_argument("--api-port", type=int, default=None, help="REST API / web page port (default LDH_API_PORT = 8080)")
    p.add_argument("--no-api", action="store_true", help="do not serve the REST API / web page (LDH_API_ENABLED)")
    p.set_defaults(func=_serve)

    p = sub.add_parser("status", help="per study: received / waiting / analysed / exported / failed",
                       description="What the DICOM node holds, read from its index in the data directory.")
    p.add_argument("--data-dir", type=Path, default=None, help="data directory (default LDH_DATA_DIR)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_status)

    p = sub.add_parser("models", help="list or show model versions in the registry")
    msub = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    lp = msub.add_parser("list", help="versions and aliases")
    lp.add_argument("name", nargs="?", help="model name (disc-seg, herniation-cls)")
    sp = msub.add_parser("show", help="one version's model card")
    sp.add_argument("name", help="model name (disc-seg, herniation-cls)")
    sp.add_argument("version", nargs="?", default="production", help="version or alias (default production)")
    ep = msub.add_parser("export-onnx", help="add the verified ONNX export to a version saved without one",
                         description="Exports the version's weights to model.onnx, checks it against Keras on probe "
                         "batches of two sizes (shapes, dtypes, values) and records its hash in the card; the engine then runs it with ONNX Runtime. The "
                         "weights and every other card field stay as they are.")
    ep.add_argument("name", help="model name (disc-seg, herniation-cls)")
    ep.add_argument("version", help="version or alias")
    dp = msub.add_parser("derive", help="publish a segmentation version's weights as a new version served another "
                         "way (canvas side, smallest field, probability smoothing, second read)",
                         description="The new version has the source's weights, its own canvas (ONNX re-exported) "
                         "and smoothing of the canvas probabilities (neighbouring slices, in-plane Gaussian). Compare "
                         "it with `ldh evaluate`, promote it, roll it back like any version.")
    dp.add_argument("source", help="disc-seg version or alias whose weights are served")
    dp.add_argument("version", help="name of the new version")
    dp.add_argument("--canvas", type=canvas_side, default=256, help="canvas side (multiple of 16; default 256)")
    dp.add_argument("--slice-weight", type=neighbour_share, default=0.0,
                    help="share of each neighbouring slice in a slice's probabilities (0 … <1/3; default 0)")
    dp.add_argument("--sigma-px", type=float, default=0.0, help="in-plane Gaussian on the probabilities, canvas pixels")
    dp.add_argument("--min-field-mm", type=field_mm, default=0.0,
                    help="the canvas spans at least this many mm: a smaller field of view is padded, not magnified "
                         "(default 0: the field of view fills the canvas)")
    dp.add_argument("--retry-field-mm", type=field_mm, default=0.0,
                    help="read an exam the anatomy check declines (or whose L5-S1 goes unread) again on a canvas "
                         "spanning at least this many mm, kept when it passes (default 0: no second read); when "
                         "only this differs from the source, its refiner is kept")
    dp.add_argument("--production", action="store_true", help="point the production alias at the new version")
    add_model_commands(msub)
    p.set_defaults(func=_models)
    add_pipeline_parser(sub)
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
