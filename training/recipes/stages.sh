# Shared by the recipes (sourced, not run): one stage through `accelerate launch`, resumable, and the learning-rate
# override. The caller sets ACCELERATE, ACCELERATE_CONFIG, RUN, RESUME and the array COMMON (flags for every stage).

lr() {  # "learning_rates=..." from three YAML floats: vision tower, projector (and image_newline), language model
  echo "learning_rates={vision_tower: $1, multi_modal_projector: $2, image_newline: $2, language_model: $3}"
}

run_stage() {  # stage, steps, extra arguments...
  # RESUME=1: a finished stage (final/ written) is kept; an interrupted one continues from its last checkpoint.
  local stage=$1 steps=$2
  shift 2
  local out="$RUN/stage$stage"
  if [[ -f "$out/final/config.json" && "$RESUME" == 1 ]]; then
    echo "stage $stage: already finished in $out"
    return
  fi
  local resume=()
  if [[ "$RESUME" == 1 && -d "$out/checkpoints" ]]; then resume=(--resume); fi
  echo "stage $stage: $steps steps -> $out   ($(date +%H:%M:%S))"
  "$ACCELERATE" launch --config_file "$ACCELERATE_CONFIG" -m training.train --stage "$stage" --output "$out" \
    --max-steps "$steps" "${COMMON[@]}" "${resume[@]}" "$@"
}
