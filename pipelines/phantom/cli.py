"""`ldh phantom`: write a synthetic data set of lumbar MRI phantoms (the lead wires add_parser into `ldh`)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .profile import PROFILES
from .writer import FORMATS, generate_dataset


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within [0, 1], got {text}")
    return value


def _formats(text: str) -> tuple[str, ...]:
    out = tuple(f.strip().lower() for f in text.split(",") if f.strip())
    bad = [f for f in out if f not in FORMATS]
    if bad or not out:
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(FORMATS)}, got {text!r}")
    return out


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``phantom`` subcommand on an argparse subparsers object."""
    p = subparsers.add_parser(
        "phantom",
        help="generate synthetic sagittal T2 lumbar MRI phantoms with disc labels and herniation truth",
        description="Generate synthetic sagittal T2-weighted lumbar spine MRI cases (image.mha, labels.mha, "
                    "truth.json, a DICOM MR series and PNG slices per case) into OUT/case_0000 ... "
                    "Same --seed, same bytes. Synthetic data only: not for clinical use.",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    p.add_argument("--count", type=_count, required=True, help="number of cases")
    p.add_argument("--seed", type=int, required=True, help="data set seed; case i uses a seed derived from it")
    p.add_argument("--formats", type=_formats, default=FORMATS,
                   help="comma-separated subset of mha,dicom,png (default: all; truth.json always)")
    p.add_argument("--herniation-rate", type=_rate, default=0.35,
                   help="probability that each present disc level is herniated (default 0.35)")
    p.add_argument("--profile", choices=sorted(PROFILES), default="default",
                   help="population/scanner profile: default, or shifted (another contrast and scanner, "
                        "lower SNR, thicker slices, extrusion-like herniations)")
    p.set_defaults(func=_dispatch)
    return p


def _dispatch(args: argparse.Namespace, settings=None) -> int:
    """Entry used by `ldh` (which passes its settings; the phantom needs none)."""
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Generate the data set; one line per case and a summary. Returns the exit status."""
    start = time.perf_counter()
    herniated = present = 0

    def report(path: Path, case) -> None:
        nonlocal herniated, present
        levels = case.truth["levels"]
        hs = [f"{lv['level']}({lv['herniation_side']})" for lv in levels if lv["herniation"]]
        herniated += len(hs)
        present += sum(lv["present"] for lv in levels)
        shape = "x".join(str(v) for v in case.truth["shape"])
        print(f"{path}  seed={case.seed} shape={shape} herniations={', '.join(hs) or 'none'}", flush=True)

    paths = generate_dataset(args.out, args.count, args.seed, formats=args.formats,
                             herniation_rate=args.herniation_rate, profile=args.profile, progress=report)
    elapsed = time.perf_counter() - start
    print(f"wrote {len(paths)} case(s) to {args.out} (profile {args.profile}, seed {args.seed}): "
          f"{herniated} herniated of {present} present disc levels, {elapsed:.1f} s")
    return 0
