#!/usr/bin/env bash
# Rebuild the shipped bundles (src/pneumo/weights/default and default-3class) from scratch, as recorded in
# docs/MODEL_CARD.md: the acquisition-invariant recipes (configs/lungs*.yaml: image/site-variant pairs with a
# consistency term, aspect jitter, the checkpoint chosen on the acquisition-shifted block). CPU: see the model card.
#   bash scripts/ship_models.sh [DATA_ROOT]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/kermany}
PNEUMO=${PNEUMO:-.venv/bin/pneumo}
WEIGHTS=src/pneumo/weights

ship() {  # ship RUN NAME: fit the UNKNOWN gate, add model.onnx, calibrate on validation, copy into the package
  local run=$1 name=$2
  "$PNEUMO" gate fit --model "$run/best" --data "$DATA"
  # After the gate (an export made before a refit no longer matches it), before calibrating: the threshold is
  # then chosen on ONNX Runtime's probabilities, the backend `pneumo predict` uses by default.
  "$PNEUMO" export --model "$run/best" --into-bundle
  "$PNEUMO" calibrate --model "$run/best" --data "$DATA" --split val --target-sensitivity 0.95
  rm -rf "${WEIGHTS:?}/$name"
  cp -r "$run/best" "$WEIGHTS/$name"
  cp docs/MODEL_CARD.md "$WEIGHTS/$name/MODEL_CARD.md"  # served by GET /api/v1/model
  chmod -R a+rX "$WEIGHTS/$name"
}

"$PNEUMO" train --config configs/lungs.yaml --data "$DATA" --out runs/lungs-2class
ship runs/lungs-2class default
"$PNEUMO" train --config configs/lungs-3class.yaml --data "$DATA" --init-from default --out runs/lungs-3class
ship runs/lungs-3class default-3class
