#!/usr/bin/env bash
# Set up everything LDH Assist needs on a fresh Debian machine: Python venv + the project, and (with --peers)
# the real DICOM peers the tests run against. Safe to run again; it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# the tested versions, every file checked against its hash (requirements.lock, upgraded by scripts/lock.sh); then
# the project itself, nothing more (built in pip's isolated environment: checkov pins packaging 23.2, which the
# setuptools our pyproject.toml needs cannot build with)
.venv/bin/python -m pip install -q --require-hashes -r requirements.lock
.venv/bin/python -m pip install -q --no-deps -e .

if [ "${1:-}" = "--peers" ]; then
  need=()
  command -v dciodvfy >/dev/null || need+=(dicom3tools)
  command -v dcmsend >/dev/null || need+=(dcmtk)  # not storescu: pynetdicom puts a script of that name in .venv/bin
  command -v openssl >/dev/null || need+=(openssl)  # DICOM TLS test certificates
  command -v Orthanc >/dev/null || need+=(orthanc)
  [ -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || need+=(orthanc-dicomweb)
  [ -f /usr/share/java/pixelmed.jar ] || need+=(libpixelmed-java)
  command -v java >/dev/null || need+=(default-jre-headless)
  [ -x /usr/bin/chromium ] || need+=(chromium)  # web page tests (headless, driven by npm playwright-core)
  command -v docker-compose >/dev/null || need+=(docker-compose)  # `docker-compose config -q` + compose-spec schema (tests/test_deploy_compose.py)
  if [ ${#need[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  # the Cloud Healthcare receiver's tests need Google's Pub/Sub emulator (Java); its apt repository
  # (packages.cloud.google.com) is not a Debian one, so it cannot be installed from here: say so, do not fail
  if [ ! -x /usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator ]; then
    echo "setup.sh: the Pub/Sub emulator is missing (Debian package google-cloud-cli-pubsub-emulator from Google's" \
         "apt repository, or 'gcloud components install pubsub-emulator'): tests/test_healthcare_receiver.py will" \
         "skip, and fail with CI=true" >&2
  fi
fi

# browser-test driver (npm playwright-core; it never downloads a browser, the tests use Debian's chromium)
if [ "${1:-}" = "--peers" ] && command -v npm >/dev/null && [ -f tests/browser/package-lock.json ]; then
  (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
# the prebuilt OHIF viewer served at /viewer (npm @ohif/app, version + sha512 pinned in viewer_plugin/package.json)
if [ "${1:-}" = "--peers" ] && command -v npm >/dev/null; then
  viewer_plugin/install-ohif.sh
fi
