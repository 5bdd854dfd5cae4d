"""Train one stage of MiniMax-VL-01 (SPEC_NOTES §7.2) with accelerate: the same command on one CPU or many GPUs.

    accelerate launch --config_file training/configs/accelerate/cpu.yaml -m training.train \\
        --stage 1 --preset tiny --output runs/tiny/stage1 --max-steps 20 \\
        --set data.image_size=128 --set data.difficulty=easy               # tiny CPU run, about a minute
    accelerate launch --config_file training/configs/accelerate/cpu.yaml -m training.train \\
        --stage 2 --output runs/tiny/stage2 --max-steps 20                 # starts from runs/tiny/stage1/final
    accelerate launch --config_file training/configs/accelerate/cpu_2proc.yaml -m training.train --stage 1 ...
    ... -m training.train --stage 1 --output runs/tiny/stage1 --resume      # continue after a crash
    bash training/recipes/tiny_cpu.sh                                       # all four stages

`python -m training.train ...` (no launcher) is the same as the one-process CPU config. Stage tables live in
training/configs/stage{1,2,3,4}.yaml; every field can be overridden with `--set dotted.key=value` (YAML value),
and the common ones have flags. The loop itself is `training.loop`.

Test hook: MINIMAX_VL_INJECT_NONFINITE="3,4,5" (or "3:inf") makes the loss of those steps NaN (or Inf).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
from accelerate import PartialState

from training.loop import NonFiniteLossError, RunOptions, train
from training.stages import StageConfigError, load_stage

INJECT_ENV = "MINIMAX_VL_INJECT_NONFINITE"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="accelerate launch --config_file training/configs/accelerate/cpu.yaml -m training.train",
        description="Run one training stage (I alignment, II VQA instruction tuning, III conversations, IV DPO).",
        epilog="Example (tiny, CPU): ... -m training.train --stage 1 --preset tiny --output runs/tiny/stage1 "
               "--max-steps 20 --set data.image_size=128",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", required=True, help="1-4 (training/configs/stageN.yaml) or a stage YAML path")
    parser.add_argument("--output", required=True, type=Path, help="run folder: checkpoints/, final/, metrics.jsonl")
    parser.add_argument("--preset", default="tiny",
                        help="model preset when the stage starts from 'preset' (stage I); default: tiny")
    parser.add_argument("--init", help="start from this checkpoint folder instead of the stage's init")
    parser.add_argument("--resume", nargs="?", const="latest", default=None, metavar="CHECKPOINT",
                        help="continue from the newest complete checkpoint in --output (or from CHECKPOINT): "
                             "weights, optimizer, scheduler, RNG and data position")
    group = parser.add_argument_group("stage overrides (shortcuts for --set; unset flags keep the stage YAML's value)")
    group.add_argument("--max-steps", type=int, help="optimizer steps")
    group.add_argument("--global-batch-size", type=int, help="documents (DPO: pairs) per optimizer step")
    group.add_argument("--micro-batch-size", type=int, help="documents per process per forward pass")
    group.add_argument("--max-length", type=int, help="tokens per document (and per packed row)")
    group.add_argument("--packing", action=argparse.BooleanOptionalAction, default=None,
                       help="pack documents into rows with cu_seqlens (else pad)")
    group.add_argument("--dataset", help="LLaVA/ShareGPT JSON folder instead of generated data")
    group.add_argument("--eval-every", type=int, help="steps between held-out evaluations (0: start and end)")
    group.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (0: none)")
    group.add_argument("--keep-checkpoints", type=int, help="complete checkpoints to keep")
    group.add_argument("--seed", type=int)
    group.add_argument("--activation-checkpointing", action=argparse.BooleanOptionalAction, default=None,
                       help="recompute each decoder layer and ViT block in backward (less memory, ~1/3 more compute)")
    group.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="any stage field, e.g. --set learning_rates.language_model=1e-4 --set schedule.kind=wsd")
    run = parser.add_argument_group("run")
    run.add_argument("--num-threads", type=int,
                     help="torch CPU threads per process (default: torch's choice); use 1 on shared CPUs, where a "
                          "second thread that loses its core makes every step spin (docs/PERFORMANCE.md)")
    run.add_argument("--max-minutes", type=float,
                     help="stop after this many minutes of training steps (counted across resumes), saving a "
                          "checkpoint there; --resume with a larger value continues. The schedule still spans "
                          "--max-steps")
    run.add_argument("--data-workers", type=int, default=0,
                     help="DataLoader worker processes building batches ahead of the model (default: 0)")
    run.add_argument("--cpu", action="store_true", default=None, help="train on CPU even if a GPU is visible")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    run.add_argument("--loss-path", choices=("labelled", "full"), default="labelled",
                     help="labelled (default): only labelled positions reach lm_head, in vocabulary-bounded chunks; "
                          "full: build [batch, length, vocabulary] logits first (same losses, slower; for comparison)")
    return parser


_FLAG_FIELDS = {"max_steps": "max_steps", "global_batch_size": "global_batch_size",
                "micro_batch_size": "micro_batch_size", "max_length": "max_length", "packing": "packing",
                "dataset": "data.dataset", "eval_every": "eval.every", "checkpoint_every": "checkpoint.every",
                "keep_checkpoints": "checkpoint.keep", "seed": "seed",
                "activation_checkpointing": "activation_checkpointing"}


def stage_overrides(args: argparse.Namespace) -> list[str]:
    """Flag values as `key=value` overrides, followed by the explicit --set ones (which win)."""
    out = []
    for flag, key in _FLAG_FIELDS.items():
        value = getattr(args, flag)
        if value is not None:
            out.append(f"{key}={str(value).lower() if isinstance(value, bool) else value}")
    return out + list(args.overrides)


def nonfinite_injection(spec: str | None):
    """The loss hook of MINIMAX_VL_INJECT_NONFINITE: "3,4" -> NaN loss at steps 3 and 4; "5:inf" -> Inf."""
    if not spec:
        return None
    poisons = {}
    for part in spec.split(","):
        step, _, kind = part.strip().partition(":")
        poisons[int(step)] = float(kind or "nan")

    def hook(step: int, loss: torch.Tensor) -> torch.Tensor:
        return loss * poisons[step] if step in poisons else loss

    return hook


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    try:
        stage = load_stage(args.stage, stage_overrides(args))
    except StageConfigError as error:
        parser.error(str(error))
    options = RunOptions(output_dir=args.output, preset=args.preset, init=args.init, resume=args.resume,
                         cpu=args.cpu, data_workers=args.data_workers, progress=not args.no_progress,
                         loss_path=args.loss_path, max_minutes=args.max_minutes,
                         loss_hook=nonfinite_injection(os.environ.get(INJECT_ENV)))
    try:
        result = train(stage, options)
    except NonFiniteLossError as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    except (FileExistsError, FileNotFoundError, StageConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if PartialState().is_main_process:
        losses = (f"loss {result.first_loss:.4f} -> {result.last_loss:.4f} (first / last 5 steps)"
                  if result.first_loss is not None else "no step trained in this run")
        budget = f" (time budget of {args.max_minutes} minutes reached)" if result.out_of_time else ""
        print(f"stage {stage.stage}: {result.steps} steps{budget}, {losses}, {result.skipped_steps} skipped; "
              f"held-out {result.eval_before} -> {result.eval_after}; weights in {result.final_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
