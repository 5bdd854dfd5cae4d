#!/usr/bin/env bash
# Trains the demo model to read, then answer (issue "The demo model reads"): every first reply after an image is
# the image's transcription in a fixed scan order, then "Answer: <short answer>" (minimax_vl/data/reading.py).
# It continues from a base model (the previous demo model: stage 0 + the four stages, 70 CPU-minutes): first token
# grounding (stage 0b, training/token_grounding.py: image tokens that show text are pulled onto the LM's embedding of
# that text), then the package's own stages I-IV. See docs/MODEL_CARD.md for what it reaches.
#
#   BASE=runs/base_demo_model bash training/recipes/reading_model.sh     # writes runs/reading/stage{1..4}
#   RESUME=1 bash training/recipes/reading_model.sh      # continue after a kill: finished stages are kept, the
#                                                        # interrupted one resumes from its last checkpoint
#   S2_STEPS=4000 RUN=runs/reading_long bash training/recipes/reading_model.sh   # a longer stage II
#   FIRST_SAMPLE=20000 ... # train on generated samples from index 20000 on (a run continuing a finished one on new
#                          # images: its stages each saw fewer than S*16 samples, S their steps)
#   CONTINUE=runs/read5/stage4/final RUN=runs/read6 FIRST_SAMPLE=30000 S2_STEPS=2000 \
#     bash training/recipes/reading_model.sh
#                          # continue a finished read-first model on new images: stages 0b and I are taken as done
#                          # (CONTINUE is their final model) and stages II-IV train again from it
#   FACTS=true ...         # every answer follows the facts the question names (data.facts; reasoning_text.sh)
#   WORKED_STEPS=true ...  # with FACTS=true: largest / smallest / intersection / difference answers follow worked steps
#                          # (reading.worked_steps; measured on text only so far: docs/MODEL_CARD.md)
#   LM_LR=1e-3 ...         # the language model's rate in stages I and II (default 3e-4; see the note at stage I)
#   DRILL="intersection largest_slice" DRILL_WEIGHT=3 ...
#                          # stage II also trains drill samples (true transcription given, every question of these
#                          # types; data.question_types) at this weight beside the mix's 16: the types a model fails
#   PROCESSES=1 THREADS=2 bash training/recipes/reading_model.sh  # one process (default: 2 DDP processes x 1 thread,
#                                                        # the fastest on a 2-core CPU: benchmarks/train_throughput.py)
#   .venv/bin/python -m training.recipes.export_demo runs/reading                 # -> minimax_vl/assets/demo_model
#
# BASE defaults to the model shipped in the package; copy it aside first (cp -r minimax_vl/assets/demo_model
# runs/base_demo_model) when you mean to export over it. Without a base, run training/recipes/demo_model.sh first
# (stage 0 vision pre-training + the four stages) and pass BASE=runs/demo/stage4/final.
#
# The data (all generated on the fly, easy style, 192-px images, labels 1.3x):
#   reading    "Read this chart." -> the transcription alone: what the reading probe measures.
#   vqa        short-answer questions; with data.read_first=true the first reply reads, then answers.
#   reasoning  the same read-first conversations without an image: the transcription is given (context, not
#              trained) and only the answers train. No vision forward, so they are cheap and plentiful.
#   words      the reading warm-up of the base recipe (words on a blank image), kept at a low weight.
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-.venv/bin/python}
ACCELERATE=${ACCELERATE:-.venv/bin/accelerate}
PROCESSES=${PROCESSES:-2}
if [[ "$PROCESSES" == 2 ]]; then DEFAULT_CONFIG=training/configs/accelerate/cpu_2proc.yaml; else DEFAULT_CONFIG=training/configs/accelerate/cpu.yaml; fi
ACCELERATE_CONFIG=${ACCELERATE_CONFIG:-$DEFAULT_CONFIG}
RUN=${RUN:-runs/reading}
BASE=${BASE:-minimax_vl/assets/demo_model}
THREADS=${THREADS:-1}  # per process
RESUME=${RESUME:-0}
FIRST_SAMPLE=${FIRST_SAMPLE:-0}
GROUNDING_STEPS=${GROUNDING_STEPS:-800}
S1_STEPS=${S1_STEPS:-400}
S2_STEPS=${S2_STEPS:-2000}
S3_STEPS=${S3_STEPS:-150}
S4_STEPS=${S4_STEPS:-50}
LM_LR=${LM_LR:-3.0e-4}  # the language model's peak rate in stages I and II
FACTS=${FACTS:-false}   # true: "Facts: ..." (the transcription's entries the question names) before each answer
WORKED_STEPS=${WORKED_STEPS:-false}  # with FACTS=true: worked steps for largest / smallest / intersection / difference
DRILL=${DRILL:-}        # question types drilled in stage II (space-separated tags), none by default
DRILL_WEIGHT=${DRILL_WEIGHT:-3}
ALL='[vision_tower,multi_modal_projector,image_newline,language_model]'

