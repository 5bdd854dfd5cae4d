"""Learning curve of a staged run: accuracy per question type and the reading probe against training minutes.

    .venv/bin/python -m training.recipes.learning_curve runs/demo                 # all checkpoints, 60 test images
    .venv/bin/python -m training.recipes.learning_curve runs/demo --images 100 --split heldout
    .venv/bin/python -m training.recipes.learning_curve runs/reading --base runs/base_demo_model --base-minutes 69.8

A run that continues from an earlier model (`--base`, as training/recipes/reading_model.sh does) puts that model
first, at `--base-minutes` (the training minutes it had cost), and counts every later point from there.
The reading probe (`minimax_vl.vqa.read_images`) asks each image for its transcription and scores every field by
exact match, so each point shows whether reading improved next to whether answers did.

Walks runs/X/stage{1,2,3,4}/checkpoints/step_*/ and each stage's final/ in training order, loads the model
weights of each, answers the same generated test questions (the demo data: `minimax_vl.demos.data`) and writes
runs/X/curve-<split>.json and .png. Minutes are wall-clock minutes spent in training steps (`train_seconds` in
each stage's metrics.jsonl), summed over the stages before, vision pre-training (stage0/) and token grounding
(grounding/, a point of its own) included. Results are cached in the JSON by checkpoint, so
it can run again while training goes on and only evaluates what is new.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from minimax_vl.answers import MAX_REPLY_TOKENS
from minimax_vl.data.samples import make_sample
from minimax_vl.data.scoring import score_predictions
from minimax_vl.demos.data import demo_generator_config
from minimax_vl.model import MiniMaxVL01
from minimax_vl.vqa import answer_records, questions_of, read_images, reading_records, reading_report
from text_backbone.weights_io import write_json

STAGES = (1, 2, 3, 4)


def stage_seconds(stage_dir: Path) -> dict[int, float]:
    """step -> cumulative training seconds of this stage, from metrics.jsonl (steps without a record are
    filled from the nearest earlier one)."""
    seconds: dict[int, float] = {}
    path = stage_dir / "metrics.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record.get("kind") == "train" and "train_seconds" in record:
                seconds[record["step"]] = record["train_seconds"]
    return seconds


def seconds_at(seconds: dict[int, float], step: int) -> float:
    earlier = [s for s in seconds if s <= step]
    return seconds[max(earlier)] if earlier else 0.0


def points(run: Path, base: Path | None = None, base_minutes: float = 0.0) -> list[dict]:
    """Every evaluable point of the run, in training order: {stage, step, path, kind, minutes}."""
    out, offset = [], base_minutes * 60
    if base is not None:
        out.append(dict(stage=0, step=0, path=str(base), kind="final", minutes=base_minutes))
    stage0 = run / "stage0" / "summary.json"  # vision pre-training (training/vision_pretrain.py), if the run had it
    if stage0.exists():
        offset += json.loads(stage0.read_text())["train_seconds"]
    grounding = run / "grounding" / "summary.json"  # token grounding (training/token_grounding.py), if the run had it
    if grounding.exists():
        offset += json.loads(grounding.read_text())["train_seconds"]
        out.append(dict(stage=0, step=json.loads(grounding.read_text())["steps"], path=str(run / "grounding" / "final"),
                        kind="final", minutes=offset / 60))
    for stage in STAGES:
        stage_dir = run / f"stage{stage}"
        if not stage_dir.exists():
            break
        seconds = stage_seconds(stage_dir)
        steps = sorted((int(m.group(1)), p) for p in (stage_dir / "checkpoints").glob("step_*")
                       if (m := re.fullmatch(r"step_(\d+)", p.name)) and (p / "model.safetensors").exists())
        final = stage_dir / "final"
        summary = stage_dir / "summary.json"
        final_step = json.loads(summary.read_text())["steps"] if final.joinpath("config.json").exists() and summary.exists() else None
        for step, path in steps:
            if step == final_step:
                continue  # the same weights as final/
            out.append(dict(stage=stage, step=step, path=str(path), kind="checkpoint",
                            minutes=(offset + seconds_at(seconds, step)) / 60))
        if final_step is not None:
            out.append(dict(stage=stage, step=final_step, path=str(final), kind="final",
                            minutes=(offset + seconds_at(seconds, final_step)) / 60))
        offset += max(seconds.values(), default=0.0)
    return out


def load_point(point: dict, template: MiniMaxVL01) -> MiniMaxVL01:
    if point["kind"] == "final":
        return MiniMaxVL01.from_pretrained(point["path"]).eval()
    state = load_file(str(Path(point["path"]) / "model.safetensors"))
    template.load_state_dict(state, strict=True)
    return template.eval()


def evaluate(model: MiniMaxVL01, samples, max_new_tokens: int) -> dict:
    records = [r for s in samples for r in questions_of(s)]
    answered = list(answer_records(model, records, max_new_tokens=max_new_tokens, progress=False))
    report = score_predictions([r.as_score_record() for r in answered])
    reading = reading_report(read_images(model, reading_records(samples), max_new_tokens=max_new_tokens,
                                         progress=False))
    kinds = {}
    for record in report["records"]:
        kind = record["question_type"].split("/")[0]
        correct, total = kinds.get(kind, (0, 0))
        kinds[kind] = (correct + record["correct"], total + 1)
    return {"overall": report["overall"]["accuracy"], "questions": report["overall"]["total"],
            "per_kind": {k: c / t for k, (c, t) in kinds.items()},
            "per_type": {k: v["accuracy"] for k, v in report["per_type"].items()},
            "reading": reading["overall"]["accuracy"],
            "reading_per_kind": {k: v["accuracy"] for k, v in reading["by_kind"].items()}}


def plot(curve: list[dict], path: Path, title: str, stage0_minutes: float = 0.0) -> None:
    """Three panels: overall (chart, map, all), chart question types, map question types."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    types = sorted({t for p in curve for t in p["per_type"]})
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    minutes = [p["minutes"] for p in curve]
    for kind, colour in (("chart", "tab:blue"), ("map", "tab:orange")):
        axes[0].plot(minutes, [p["per_kind"].get(kind, 0) for p in curve], marker="o", ms=3, label=f"{kind} answers",
                     color=colour)
        axes[0].plot(minutes, [p.get("reading_per_kind", {}).get(kind, float("nan")) for p in curve], ls="--",
                     marker="x", ms=3, color=colour, label=f"{kind} reading probe")
    axes[0].plot(minutes, [p["overall"] for p in curve], color="black", lw=2, label="all answers")
    colours = plt.get_cmap("tab20").colors
    for ax, kind in zip(axes[1:], ("chart", "map")):
        mine = [t for t in types if t.startswith(kind + "/")]
        for i, t in enumerate(mine):
            ax.plot(minutes, [p["per_type"].get(t, float("nan")) for p in curve], label=t.split("/", 1)[1],
                    color=colours[i % len(colours)], lw=1.4, ls=("-", "--")[i % 2])
        ax.legend(fontsize=7, ncol=2, loc="upper left")
    boundaries = [p["minutes"] for p in curve if p["kind"] == "final"]
    for ax, name in zip(axes, ("overall", "chart questions", "map questions")):
        if stage0_minutes:
            ax.axvspan(0, stage0_minutes, color="grey", alpha=0.12, lw=0)
        for b in boundaries:
            ax.axvline(b, color="grey", ls=":", lw=0.8)
        ax.set_xlim(0, max(minutes) * 1.02)
        ax.set_xlabel("training minutes, 2 CPU cores (shaded: before this run; dotted: end of a stage)", fontsize=8)
        ax.set_ylabel("relaxed accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{title}: {name}")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="run folder holding stage1/ ... stage4/")
    parser.add_argument("--images", type=int, default=60, help="test images per point (default 60, ~200 questions)")
    parser.add_argument("--split", default="test", help="generator split: test (default) or heldout")
    parser.add_argument("--preset", default="demo", help="model preset the checkpoints were trained from")
    parser.add_argument("--every", type=int, default=1, help="evaluate every k-th checkpoint (finals always)")
    parser.add_argument("--max-new-tokens", type=int, default=MAX_REPLY_TOKENS)
    parser.add_argument("--base", type=Path, help="the model the run's stage 1 started from (evaluated first)")
    parser.add_argument("--base-minutes", type=float, default=0.0,
                        help="training minutes the base model had cost; later points count on from there")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    out = args.run / f"curve-{args.split}.json"
    cache = {p["path"]: p for p in json.loads(out.read_text())} if out.exists() else {}
    todo = points(args.run, args.base, args.base_minutes)
    if not todo:
        print(f"no checkpoints under {args.run}/stage*/", file=sys.stderr)
        return 2
    checkpoints = [p for p in todo if p["kind"] == "checkpoint"]
    keep = {id(p) for p in checkpoints[args.every - 1::args.every]} | {id(p) for p in todo if p["kind"] == "final"}
    todo = [p for p in todo if id(p) in keep]
    config = demo_generator_config(args.split)
    samples = [make_sample(config, i) for i in range(args.images)]
    template = MiniMaxVL01.from_preset(args.preset)
    curve = []
    for point in todo:
        cached = cache.get(point["path"])
        if cached and cached.get("questions") and cached.get("step") == point["step"] and "reading" in cached:
            curve.append({**cached, "minutes": point["minutes"]})
            continue
        model = load_point(point, template)
        with torch.inference_mode():
            result = evaluate(model, samples, args.max_new_tokens)
        curve.append({**point, **result})
        print(f"stage {point['stage']} step {point['step']:>5} ({point['minutes']:6.1f} min): "
              f"all {result['overall']:.3f}  " + "  ".join(f"{k} {v:.3f}" for k, v in sorted(result['per_kind'].items()))
              + f"  reading {result['reading']:.3f}", flush=True)
        write_json(out, curve)
    write_json(out, curve)
    stage0 = args.run / "stage0" / "summary.json"
    stage0_minutes = json.loads(stage0.read_text())["train_seconds"] / 60 if stage0.exists() else args.base_minutes
    plot(curve, out.with_suffix(".png"), f"{args.run.name} ({args.split})", stage0_minutes)
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
