#!/usr/bin/env bash
# Layer-weight study across backbones: which hidden layers carry emotion, per backbone.
# For every backbone: extract its cache, sweep scripts/grids/layer_weights.yaml (SUPERB probe and
# ShiftCNN, weighted sum over all layers), then one report over all backbones (its layer-weight
# table and figure have one row per backbone × head).
#
#   scripts/layer_weight_study.sh synthetic                   # smoke test: random-init backbones, few epochs
#   scripts/layer_weight_study.sh iemocap /data/IEMOCAP_full_release "wavlm-base hubert-base wav2vec2-base"
#
# Environment: WORKDIR (default ./layers-<corpus>), DEVICE (auto), JOBS, EPOCHS, SEEDS.
set -euo pipefail
cd "$(dirname "$0")/.."

CORPUS="${1:?usage: $0 synthetic | iemocap ROOT [\"MODEL ...\"]}"
WORKDIR="${WORKDIR:-layers-$CORPUS}"
DEVICE="${DEVICE:-auto}"
ser() { python3 -c 'from ser.cli import main; main()' "$@"; }

extra=()
extract_flags=()
if [ "$CORPUS" = synthetic ]; then
  MODELS="${2:-fbank wavlm-base}"
  ser prepare synthetic "$WORKDIR/data" --workdir "$WORKDIR" --speakers 4 --sessions 2 --per-class 4
  extract_flags+=(--random-init)   # no downloads: the real architectures with random weights
  extra+=(--epochs "${EPOCHS:-3}" --seeds "${SEEDS:-0}")
else
  ROOT="${2:?usage: $0 $CORPUS ROOT [\"MODEL ...\"]}"
  MODELS="${3:-wavlm-base hubert-base wav2vec2-base}"
  ser prepare "$CORPUS" "$ROOT" --workdir "$WORKDIR"
  [ -n "${EPOCHS:-}" ] && extra+=(--epochs "$EPOCHS")
  [ -n "${SEEDS:-}" ] && extra+=(--seeds "$SEEDS")
fi
[ -n "${JOBS:-}" ] && extra+=(--jobs "$JOBS")

for MODEL in $MODELS; do
  flags=("${extract_flags[@]}")
  [ "$MODEL" = fbank ] || [ "$MODEL" = mfcc ] && flags=()   # frontends have no weights
  ser extract --model "$MODEL" --workdir "$WORKDIR" --device "$DEVICE" "${flags[@]}"
  ser sweep --grid scripts/grids/layer_weights.yaml --model "$MODEL" --workdir "$WORKDIR" --device "$DEVICE" \
    --out "$WORKDIR/runs/$CORPUS/layers/$MODEL" "${extra[@]}"
done
ser report "$WORKDIR/runs/$CORPUS/layers"
echo "layer weights per backbone: $WORKDIR/runs/$CORPUS/layers/report.md"
