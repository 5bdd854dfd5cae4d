#!/usr/bin/env bash
# All GPU checks in one call, for a session with ~10 minutes on one CUDA GPU (sized for an H200, estimated:
# Triton tests ~3 min, mostly kernel compilation; benchmark ~2-3 min; sharded training ~2 min). From the repo root:
#
#     bash benchmarks/gpu_check.sh                  # logs under $OUT if set, else benchmarks/out/
#     STEPS="sharded" bash benchmarks/gpu_check.sh  # a subset: any of "tests bench sharded"
#     PYTHON=/path/to/python bash benchmarks/gpu_check.sh
#
# Installs nothing: uses $PYTHON, else .venv/bin/python, else python3 (torch with CUDA and triton required;
# flash-linear-attention is compared against only if it already imports; ZeRO-3 runs only if deepspeed imports).
# Runs, in order:
#   1. tests: the kernel test file on the GPU (compiled kernels, TRITON_INTERPRET unset), every marker included;
#   2. bench: benchmarks/lightning_gpu.py (correctness at real shapes, then timings; also written as JSON);
#   3. sharded: four tiny stage-II steps through accelerate with multi_gpu_fsdp.yaml (FSDP2, bf16, with
#      --activation-checkpointing) and deepspeed_zero3.yaml (ZeRO-3, bf16), one process each on the one GPU.
# Each step has its own time limit so a hang cannot eat the session; the exit status is non-zero if any step
# failed. Extra arguments are passed to the benchmark, e.g. `--seqlen 4096 16384` to save time.
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

steps="${STEPS:-tests bench sharded}"
status=0

if [[ " $steps " == *" tests "* ]]; then
    echo "== tests (compiled kernels) ==" | tee "$out_dir/tests.txt"
    timeout 240 "$py" -m pytest tests/ops/test_lightning_triton.py -m "slow or not slow" -q -rA \
        -p no:cacheprovider --durations=15 2>&1 | tee -a "$out_dir/tests.txt"
    tests_status=${PIPESTATUS[0]}
    echo "tests exit status: $tests_status (124 = timed out)" | tee -a "$out_dir/status.txt"
    [[ $tests_status -eq 0 ]] || status=1
fi

if [[ " $steps " == *" bench "* ]]; then
    echo "== benchmark ==" | tee "$out_dir/benchmark.txt"
    timeout 300 "$py" benchmarks/lightning_gpu.py --json "$out_dir/lightning_gpu.json" "$@" 2>&1 \
        | tee -a "$out_dir/benchmark.txt"
    bench_status=${PIPESTATUS[0]}
    echo "benchmark exit status: $bench_status" | tee -a "$out_dir/status.txt"
    [[ $bench_status -eq 0 ]] || status=1
fi

if [[ " $steps " == *" sharded "* ]]; then
    accelerate_bin="$(dirname "$py")/accelerate"
    [[ -x "$accelerate_bin" ]] || accelerate_bin=accelerate
    args=(-m training.train --stage 2 --init preset --max-steps 4 --global-batch-size 4 --micro-batch-size 2
          --max-length 256 --checkpoint-every 2 --no-progress --set data.image_size=128 --set eval.samples=4)
    configs=("multi_gpu_fsdp.yaml:fsdp2:--activation-checkpointing")
    if "$py" -c "import deepspeed" 2>/dev/null; then
        configs+=("deepspeed_zero3.yaml:zero3:")
    else
        echo "deepspeed does not import: ZeRO-3 not checked (pip install -e '.[deepspeed]')" \
            | tee -a "$out_dir/status.txt"
    fi
    for entry in "${configs[@]}"; do
        IFS=: read -r config name extra <<< "$entry"
        echo "== sharded training: $config ==" | tee "$out_dir/sharded_$name.txt"
        rm -rf "$out_dir/run_$name"
        timeout 180 "$accelerate_bin" launch --config_file "training/configs/accelerate/$config" --num_processes 1 \
            "${args[@]}" $extra --output "$out_dir/run_$name" 2>&1 | tee -a "$out_dir/sharded_$name.txt"
        run_status=${PIPESTATUS[0]}
        echo "sharded $name exit status: $run_status" | tee -a "$out_dir/status.txt"
        [[ $run_status -eq 0 ]] || status=1
    done
fi
exit $status
