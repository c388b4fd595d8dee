#!/usr/bin/env bash
# Reproduce the ShiftSER proportion × placement study (scripts/grids/shiftser.yaml) and report it.
#
#   scripts/shiftser_ablation.sh synthetic                    # smoke test: generated corpus, fbank, few epochs
#   scripts/shiftser_ablation.sh iemocap /data/IEMOCAP_full_release hubert-base
#
# The real run needs the backbone's weights on disk (`ser extract` says how to get them) and uses
# each head's paper recipe, 5 sessions × 3 seeds. Environment: WORKDIR (default ./shiftser-<corpus>),
# DEVICE (auto), JOBS (the sweep's default), EPOCHS and SEEDS (override the grid; the smoke test
# sets EPOCHS=3 SEEDS=0 and keeps two proportions unless you set them).
set -euo pipefail
cd "$(dirname "$0")/.."

CORPUS="${1:?usage: $0 synthetic | iemocap ROOT [MODEL]}"
WORKDIR="${WORKDIR:-shiftser-$CORPUS}"
DEVICE="${DEVICE:-auto}"
ser() { python3 -c 'from ser.cli import main; main()' "$@"; }

extra=()
if [ "$CORPUS" = synthetic ]; then
  MODEL="${2:-fbank}"
  ser prepare synthetic "$WORKDIR/data" --workdir "$WORKDIR" --speakers 4 --sessions 2 --per-class 6
  extra+=(--epochs "${EPOCHS:-3}" --seeds "${SEEDS:-0}" --shift-proportion "${PROPORTIONS:-1/2,1/16}")
else
  ROOT="${2:?usage: $0 $CORPUS ROOT [MODEL]}"
  MODEL="${3:-hubert-base}"
  ser prepare "$CORPUS" "$ROOT" --workdir "$WORKDIR"
  [ -n "${EPOCHS:-}" ] && extra+=(--epochs "$EPOCHS")
  [ -n "${SEEDS:-}" ] && extra+=(--seeds "$SEEDS")
fi
[ -n "${JOBS:-}" ] && extra+=(--jobs "$JOBS")

ser extract --model "$MODEL" --workdir "$WORKDIR" --device "$DEVICE"
SWEEP_DIR="$WORKDIR/runs/$CORPUS/shiftser-$MODEL"
ser sweep --grid scripts/grids/shiftser.yaml --model "$MODEL" --workdir "$WORKDIR" --device "$DEVICE" \
  --out "$SWEEP_DIR" "${extra[@]}"
ser report "$SWEEP_DIR"
echo "ablation tables and figures: $SWEEP_DIR/report.md"
