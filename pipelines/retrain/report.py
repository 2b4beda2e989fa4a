"""The run report: ``pipelines/runs/<run_id>/`` in the data storage: ``report.md``, ``summary.json``, ROC and
confusion-matrix PNGs. Every figure in it is measured on synthetic phantoms / feedback, not a clinical claim.

The files go through :mod:`ai_service.storage`, not a local folder: on Vertex AI each step runs on its own machine,
and the gate step reads the evaluation step's ``evaluation.json`` from there.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ai_service.storage import Storage
from pipelines.retrain.evaluate import SETS, roc_points
from pipelines.training.cls import auc

DISCLAIMER = "Synthetic phantoms and reviewer feedback only; these figures say nothing about clinical performance."


def run_key(run_id: str, name: str) -> str:
    return f"pipelines/runs/{run_id}/{name}"


@contextmanager
def run_files(storage: Storage, run_id: str) -> Iterator[Path]:
    """A local scratch folder whose files are stored under the run's keys on exit (in name order)."""
    with tempfile.TemporaryDirectory(prefix="ldh-run-") as tmp:
        yield Path(tmp)
        for path in sorted(Path(tmp).iterdir()):
            storage.write_file(run_key(run_id, path.name), path)


def plots(curves: dict, metrics: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    fig, axes = plt.subplots(1, len(SETS), figsize=(5 * len(SETS), 5))
    for ax, name in zip(axes, SETS):
        c = curves[name]
        for model in ("production", "candidate"):
            fpr, tpr, _ = roc_points(c[model], c["truth"])
            ax.plot(fpr, tpr, lw=2, label=f"{model} AUC {auc(c[model], c['truth']):.3f}")
        ax.plot([0, 1], [0, 1], "--", color="grey")
        ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=f"{name} ({len(c['truth'])} discs)")
        ax.legend(loc="lower right")
    fig.suptitle("Herniation ROC, candidate vs production (synthetic data)")
    fig.tight_layout()
    fig.savefig(out / "roc.png", dpi=90)
    plt.close(fig)
    names.append("roc.png")

    fig, axes = plt.subplots(1, 2, figsize=(8, 4))
    for ax, model in zip(axes, ("production", "candidate")):
        m = np.asarray(metrics[model]["pooled"]["confusion"])
        ax.imshow(m, cmap="Blues")
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, str(v), ha="center", va="center")
        ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["absent", "herniated"], yticklabels=["absent", "herniated"],
               xlabel="predicted", ylabel="reviewer / truth", title=f"{model} (pooled)")
    fig.tight_layout()
    fig.savefig(out / "confusion.png", dpi=90)
    plt.close(fig)
    names.append("confusion.png")
    return names


def _row(label: str, m: dict) -> str:
    return (f"| {label} | {m['auc']:.4f} | {m['sensitivity']:.3f} @ spec {m['operating_specificity']:.3f} | "
            f"{m['brier']:.4f} | {m['ece']:.4f} | {m['discs']} ({m['herniated_discs']} herniated) |")


def write_report(out: Path, summary: dict) -> Path:
    """``report.md`` and ``summary.json`` (last in name order: the run's commit marker) into ``out``."""
    lines = [f"# Retraining run {summary['run_id']}", "", f"> {DISCLAIMER}", "",
             f"**Outcome: {summary['outcome']}** — {summary['message']}", ""]
    if "dataset" in summary:
        lines += [f"- dataset: `{summary['dataset']}`", f"- candidate: `{summary.get('candidate')}`",
                  f"- production before: `{summary.get('production_before')}`", f"- code: {summary.get('code_version')}",
                  ""]
    if "metrics" in summary:
        lines += ["| set / model | AUC | sensitivity | Brier | ECE | discs |", "|---|---|---|---|---|---|"]
        for name in SETS:
            for model in ("production", "candidate"):
                lines.append(_row(f"{name} / {model}", summary["metrics"][model][name]))
        lines += ["", "## Gate", ""] + [f"- {r}" for r in summary["decision"]["reasons"]]
        lines += ["", "![ROC](roc.png)", "", "![confusion](confusion.png)", ""]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    return out / "report.md"
