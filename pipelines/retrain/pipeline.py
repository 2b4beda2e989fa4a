"""The KFP v2 pipeline: collect → (enough?) build dataset → train → evaluate → register + gate (+ promote).

Each component is a one-line call into :mod:`pipelines.retrain.steps`, so the container image (Vertex) or the
local interpreter (kfp's SubprocessRunner) needs this package installed. Metrics go out as KFP ``Metrics`` and
``ClassificationMetrics`` artifacts (ROC + confusion matrix, shown by the Vertex console) and a Markdown report.
"""


from typing import NamedTuple

from kfp import dsl
from kfp.dsl import ClassificationMetrics, Input, Markdown, Metrics, Model, Output

PIPELINE_NAME = "ldh-retrain-herniation-cls"


def build_pipeline(image: str):
    """The pipeline function with every component running in ``image`` (ignored by the local runner)."""

    @dsl.component(base_image=image)
    def collect_feedback(config_json: str) -> NamedTuple("Collected", enough=bool, new_records=int, message=str):
        from collections import namedtuple

        from pipelines.retrain import steps

        return namedtuple("Collected", "enough new_records message")(*steps.collect(config_json))

    @dsl.component(base_image=image)
    def build_dataset(config_json: str) -> str:
        from pipelines.retrain import steps

        return steps.build_dataset(config_json)

    @dsl.component(base_image=image)
    def train_candidate(config_json: str, dataset_version: str, model: Output[Model]):
        from pipelines.retrain import steps

        steps.train(config_json, dataset_version, model.path)
        model.metadata["dataset_version"] = dataset_version

    @dsl.component(base_image=image)
    def evaluate_models(config_json: str, dataset_version: str, run_id: str, job_name: str, model: Input[Model],
                        metrics: Output[Metrics], candidate_roc: Output[ClassificationMetrics],
                        production_roc: Output[ClassificationMetrics]):
        from pipelines.retrain import steps
        from pipelines.retrain.evaluate import roc_points

        import math

        result = steps.evaluate(config_json, dataset_version, model.path, run_id or job_name)
        figures = {f"{who}_{name}_{key}": m[key] for who in ("candidate", "production")
                   for name, m in result["metrics"][who].items()
                   for key in ("auc", "sensitivity", "specificity", "brier", "ece")}
        figures |= {f"candidate_{name}_auc_gain_lower_bound": m["vs_production"]["lower_bound"]
                    for name, m in result["metrics"]["candidate"].items()}
        for key, value in figures.items():
            if math.isfinite(value):  # KFP metrics cannot hold NaN (a set without both classes, one patient)
                metrics.log_metric(key, round(float(value), 5))
        curves = result["curves"]["pooled"]
        for who, artifact in (("candidate", candidate_roc), ("production", production_roc)):
            import numpy as np

            fpr, tpr, thr = roc_points(np.asarray(curves[who]), np.asarray(curves["truth"]))
            artifact.log_roc_curve(fpr, tpr, thr)
            artifact.log_confusion_matrix(["absent", "herniated"], result["metrics"][who]["pooled"]["confusion"])

    @dsl.component(base_image=image)
    def register_and_gate(config_json: str, dataset_version: str, run_id: str, job_name: str, model: Input[Model],
                          report: Output[Markdown]) -> str:
        from pathlib import Path

        from pipelines.retrain import steps

        summary = steps.register_and_gate(config_json, dataset_version, model.path, run_id or job_name)
        Path(report.path).write_text(steps.run_file(config_json, run_id or job_name, "report.md"))
        return summary["outcome"]

    @dsl.component(base_image=image)
    def not_enough_feedback(config_json: str, run_id: str, job_name: str, message: str):
        from pipelines.retrain import steps

        steps.not_enough(config_json, run_id or job_name, message)

    @dsl.pipeline(name=PIPELINE_NAME, description="Retrain the LDH herniation classifier from radiologist feedback; "
                  "promote only a better model (synthetic phantoms / feedback only, not clinical data).")
    def retrain(config_json: str, run_id: str = ""):
        job = dsl.PIPELINE_JOB_NAME_PLACEHOLDER
        collected = collect_feedback(config_json=config_json)
        with dsl.If(collected.outputs["enough"] == True, name="enough-feedback"):  # noqa: E712 (KFP condition)
            dataset = build_dataset(config_json=config_json)
            trained = train_candidate(config_json=config_json, dataset_version=dataset.output)
            evaluated = evaluate_models(config_json=config_json, dataset_version=dataset.output, run_id=run_id,
                                        job_name=job, model=trained.outputs["model"])
            register_and_gate(config_json=config_json, dataset_version=dataset.output, run_id=run_id, job_name=job,
                              model=trained.outputs["model"]).after(evaluated)
        with dsl.Else(name="not-enough-feedback"):
            not_enough_feedback(config_json=config_json, run_id=run_id, job_name=job,
                                message=collected.outputs["message"])

    return retrain
