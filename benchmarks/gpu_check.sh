#!/usr/bin/env bash
# GPU check for the Triton lightning-attention kernels, for a session with ~10 minutes on one CUDA GPU
# (sized for an H200, estimated: tests ~3 min, mostly kernel compilation; benchmark ~2-3 min; hard limits 4 + 5 min,
# so the whole script stays under 10 min). From the repo root:
#
#     bash benchmarks/gpu_check.sh                  # logs under $OUT if set, else benchmarks/out/
#     PYTHON=/path/to/python bash benchmarks/gpu_check.sh
#
# Installs nothing: uses $PYTHON, else .venv/bin/python, else python3 (torch with CUDA and triton required;
# flash-linear-attention is compared against only if it already imports). Runs, in order:
#   1. the kernel test file on the GPU (compiled kernels, TRITON_INTERPRET unset), every marker included;
#   2. benchmarks/lightning_gpu.py (correctness at real shapes, then timings; also written as JSON).
# Each step has its own time limit so a hang cannot eat the session; the exit status is non-zero if either
# step failed. Extra arguments are passed to the benchmark, e.g. `--seqlen 4096 16384` to save time.
set -uo pipefail

cd "$(dirname "$0")/.."
if [[ -n "${PYTHON:-}" ]]; then
    py="$PYTHON"
elif [[ -x .venv/bin/python ]]; then
    py=.venv/bin/python
else
    py=python3
fi
out_dir="${OUT:-benchmarks/out}"
mkdir -p "$out_dir"
unset TRITON_INTERPRET
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

{
    date
    nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem --format=csv 2>&1 || true
    "$py" -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__,
"cuda", torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else "NO CUDA DEVICE")'
} 2>&1 | tee "$out_dir/environment.txt"

echo "== 1/2 tests (compiled kernels) ==" | tee "$out_dir/tests.txt"
timeout 240 "$py" -m pytest tests/ops/test_lightning_triton.py -m "slow or not slow" -q -rA \
    -p no:cacheprovider --durations=15 2>&1 | tee -a "$out_dir/tests.txt"
tests_status=${PIPESTATUS[0]}

echo "== 2/2 benchmark ==" | tee "$out_dir/benchmark.txt"
timeout 300 "$py" benchmarks/lightning_gpu.py --json "$out_dir/lightning_gpu.json" "$@" 2>&1 \
    | tee -a "$out_dir/benchmark.txt"
bench_status=${PIPESTATUS[0]}

echo "tests exit status: $tests_status (124 = timed out); benchmark exit status: $bench_status" \
    | tee "$out_dir/status.txt"
[[ $tests_status -eq 0 && $bench_status -eq 0 ]]
