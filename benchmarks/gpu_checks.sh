#!/usr/bin/env bash
# The CUDA checks of the batched sweep (issue 13) as one command, for a session lent a GPU.
#
# The device image has torch, h5py, pandas, transformers, typer, rich …, but not soundfile or
# soxr. Fetch them once into the ignored folder .whl (here, where pip reaches PyPI):
#   grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 -d .whl soundfile==0.14.0 soxr==1.1.0 cffi==2.0.0 pycparser==3.0
# then run it there: command "bash benchmarks/gpu_checks.sh", carry [".whl"], timeout_s 540.
#
# It prints and writes to $OUT (or ./gpu-checks): nvidia-smi, the stacked-vs-solo step on the
# GPU (benchmarks/stacked.py, K=16), and the 16-run ShiftCNN sweep on fbank and on a
# wavlm-base-shaped cache (benchmarks/sweep.py: separate / one by one / batched and the GPU's
# utilisation), and the real-size cache benchmark at quarter size (benchmarks/scale.py, issue 38:
# a 6.3 GB IEMOCAP-shaped wavlm-base cache written under $WORK, ≈ 13 GB of disk while its shards
# merge, deleted at the end; in-memory vs streamed ShiftCNN steps on the GPU, a plain sequential
# read, ser probe; the page cache is dropped between arms only where the script runs as root).
# DEVICE=cpu runs the same steps on the CPU to check the script itself: 7.5 min on 2 cores on
# 2026-12-03 without the scale step, most of it the D=768 stacked step; the scale step is long on
# 2 CPU cores, so a CPU check of the script runs it with SCALE=0. The whole script may not
# fit one 600-s command: run it as two, "SCALE=0 bash benchmarks/gpu_checks.sh" and
# "ONLY=scale_quarter bash benchmarks/gpu_checks.sh" (timeout_s 540 each, the same carry).
set -uo pipefail
DEVICE=${DEVICE:-cuda}
RESULTS=${OUT:-$PWD/gpu-checks}
mkdir -p "$RESULTS"
if [ -d .whl ] && ! python3 -c "import soundfile, soxr" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
WORK=$(mktemp -d)

step() {  # step NAME COMMAND…: run one check with its output in $RESULTS/NAME.txt; a failure does not stop the rest
  local name=$1; shift
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then return; fi  # ONLY="NAME …": just those steps
  echo "== $name: $*"
  local started=$SECONDS
  "$@" 2>&1 | tee "$RESULTS/$name.txt"
  echo "== $name: exit ${PIPESTATUS[0]} after $((SECONDS - started)) s"
}

step gpu nvidia-smi
step versions python3 -c "import torch, transformers; print(torch.__version__, torch.cuda.is_available(), transformers.__version__)"
step stacked python3 benchmarks/stacked.py --head shiftcnn --members 16 --device "$DEVICE" --repeats 3
step sweep_fbank python3 benchmarks/sweep.py --device "$DEVICE" --epochs 5 --speakers 4 --sessions 2 --per-class 8 \
  --workdir "$WORK/fbank"
step sweep_wavlm python3 benchmarks/sweep.py --device "$DEVICE" --cache wavlm --epochs 2 --speakers 4 --sessions 2 \
  --per-class 4 --separate-sample 4 --workdir "$WORK/wavlm"
if [ "${SCALE:-1}" = 1 ]; then
  step scale_quarter python3 benchmarks/scale.py --size quarter --steps 20 --device "$DEVICE" --scratch "$WORK/scale" --clean
fi
