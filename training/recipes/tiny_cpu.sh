#!/usr/bin/env bash
# All four MiniMax-VL-01 training stages on the tiny preset, on generated data made on the fly, on the CPU.
#
#   bash training/recipes/tiny_cpu.sh                    # ~5 minutes on 2 cores; writes runs/tiny_cpu/stage{1,2,3,4}
#   RUN=runs/mine STEPS_SCALE=4 bash training/recipes/tiny_cpu.sh    # 4x longer stages
#   ACCELERATE_CONFIG=training/configs/accelerate/cpu_2proc.yaml bash training/recipes/tiny_cpu.sh
#
# Each stage starts from the previous stage's export (stage N's init in its YAML is stage{N-1}/final, read
# relative to the run folder); stage I starts from the tiny preset with a random projector. The tiny language
# model is random and frozen in stage I, so stage I's loss can only fall a little (see docs/PERFORMANCE.md).
# Prints each stage's first and last training loss and its held-out metric before and after.
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-.venv/bin/python}
ACCELERATE=${ACCELERATE:-.venv/bin/accelerate}
ACCELERATE_CONFIG=${ACCELERATE_CONFIG:-training/configs/accelerate/cpu.yaml}
RUN=${RUN:-runs/tiny_cpu}
STEPS_SCALE=${STEPS_SCALE:-1}
THREADS=${THREADS:-1}   # on 2 shared cores one thread per process beats two (no OpenMP spinning)

# Small documents and images keep a step well under a second: 128 px charts/maps, <=384 tokens per document.
COMMON=(--preset tiny --global-batch-size 4 --micro-batch-size 4 --max-length 384 --eval-every 0
        --checkpoint-every 0 --num-threads "$THREADS" --no-progress
        --set data.image_size=128 --set data.difficulty=easy --set eval.samples=8 --set schedule.warmup_steps=3)

rm -rf "$RUN"
run_stage() {  # stage, steps, extra arguments...
  local stage=$1 steps=$2
  shift 2
  "$ACCELERATE" launch --config_file "$ACCELERATE_CONFIG" -m training.train --stage "$stage" \
    --output "$RUN/stage$stage" --max-steps $((steps * STEPS_SCALE)) "${COMMON[@]}" "$@"
}

# Stage I: the frozen random LM leaves little to align to; a higher projector rate shows the effect sooner.
run_stage 1 40 --set learning_rates.vision_tower=1e-3 --set learning_rates.multi_modal_projector=3e-3
# Stages II and III train everything from scratch-level weights: rates well above the fine-tuning defaults.
run_stage 2 60 --set learning_rates.language_model=2e-3 --set learning_rates.multi_modal_projector=2e-3 \
               --set learning_rates.image_newline=2e-3 --set learning_rates.vision_tower=5e-4
run_stage 3 40 --set learning_rates.language_model=1e-3 --set learning_rates.multi_modal_projector=1e-3 \
               --set learning_rates.image_newline=1e-3 --set learning_rates.vision_tower=3e-4
# Stage IV: DPO pairs; the epoch cap (0.9 of data.num_samples) ends it before one epoch.
run_stage 4 1000 --set data.num_samples=160 --set learning_rates.language_model=3e-4 \
               --set learning_rates.multi_modal_projector=3e-4 --set learning_rates.image_newline=3e-4 \
               --set learning_rates.vision_tower=1e-4 --set eval.samples=16

"$PYTHON" - "$RUN" <<'PY'
import json, sys
from pathlib import Path

print(f"\n{'stage':<7}{'steps':>6}{'first loss':>12}{'last loss':>12}   held-out before -> after"
      "   (losses: mean of the first / last 5 steps)")
for stage in (1, 2, 3, 4):
    summary = json.loads((Path(sys.argv[1]) / f"stage{stage}" / "summary.json").read_text())
    before, after = summary["eval_before"], summary["eval_after"]
    margin = f"   val_margin {before['val_margin']:.4f} -> {after['val_margin']:.4f}" if "val_margin" in after else ""
    print(f"{stage:<7}{summary['steps']:>6}{summary['first_loss']:>12.4f}{summary['last_loss']:>12.4f}   "
          f"val_loss {before['val_loss']:.4f} -> {after['val_loss']:.4f}{margin}")
PY
