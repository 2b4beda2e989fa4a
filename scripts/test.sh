#!/usr/bin/env bash
# Quick start, command 2: set up (Python env + DICOM peers: dcmtk, dicom3tools, Orthanc, pixelmed) and run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --peers
exec .venv/bin/python -m pytest "$@"
