#!/usr/bin/env bash
# One GPU check, under 10 minutes on one H200: install, the CUDA tests, the speed benchmark, then the README table.
#
#   bash benchmarks/gpu_check.sh                 # results in results/gpu_check/ (or $OUT/ when set)
#   BENCH_GPU_METHODS="cut cyclegan" bash benchmarks/gpu_check.sh
#
# 0. stops at once (exit 2) where there is no NVIDIA GPU;
# 1. install: `pip install -e ".[dev]"` into a venv over the system site-packages, so a preinstalled CUDA torch
#    is used as it is (BENCH_GPU_VENV names the venv; default /tmp/bench-gpu-venv);
# 2. `pytest -m cuda`: every method's step under fp16 (GradScaler) and bf16 on CUDA, runs with bf16 /
#    channels_last / TF32 / fp16 / compile recorded in their fingerprints, pinned loader batches, two pool runs
#    on one GPU;
# 3. benchmarks/train_speed.py --device cuda at 256 px, batch 1: s/iter, images/s and peak GPU memory in
#    fp32, bf16 and bf16+compile, and the pool's aggregate throughput with K = 1, 2, 4 runs on the GPU (measured
#    right after fp32, before the slow compile rows); rows are saved as they come;
# 4. prints the README table (Markdown, also in $out/train_speed.md): GPU model, torch, CUDA, every row.
# Each step has its own time limit (120 + 180 + 270 s) so the whole script ends within 10 minutes with whatever
# it measured. An offline machine skips the install and uses what is importable (PYTHONPATH = this checkout).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-results/gpu_check}"
mkdir -p "$out"
log() { echo "[gpu_check $(date +%T)] $*" | tee -a "$out/gpu_check.log"; }
methods="${BENCH_GPU_METHODS:-cut fastcut cyclegan}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

log "machine"
if ! nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
    | tee -a "$out/gpu_check.log" | grep -q .; then
  log "no NVIDIA GPU here (nvidia-smi): nothing to check; on CPU run python -m pytest -q instead"
  exit 2
fi

log "1/3 install (a venv over the system packages: a preinstalled CUDA torch is reused, not downloaded)"
venv="${BENCH_GPU_VENV:-/tmp/bench-gpu-venv}"
[ -x "$venv/bin/python" ] || python3 -m venv --system-site-packages "$venv"
# shellcheck disable=SC1091
source "$venv/bin/activate"
python -c "import torch" 2>/dev/null || timeout 300 python -m pip install --quiet torch torchvision >>"$out/install.log" 2>&1
timeout 120 python -m pip install --quiet -e ".[dev]" >>"$out/install.log" 2>&1 \
  || timeout 60 python -m pip install --quiet --no-deps --no-build-isolation -e . >>"$out/install.log" 2>&1 \
  || log "pip install failed (offline?); using what is importable"
python - <<'EOF' | tee -a "$out/gpu_check.log"
import torch
assert torch.cuda.is_available(), "no CUDA device visible"
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
      f"GPU {torch.cuda.get_device_name(0)} ({torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB)")
EOF
[ "${PIPESTATUS[0]}" -eq 0 ] || { log "no usable CUDA torch: stopping"; exit 1; }

log "2/3 CUDA tests"
timeout 180 python -m pytest -q -p no:cacheprovider -m cuda tests/test_cuda.py 2>&1 | tail -25 | tee "$out/cuda_tests.txt"
tests=${PIPESTATUS[0]}

log "3/3 speed at 256 px ($methods)"
timeout 270 python benchmarks/train_speed.py --device cuda --sizes 256 --methods $methods \
  --modes fp32 bf16 bf16+compile --warmup 5 --iters 20 --pool 1 2 4 --pool-mode fp32 \
  --json "$out/train_speed.json" --markdown "$out/train_speed.md" 2>&1 | grep -v Warning | tee "$out/train_speed.txt"
speed=${PIPESTATUS[0]}

log "README table (also $out/train_speed.md)"
cat "$out/train_speed.md" 2>/dev/null || log "no rows were measured"

log "done: tests exit $tests, benchmark exit $speed; results in $out/"
exit $(( tests != 0 || speed != 0 ))
