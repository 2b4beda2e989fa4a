"""Where a model came from: the code version that built it (git commit when run from a checkout)."""

from __future__ import annotations

import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def code_version() -> str:
    """``ldh-assist <package version>`` plus ``git <commit>[-dirty]`` when the code runs from a git checkout."""
    try:
        text = f"ldh-assist {version('ldh-assist')}"
    except PackageNotFoundError:
        text = "ldh-assist (not installed)"
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=12"],
                                capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        return f"{text}; git {commit}"
    except (OSError, subprocess.SubprocessError):
        return text
