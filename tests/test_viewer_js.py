"""The viewer plugin's JavaScript unit tests (``node --test viewer_plugin/test/``): the box <-> patient mapping.

Skips without node, except under CI=true, where it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parent.parent / "viewer_plugin"


def test_node_unit_tests_pass():
    if shutil.which("node") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("node is required in CI for the viewer plugin's unit tests")
        pytest.skip("node is missing")
    proc = subprocess.run(["node", "--test", "test/"], cwd=PLUGIN, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    lines = [line[2:] for line in proc.stdout.splitlines() if line.startswith("# ") and " " in line[2:]]
    summary = dict(line.split(" ", 1) for line in lines)
    assert int(summary["pass"]) >= 8 and int(summary["fail"]) == 0, summary
