"""The loop shared by the two dense patch-level stages that run before the VL stages: vision pre-training
(stage 0, `training/vision_pretrain.py`) and token grounding (stage 0b, `training/token_grounding.py`).

Both train on generated images batch by batch (batch `i` is samples [i*B, (i+1)*B) of the train split, so a run is
a pure function of its arguments), AdamW with a 5% warm-up and a cosine decay to a tenth, gradient norm clipped to
1, a fixed held-out batch of val images every `--eval-every` steps, one JSON line per step in metrics.jsonl, and
the whole model written atomically to output/final with a summary.json beside it.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from text_backbone.weights_io import replace_folder, temporary_folder, write_json

HELD_OUT_IMAGES = 48


def add_arguments(parser: argparse.ArgumentParser, *, steps: int, lr: float, weight_decay: float) -> None:
    """The options both stages share (their defaults differ)."""
    parser.add_argument("--output", required=True, type=Path, help="run folder: metrics.jsonl and final/")
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--batch-size", type=int, default=16, help="images per step (each is 1 + 4 tiles)")
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--weight-decay", type=float, default=weight_decay)
    parser.add_argument("--image-size", type=int, default=192)
    parser.add_argument("--font-scale", type=float, default=1.3)
    parser.add_argument("--difficulty", default="easy", choices=["easy", "normal"])
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-threads", type=int, default=None)
    parser.add_argument("--no-progress", action="store_true")


def data_options(args: argparse.Namespace) -> dict:
    """Keyword arguments of the stages' `make_batch` for the train split."""
    return dict(split="train", image_size=args.image_size, font_scale=args.font_scale, difficulty=args.difficulty)


def train(args: argparse.Namespace, *, model: nn.Module, params: list[nn.Parameter], make_batch: Callable,
          step_losses: Callable, describe: Callable[[dict], str], description: str,
          extra_record: Callable[[], dict] = dict) -> tuple[float, dict]:
    """Runs the loop; returns (training seconds, the last step's record). `make_batch(indices, **data_options)`
    gives a batch, `step_losses(batch)` (loss, metrics), `describe(val metrics)` the line printed at each eval."""
    from tqdm.auto import tqdm

    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.95))
    warmup = max(1, args.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) * (
        0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / args.steps)))))
    common = data_options(args)
    held_out = make_batch(range(HELD_OUT_IMAGES), **{**common, "split": "val"})
    args.output.mkdir(parents=True, exist_ok=True)
    seconds, record = 0.0, {}
    model.train()
    with (args.output / "metrics.jsonl").open("w") as log:
        bar = tqdm(range(args.steps), desc=description, unit="step", disable=args.no_progress)
        for step in bar:
            started = time.perf_counter()
            loss, metrics = step_losses(make_batch(range(step * args.batch_size, (step + 1) * args.batch_size),
                                                   **common))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, 1.0).item()
            optimizer.step()
            schedule.step()
            seconds += time.perf_counter() - started
            record = {"kind": "train", "step": step + 1, "loss": loss.item(), **metrics, "grad_norm": grad_norm,
                      "lr": schedule.get_last_lr()[0], **extra_record(), "train_seconds": seconds}
            if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
                model.eval()
                with torch.no_grad():
                    _, val = step_losses(held_out)
                model.train()
                record.update({f"val_{k}": v for k, v in val.items()})
                print(f"step {step + 1}: {describe(val)}", flush=True)
            log.write(json.dumps(record) + "\n")
            log.flush()
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    model.eval()
    return seconds, record


def save_final(model, args: argparse.Namespace, seconds: float, record: dict, **summary) -> Path:
    """Writes output/final atomically and output/summary.json (steps, seconds, the last held-out metrics)."""
    final = args.output / "final"
    temp = temporary_folder(final)
    model.save_pretrained(temp)
    replace_folder(temp, final)
    write_json(args.output / "summary.json", {**summary, "steps": args.steps, "train_seconds": seconds,
                                              "final": str(final),
                                              **{k: v for k, v in record.items() if k.startswith("val_")}})
    print(f"wrote {final} ({seconds / 60:.1f} training minutes)")
    return final