COMMON=(--preset demo --global-batch-size 16 --micro-batch-size $((16 / PROCESSES)) --max-length 768 --no-packing
        --eval-every 200 --checkpoint-every 50 --keep-checkpoints 1000 --num-threads "$THREADS" --no-progress
        --set data.image_size=192 --set data.difficulty=easy --set data.font_scale=1.3 --set image_mode=anyres
        --set data.read_first=true --set "data.facts=$FACTS" --set "data.worked_steps=$WORKED_STEPS"
        --set eval.samples=32 --set schedule.warmup_steps=100
        --set "trainable=$ALL" --set weight_decay=0.1 --set "data.first_sample=$FIRST_SAMPLE")

source training/recipes/stages.sh  # lr, run_stage

if [[ "$RESUME" != 1 ]]; then rm -rf "$RUN"; fi
if [[ -n "${CONTINUE:-}" ]]; then
  if [[ ! -f "$CONTINUE/config.json" ]]; then
    echo "CONTINUE=$CONTINUE is not a model folder (no config.json)" >&2
    exit 2
  fi
  for done_stage in grounding stage1; do  # a finished stage is its final/ folder: this model stands for both
    if [[ ! -f "$RUN/$done_stage/final/config.json" ]]; then
      mkdir -p "$RUN/$done_stage" && cp -r "$CONTINUE" "$RUN/$done_stage/final"
    fi
  done
  RESUME=1  # run_stage keeps a finished stage only when resuming: the copied ones count as finished
fi
# 0b: token grounding (one process, both threads; a few minutes): the decoder will see labels as its own tokens.
if [[ -f "$RUN/grounding/final/config.json" ]]; then
  echo "stage 0b: already finished in $RUN/grounding"
else
  echo "stage 0b: $GROUNDING_STEPS steps -> $RUN/grounding   ($(date +%H:%M:%S))"
  "$PYTHON" -m training.token_grounding --init "$BASE" --output "$RUN/grounding" --steps "$GROUNDING_STEPS" \
    --num-threads "$((PROCESSES * THREADS))" --no-progress
fi
# The language model trains at 3e-4 after 100 warm-up steps: at 1e-3 without warm-up (this recipe's first setting)
# the demo decoder did not even learn that an answer is one of the values in its context
# (benchmarks/in_context_recall.py; docs/MODEL_CARD.md, "What limits reading").
# I: learn the transcription format on the grounded image tokens, which stay fixed (tower and projector frozen);
# reasoning documents teach the answers.
run_stage 1 "$S1_STEPS" --init "$RUN/grounding/final" --set "$(lr 0.0 0.0 "$LM_LR")" \
  --set 'trainable=[language_model]' --set 'data.mix=[[reading, 4], [reasoning, 3], [words, 1]]'
# II: read-first questions, transcriptions and text-only reasoning (the paper's text share is the reasoning here).
S2_MIX='[vqa, 6], [reading, 3], [reasoning, 6], [text_only, 1]'
DRILL_SET=()
if [[ -n "$DRILL" ]]; then
  S2_MIX="$S2_MIX, [drill, $DRILL_WEIGHT]"
  DRILL_SET=(--set "data.question_types=[${DRILL// /, }]")
fi
run_stage 2 "$S2_STEPS" --set "$(lr 5.0e-5 1.0e-4 "$LM_LR")" --set schedule.kind=wsd --set "data.mix=[$S2_MIX]" \
  "${DRILL_SET[@]}"
# III: instruction following (full-sentence conversations) while bare questions keep reading first.
run_stage 3 "$S3_STEPS" --set "$(lr 5.0e-5 1.5e-4 1.5e-4)" --set 'data.mix=[[vqa, 3], [reasoning, 2], [conversation, 1]]'
# IV: DPO: chosen and rejected replies share the transcription and differ in the answer.
run_stage 4 "$S4_STEPS" --set "$(lr 2.0e-5 5.0e-5 5.0e-5)" --set data.num_samples=1600 --set data.rejected=distractor
echo "done: $RUN/stage4/final   ($(date +%H:%M:%S))"
