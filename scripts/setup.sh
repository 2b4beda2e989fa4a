#!/usr/bin/env bash
# Set up everything LDH Assist needs on a fresh Debian machine: Python venv + the project, and (with --peers)
# the real DICOM peers the tests run against. Safe to run again; it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"

if [ "${1:-}" = "--peers" ]; then
  need=()
  command -v dciodvfy >/dev/null || need+=(dicom3tools)
  command -v storescu >/dev/null || need+=(dcmtk)
  command -v Orthanc >/dev/null || need+=(orthanc)
  [ -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || need+=(orthanc-dicomweb)
  [ -f /usr/share/java/pixelmed.jar ] || need+=(libpixelmed-java)
  command -v java >/dev/null || need+=(default-jre-headless)
  if [ ${#need[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
fi
