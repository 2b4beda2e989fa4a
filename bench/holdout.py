"""Phantom hold-out accuracy: >= 200 synthetic cases from a seed never used in training, end to end.

Figures describe synthetic phantoms only, never clinical performance. Run: ``python -m bench.holdout``.
"""

from __future__ import annotations

import argparse

from bench.common import write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seed", type=int, default=909)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    from ai_service.config import Settings
    from pipelines.training.evaluate import evaluate

    metrics, _ = evaluate(Settings(), count=args.count, seed=args.seed, workers=args.workers)
    metrics["targets"] = {"mean_disc_dice": 0.95, "level_assignment_accuracy": 0.99, "herniation_auc": 0.97}
    path = write_result("holdout", metrics)
    print(f"phantom hold-out n={args.count}: mean disc Dice {metrics['mean_disc_dice']:.4f}, level assignment "
          f"{metrics['level_assignment_accuracy'] * 100:.2f}%, herniation AUC {metrics['herniation_auc']:.4f} "
          f"(synthetic data) -> {path}")


if __name__ == "__main__":
    main()
