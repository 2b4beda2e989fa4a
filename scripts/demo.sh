#!/usr/bin/env bash
# Quick start, command 1: set up, generate one synthetic lumbar MRI phantom study and analyse it with the
# shipped models on the embedded default (no PACS, no cloud). Prints where the outputs are.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OUT=${1:-out/demo}
rm -rf "$OUT"
.venv/bin/ldh phantom --out "$OUT/phantom" --count 1 --seed 2026
.venv/bin/ldh analyze "$OUT/phantom/case_0000/dicom" --out "$OUT/result"
echo "Synthetic phantom (not a patient): $OUT/phantom/case_0000 (truth.json has the ground truth)"
echo "AI outputs: $OUT/result (findings.json, discs.mha, preview.png)"
