"""``ldh pipeline run|compile|submit|schedule`` and ``ldh models promote|rollback`` (parsers + handlers)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from ai_service.config import Settings
from ai_service.storage import location


def add_pipeline_parser(sub) -> None:
    p = sub.add_parser("pipeline", help="the retraining pipeline: run locally, compile, submit / schedule on Vertex",
                       description="Feedback -> de-identified dataset -> Keras Tuner training -> evaluation against "
                       "production -> gated promotion (see README, Retraining pipeline).")
    psub = p.add_subparsers(dest="pipeline_command", required=True)
    r = psub.add_parser("run", help="run the pipeline here with kfp's local SubprocessRunner (offline)")
    r.add_argument("--data-dir", type=location, default=None, help="data dir (default LDH_DATA_DIR)")
    r.add_argument("--min-new-records", type=int, default=None, help="override LDH_PIPELINE_MIN_NEW_RECORDS")
    r.add_argument("--trials", type=int, default=None, help="override LDH_PIPELINE_TUNER_TRIALS")
    r.add_argument("--epochs", type=int, default=None, help="override LDH_PIPELINE_EPOCHS")
    r.add_argument("--replay-cases", type=int, default=None, help="override LDH_PIPELINE_REPLAY_CASES")
    r.add_argument("--frozen-eval-cases", type=int, default=None, help="override LDH_PIPELINE_FROZEN_EVAL_CASES")
    r.add_argument("--run-id", default=None, help="run id (default run-<UTC time>)")
    c = psub.add_parser("compile", help="write the pipeline as KFP v2 YAML (for Vertex AI)")
    c.add_argument("--out", type=Path, default=Path("ldh-retrain.yaml"))
    s = psub.add_parser("submit", help="submit one run to Vertex AI Pipelines (LDH_VERTEX_*)")
    s.add_argument("--run-id", default=None)
    k = psub.add_parser("schedule", help="create a Vertex AI pipeline schedule (LDH_VERTEX_*)")
    k.add_argument("--cron", required=True, help='crontab, e.g. "0 3 * * 1" (UTC)')
    p.set_defaults(func=run_pipeline_command)


def add_model_commands(msub) -> None:
    pp = msub.add_parser("promote", help="point the production alias at a version (recorded in alias-history.jsonl)")
    pp.add_argument("name", help="model name (disc-seg, herniation-cls)")
    pp.add_argument("version", help="version to make production")
    pp.add_argument("--reason", default="manual promotion")
    rb = msub.add_parser("rollback", help="point production back at the version it had before")
    rb.add_argument("name", help="model name (disc-seg, herniation-cls)")
    rb.add_argument("--reason", default="manual rollback")


def run_model_command(args: argparse.Namespace, settings: Settings) -> int:
    from ai_service.registry import ModelRegistry
    from pipelines.retrain.promotion import rollback, set_production

    registry = ModelRegistry(settings.model_store)
    if args.models_command == "promote":
        entry = set_production(registry, args.name, args.version, action="promote", reason=args.reason)
    else:
        entry = rollback(registry, args.name, args.reason)
    print(f"{args.name}: production {entry['from']} -> {entry['to']} ({entry['action']})")
    return 0


def run_pipeline_command(args: argparse.Namespace, settings: Settings) -> int:
    from pipelines.retrain import runner
    from pipelines.retrain.config import RetrainConfig

    if getattr(args, "data_dir", None) is not None:
        settings = settings.model_copy(update={"data_dir": args.data_dir})
    try:
        if args.pipeline_command == "compile":
            print(f"wrote {runner.compile_pipeline(settings, args.out)}")
            return 0
        cfg = RetrainConfig.from_settings(settings, **({
            "min_new_records": args.min_new_records, "tuner_trials": args.trials, "epochs": args.epochs,
            "replay_cases": args.replay_cases, "frozen_eval_cases": args.frozen_eval_cases,
        } if args.pipeline_command == "run" else {}))
        if args.pipeline_command == "run":
            summary = runner.run_local(cfg, args.run_id)
            print(f"pipeline run {summary['run_id']}: {summary['outcome']} - {summary['message']}")
            for reason in summary.get("decision", {}).get("reasons", []):
                print(f"  {reason}")
            print(f"report: {cfg.data_dir}/pipelines/runs/{summary['run_id']}/report.md")
            return 0
        with tempfile.TemporaryDirectory(prefix="ldh-pipeline-") as tmp:
            template = runner.compile_pipeline(settings, Path(tmp) / "pipeline.yaml")
            if args.pipeline_command == "submit":
                job = runner.submit(settings, cfg, template, args.run_id)
                print(f"submitted {job.resource_name}")
            else:
                schedule = runner.schedule(settings, cfg, template, args.cron)
                print(f"scheduled {schedule.resource_name} ({args.cron})")
        return 0
    except runner.PipelineSetupError as exc:
        print(f"ldh pipeline {args.pipeline_command}: {exc}", file=sys.stderr)
        return 2
