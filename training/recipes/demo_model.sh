#!/usr/bin/env bash
# Trains the shipped demo model (`minimax_vl.DEMO_MODEL`): the `demo` preset through all four MiniMax-VL-01
# stages on generated easy-style charts and maps, on the CPU. See docs/MODEL_CARD.md for what it reaches.
#
#   bash training/recipes/demo_model.sh                  # 70 training minutes on 2 cores (72 wall); writes runs/demo/stage{0..4}
#   RESUME=1 bash training/recipes/demo_model.sh         # continue after a kill: finished stages are kept,
#                                                        # the interrupted one resumes from its last checkpoint
#                                                        # (stage 0, 10 minutes, has none: it starts over)
#   STEPS_SCALE=4 RUN=runs/demo_long bash training/recipes/demo_model.sh   # 4x longer stages (~4.5 h)
#   bash training/recipes/demo_model.sh && .venv/bin/python -m training.recipes.export_demo runs/demo
#
# Why it differs from the released recipe (all of it through flags, nothing hidden):
# - The released ViT was pre-trained from scratch (CoCa, 694 M image-caption pairs) before the four stages; here a
#   "stage 0" pre-trains the tower on dense text labels of the generated images instead (training/vision_pretrain.py):
#   without it, the first demo runs learned to ignore the image entirely (see the last point).
# - The demo's language model starts random, not pre-trained, so stage I trains everything (the released stage I
#   freezes a pre-trained LM) and uses dynamic resolution: a single 96-px tile is too coarse to read labels.
# - Reading is the hard part (../shared/FINDINGS.md): stage I teaches it first on words alone (label words and
#   numbers on a blank image, read back in order; minimax_vl/data/words.py), then with dense descriptions that
#   list every label and value; stage II keeps both in its mix; labels are drawn 1.3x the easy style's size.
# - The vision tower trains slower than the rest, with weight decay. Without stage 0, a run on descriptions alone
#   repeated one label word for every bar after 200 steps, and with words added the loss on held-out documents
#   was the same with their own images as with other documents' images after 400 steps (1e-3, no decay: the
#   tower's output drifted to a huge constant, mean |x| 0.8 -> 20, so all image tokens looked alike).
# - Stage III mixes short-answer questions with the full-sentence conversations so that a bare question
#   still gets the short answer the evaluation grades.
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-.venv/bin/python}
ACCELERATE=${ACCELERATE:-.venv/bin/accelerate}
ACCELERATE_CONFIG=${ACCELERATE_CONFIG:-training/configs/accelerate/cpu.yaml}
RUN=${RUN:-runs/demo}
STEPS_SCALE=${STEPS_SCALE:-1}
THREADS=${THREADS:-2}
RESUME=${RESUME:-0}
ALL='[vision_tower,multi_modal_projector,image_newline,language_model]'

COMMON=(--preset demo --global-batch-size 16 --micro-batch-size 16 --max-length 768 --no-packing
        --eval-every 100 --checkpoint-every 50 --keep-checkpoints 1000 --num-threads "$THREADS" --no-progress
        --set data.image_size=192 --set data.difficulty=easy --set data.font_scale=1.3 --set image_mode=anyres
        --set eval.samples=32 --set schedule.warmup_steps=30)

source training/recipes/stages.sh  # lr, run_stage

if [[ "$RESUME" != 1 ]]; then rm -rf "$RUN"; fi
# 0: vision pre-training: every patch of every tile classifies the text under it (training/vision_pretrain.py).
if [[ "$RESUME" == 1 && -f "$RUN/stage0/final/config.json" ]]; then
  echo "stage 0: already finished in $RUN/stage0"
else
  echo "stage 0: $((1000 * STEPS_SCALE)) steps -> $RUN/stage0   ($(date +%H:%M:%S))"
  "$PYTHON" -m training.vision_pretrain --preset demo --output "$RUN/stage0" --steps $((1000 * STEPS_SCALE)) \
    --image-size 192 --font-scale 1.3 --difficulty easy --num-threads "$THREADS" --no-progress
fi
# I: reading warm-up (words on a blank image, read back) and dense descriptions (every label and value),
#    everything trainable.
run_stage 1 $((400 * STEPS_SCALE)) --init "$RUN/stage0/final" --set "trainable=$ALL" --set "$(lr 2.0e-4 5.0e-4 1.0e-3)" --set weight_decay=0.1 --set 'data.mix=[[words, 2], [description, 1]]'
# II: short-answer questions, with descriptions kept in and text-only data at the paper's 20:1.
run_stage 2 $((900 * STEPS_SCALE)) --set "$(lr 2.0e-4 5.0e-4 1.0e-3)" --set 'data.mix=[[vqa, 20], [description, 3], [words, 2], [text_only, 1]]'
# III: instruction following (full-sentence conversations) without losing the short-answer habit.
run_stage 3 $((150 * STEPS_SCALE)) --set "$(lr 1.0e-4 3.0e-4 3.0e-4)" --set 'data.mix=[[vqa, 3], [conversation, 1]]'
# IV: DPO on injected wrong answers and repetitive replies; the epoch cap ends it before one epoch.
run_stage 4 $((50 * STEPS_SCALE)) --set "$(lr 3.0e-5 1.0e-4 1.0e-4)" --set data.num_samples=1600 --set data.rejected=mixed
echo "done: $RUN/stage4/final   ($(date +%H:%M:%S))"
