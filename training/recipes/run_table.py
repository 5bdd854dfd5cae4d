"""A staged run as a Markdown table: steps, samples, minutes, data, learning rates, losses, held-out metrics.

    .venv/bin/python -m training.recipes.run_table runs/demo

Reads stage0/summary.json (vision pre-training, when the run has one), grounding/summary.json (token grounding) and stage{1..4}/{summary.json,stage.yaml,
metrics.jsonl}; docs/MODEL_CARD.md's training table is this script's output.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml


def _minutes(stage_dir: Path) -> float:
    seconds = 0.0
    for line in (stage_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        seconds = max(seconds, record.get("train_seconds", 0.0))
    return seconds / 60


def _mix(stage: dict) -> str:
    mix = stage["data"]["mix"]
    if isinstance(mix, int):
        from minimax_vl.data.samples import STAGE_MIXES

        mix = STAGE_MIXES[mix]
    return " : ".join(f"{kind} {weight:g}" for kind, weight in mix)


def table(run: Path) -> str:
    lines = ["| stage | steps × batch | minutes | data (weights) | learning rates (ViT / projector / LM) | "
             "train loss first → last | held-out loss (other documents' images) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    total = 0.0
    # The patch-level stages before stage I, when the run had them: (folder, stage, data, learning rate, result).
    before = [("stage0", "0 vision pre-training", "text class per patch", "1e-3 (ViT and heads only)",
               lambda s: f"patch accuracy on text: word {s['val_text_word_acc']:.0%}, "
                         f"character {s['val_text_char_acc']:.0%}"),
              ("grounding", "0b token grounding", "the LM's embedding of the token under each text patch",
               "5e-4 (ViT and projector; LM frozen)",
               lambda s: f"text patches nearest their token: {s['val_token_acc']:.0%}")]
    for folder, stage, data, rate, result in before:
        path = run / folder / "summary.json"
        if path.exists():
            s = json.loads(path.read_text())
            total += s["train_seconds"] / 60
            lines.append(f"| {stage} | {s['steps']} × 16 images | {s['train_seconds'] / 60:.1f} | words, charts, "
                         f"maps: {data} | {rate} | — | {result(s)} |")
    for number in (1, 2, 3, 4):
        stage_dir = run / f"stage{number}"
        if not (stage_dir / "summary.json").exists():
            break
        summary = json.loads((stage_dir / "summary.json").read_text())
        stage = yaml.safe_load((stage_dir / "stage.yaml").read_text())
        rates = stage["learning_rates"]
        lr = " / ".join(f"{rates.get(k, 0):g}" for k in ("vision_tower", "multi_modal_projector", "language_model"))
        minutes = _minutes(stage_dir)
        total += minutes
        after, before = summary["eval_after"], summary["eval_before"]
        if "val_margin" in after:
            held = f"DPO margin {before['val_margin']:.2f} → {after['val_margin']:.2f}, pair accuracy {after['val_accuracy']:.0%}"
        else:
            other = after.get("val_loss_other_images")
            held = f"{before['val_loss']:.2f} → {after['val_loss']:.2f}" + (f" ({other:.2f})" if other else "")
        lines.append(f"| {number} {stage['name']} | {summary['steps']} × {stage['global_batch_size']} | {minutes:.1f} | "
                     f"{_mix(stage)} | {lr} | {summary['first_loss']:.3f} → {summary['last_loss']:.3f} | {held} |")
    lines.append(f"| total | | {total:.1f} | | | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    print(table(Path(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
