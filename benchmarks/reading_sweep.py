"""Text big enough to read: choose the image geometry from the reading probe's accuracy per training minute.

    .venv/bin/python benchmarks/reading_sweep.py --minutes 12 --images 40 --threads 2   # all 7 candidates, ~2 h
    .venv/bin/python benchmarks/reading_sweep.py --candidates demo,patch-12 --minutes 6 --images 20
    .venv/bin/python benchmarks/reading_sweep.py --list              # the candidates and their geometry, no training

Run it on an otherwise idle machine: the numbers are training minutes, and a busy CPU makes every candidate look
slow in a different way. Time: each candidate trains for `--minutes`; at each of the `--marks` minute marks the
probe reads `--images` images (measured 1.3 CPU-seconds per image for the demo-sized model writing its 192-token
limit, less once it learns to stop) and the trainer restarts, scores 8 held-out documents and exports (seconds).
So 7 candidates x 12 minutes, 40 images, 4 marks: 7 x (12 + 4 x ~1) minutes, about 2 hours, and ~250 MB of disk
per candidate (initial weights, the last mark's checkpoint and export).

A candidate is a named geometry: the generated image size (`data.image_size`), the ViT tile and patch size, the anyres
grid (up to k x k tiles), and the label font scale (`data.font_scale`). Everything else is the `demo` preset's (ViT
width and depth, the language model), built with `MiniMaxVL01Config.with_vision`. What decides whether text is
legible to the tower is the label's height in patches on the anyres canvas: the easy style draws labels at a fixed
fraction of the image side (times the font scale), and the image is resized onto the canvas of tiles, so
label patches = 0.085 x font scale x canvas side / patch size (1.3 patches for the demo: 21-px labels, 16-px patches).
Smaller patches, bigger tiles or more of them raise it, and each costs image tokens; a bigger font scale is free
in tokens but leaves less room: map layouts stop fitting above 1.4 (at 1.5 about one map in five has no layout,
at 1.6 none has), so the font candidate is 1.4, and every candidate's layouts are checked before any training.

Each candidate trains a fresh model (random initialisation, the same seed) with the package's own trainer
(`training.loop.train`, a `StageConfig` built here): everything trainable, reading-first data only (sample kinds
`reading` and `words`, 4:1, easy style, generated on the fly), the learning rates of the demo recipe's stage I, warm-up
then a constant rate (a time budget does not know its step count, so nothing decays and every mark is a point on one
learning curve). The run stops at each minute mark (`RunOptions.max_minutes`, minutes spent in training steps,
data generation included), checkpoints, and resumes towards the next mark. At each mark the reading probe
(`minimax_vl.vqa.read_images`) asks the same test-split images for their transcription (the same seeds for every
candidate, drawn at the candidate's size and font scale) and scores every field by exact match.

Prints one table (image tokens, label height in patches, seconds per step, samples seen, probe accuracy at every
mark, chart / map accuracy and held-out loss at the last) and writes `--out`/sweep.json (default
runs/reading_sweep/): settings, each candidate's geometry and measurements per mark, and what the model wrote for
each probe image at the last mark. Candidate runs live in `--out`/<name>/ (initial weights, checkpoint, metrics);
running the sweep again starts them over.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from minimax_vl.answers import MAX_REPLY_TOKENS
from minimax_vl.config import MiniMaxVL01Config
from minimax_vl.data.samples import GeneratorConfig, make_sample
from minimax_vl.data.styles import difficulty
from minimax_vl.model import MiniMaxVL01
from minimax_vl.processor import MiniMaxVL01Processor
from minimax_vl.vqa import read_images, reading_records, reading_report
from text_backbone.weights_io import write_json
from training.loop import RunOptions, train
from training.stages import COMPONENTS, StageConfig, stage_from_dict
from vision.anyres import select_best_resolution

DIFFICULTY = "easy"
TRAINING_MIX = (("reading", 4.0), ("words", 1.0))  # the reading probe's own task, and the reading warm-up
# The demo recipe's stage-I rates, for a model that starts random (training/recipes/demo_model.sh).
LEARNING_RATES = {"vision_tower": 2e-4, "multi_modal_projector": 5e-4, "image_newline": 5e-4, "language_model": 1e-3}
WARMUP_STEPS = 30
# The schedule spans max_steps; with a step count no run reaches it stays at the peak rate after the warm-up.
ENDLESS_STEPS = 10_000_000
LAYOUT_CHECK_SAMPLES = 64  # training samples whose layouts must fit before a candidate is trained


@dataclass(frozen=True)
class Geometry:
    """How images are drawn and cut for the tower. Square images (the easy style draws only those)."""

    name: str
    image_size: int  # generated image side in px (data.image_size); labels scale with it
    tile_size: int  # ViT input side (VisionConfig.image_size)
    patch_size: int
    max_tiles_per_side: int  # anyres grids of up to k x k tiles (plus the thumbnail)
    font_scale: float  # data.font_scale: multiplies the easy style's label size
    why: str = ""

    def model_config(self, preset: str) -> MiniMaxVL01Config:
        return MiniMaxVL01Config.from_preset(preset).with_vision(
            image_size=self.tile_size, patch_size=self.patch_size, max_tiles_per_side=self.max_tiles_per_side)

    def data(self, split: str, sample_kinds: Sequence[tuple[str, float]]) -> GeneratorConfig:
        return GeneratorConfig(split=split, sample_kinds=tuple(sample_kinds), image_size=self.image_size,
                               difficulty=DIFFICULTY, font_scale=self.font_scale)


def geometry_facts(geometry: Geometry, processor: MiniMaxVL01Processor) -> dict[str, Any]:
    """Image tokens and tiles per image, the anyres canvas, and the nominal label height in patches on it."""
    images = processor.image_processor
    side = geometry.image_size
    canvas = select_best_resolution((side, side), images.grid_pinpoints)
    label_px = difficulty(DIFFICULTY).label_font_fraction * geometry.font_scale * canvas[0]  # drawn, then resized
    return {"image_tokens": images.num_image_tokens(side, side), "tiles": images.num_tiles(side, side),
            "canvas": list(canvas), "label_patches": round(label_px / geometry.patch_size, 2)}


CANDIDATES = {g.name: g for g in (
    Geometry("demo", 192, 96, 16, 2, 1.3, "the shipped demo model's geometry"),
    Geometry("font-1.4", 192, 96, 16, 2, 1.4, "bigger labels at no token cost; the largest scale whose maps fit"),
    Geometry("patch-12", 192, 96, 12, 2, 1.3, "finer patches over the same pixels"),
    Geometry("patch-14", 224, 112, 14, 2, 1.3, "the released model's 14-px patches, 8x8 per tile"),
    Geometry("tile-112", 224, 112, 16, 2, 1.3, "bigger tiles and image, same patches"),
    Geometry("tile-128", 256, 128, 16, 2, 1.3, "bigger still: 8x8 patches per tile"),
    Geometry("grid-3x3", 288, 96, 16, 3, 1.3, "more of the demo's tiles"),
)}


# ---------------------------------------------------------------------- data
def probe_samples(geometry: Geometry, count: int) -> list:
    """The first `count` reading samples of the test split: the same seeds (scenes) for every candidate, drawn at
    the candidate's image size and font scale."""
    config = geometry.data("test", (("reading", 1.0),))
    return [make_sample(config, i) for i in range(count)]


def check_layouts(geometry: Geometry, probe_images: int, count: int = LAYOUT_CHECK_SAMPLES) -> None:
    """Raises ValueError now, not an hour into the sweep, when the labels of the first `count` training samples
    or of the probe images do not fit the candidate's images."""
    for split, kinds, samples in (("train", TRAINING_MIX, count), ("test", (("reading", 1.0),), probe_images)):
        config = geometry.data(split, kinds)
        for index in range(samples):
            try:
                make_sample(config, index, draw=False)  # plans every layout, paints nothing
            except RuntimeError as error:
                raise ValueError(f"candidate {geometry.name!r}: {split} sample {index} has no layout that fits "
                                 f"({error}); lower its font_scale or raise its image_size") from None


def reading_stage(geometry: Geometry, *, batch_size: int, eval_samples: int, seed: int) -> StageConfig:
    """Reading-first training from scratch: every component trains, warm-up then a constant rate."""
    return stage_from_dict({
        "stage": 1, "name": f"reading sweep: {geometry.name}", "objective": "lm",
        "trainable": list(COMPONENTS), "learning_rates": dict(LEARNING_RATES), "weight_decay": 0.1,
        "schedule": {"kind": "wsd", "warmup_steps": WARMUP_STEPS},
        "max_steps": ENDLESS_STEPS, "global_batch_size": batch_size, "micro_batch_size": batch_size,
        # Unpacked rows are padded to the longest document of the batch, so this only has to exceed it.
        "max_length": 2048, "packing": False, "image_mode": "anyres",
        "data": {"mix": [list(kind) for kind in TRAINING_MIX], "image_size": geometry.image_size,
                 "difficulty": DIFFICULTY, "font_scale": geometry.font_scale},
        "eval": {"every": 0, "samples": eval_samples, "split": "val"},
        "checkpoint": {"every": 0, "keep": 1},  # the time budget checkpoints at each mark
        "seed": seed, "log_every": 10,
    }, source=f"reading sweep stage for {geometry.name}")


# ---------------------------------------------------------------------- one candidate
@dataclass
class SweepSettings:
    preset: str = "demo"
    minutes: float = 12.0
    marks: int = 4
    images: int = 40
    batch_size: int = 16
    eval_samples: int = 8
    max_new_tokens: int = MAX_REPLY_TOKENS
    seed: int = 0

    def mark_minutes(self) -> list[float]:
        return [self.minutes * (i + 1) / self.marks for i in range(self.marks)]


def initial_weights(geometry: Geometry, settings: SweepSettings, folder: Path) -> MiniMaxVL01:
    """A random model of the candidate's geometry, saved where the trainer starts from (`RunOptions.init`)."""
    config = geometry.model_config(settings.preset)
    torch.manual_seed(settings.seed)
    model = MiniMaxVL01(config, processor=MiniMaxVL01Processor.for_config(config))
    model.save_pretrained(folder)
    return model


def probe(model: MiniMaxVL01, samples: list, max_new_tokens: int) -> tuple[dict, list]:
    """The reading probe on `samples`: (accuracy overall and per kind, what was written for each image)."""
    model.eval()
    with torch.inference_mode():
        records = read_images(model, reading_records(samples), max_new_tokens=max_new_tokens, progress=False)
    report = reading_report(records)
    accuracy = {"overall": report["overall"]["accuracy"],
                **{kind: row["accuracy"] for kind, row in report["by_kind"].items()}}
    readings = [{"id": r.sample_id, "kind": r.kind, "correct": r.correct, "fields": len(r.fields),
                 "prediction": r.prediction} for r in records]
    return {"accuracy": accuracy, "fields": report["overall"]["fields"],
            "perfect_images": report["overall"]["perfect_images"]}, readings


def run_candidate(geometry: Geometry, settings: SweepSettings, out: Path, log=print) -> dict[str, Any]:
    """Trains one candidate from scratch to each minute mark in turn and probes it there."""
    folder = out / geometry.name
    shutil.rmtree(folder, ignore_errors=True)  # a sweep is one fresh run per candidate
    folder.mkdir(parents=True)
    model = initial_weights(geometry, settings, folder / "init")
    entry = {"name": geometry.name, "why": geometry.why, "geometry": dataclasses.asdict(geometry),
             "parameters": sum(p.numel() for p in model.parameters()),
             **geometry_facts(geometry, model.processor), "marks": []}
    del model
    samples = probe_samples(geometry, settings.images)
    stage = reading_stage(geometry, batch_size=settings.batch_size, eval_samples=settings.eval_samples,
                          seed=settings.seed)
    readings: list = []
    for minutes in settings.mark_minutes():
        options = RunOptions(output_dir=folder / "train", init=str(folder / "init"), resume="latest",
                             max_minutes=minutes, progress=False, extra_log={"candidate": geometry.name})
        with open(folder / "train.log", "a") as train_log, contextlib.redirect_stdout(train_log):
            result = train(stage, options)  # continues from the previous mark's checkpoint
        started = time.perf_counter()
        scores, readings = probe(result.model, samples, settings.max_new_tokens)
        mark = {"minutes": minutes, "train_minutes": result.train_seconds / 60, "steps": result.steps,
                "samples": result.samples, "s_per_step": result.train_seconds / max(result.steps, 1),
                "val_loss": result.eval_after.get("val_loss"), "probe": scores,
                "probe_seconds": time.perf_counter() - started}
        entry["marks"].append(mark)
        log(f"{geometry.name:<10} {minutes:6.2f} min: {mark['steps']:>5} steps, probe "
            f"{scores['accuracy']['overall']:.3f}, held-out loss {_number(mark['val_loss'])} "
            f"(probe {mark['probe_seconds']:.0f} s)")
    entry["last_readings"] = readings
    return entry


# ---------------------------------------------------------------------- the sweep
def sweep(geometries: Sequence[Geometry], settings: SweepSettings, out: Path, log=print) -> dict[str, Any]:
    """Every candidate in turn; sweep.json is rewritten after each, so an interrupted sweep keeps what it has."""
    for geometry in geometries:
        check_layouts(geometry, settings.images)
    out.mkdir(parents=True, exist_ok=True)
    results = {"settings": {**dataclasses.asdict(settings), "mark_minutes": settings.mark_minutes(),
                            "threads": torch.get_num_threads(), "training_mix": [list(k) for k in TRAINING_MIX],
                            "learning_rates": LEARNING_RATES, "difficulty": DIFFICULTY},
               "candidates": []}
    for geometry in geometries:
        results["candidates"].append(run_candidate(geometry, settings, out, log))
        write_json(out / "sweep.json", results)
    return results


def format_table(results: dict[str, Any]) -> str:
    """One row per candidate: cost (tokens, s/step, samples by the last mark) next to probe accuracy per mark."""
    marks = results["settings"]["mark_minutes"]
    head = (f"{'candidate':<10}{'image':>6}{'tile':>5}{'patch':>6}{'grid':>5}{'font':>5}{'tokens':>7}{'label/p':>8}"
            f"{'s/step':>7}{'samples':>8}" + "".join(f"{f'@{m:g}m':>8}" for m in marks)
            + f"{'chart':>7}{'map':>6}{'val loss':>9}")
    lines = [head, "-" * len(head)]
    for c in results["candidates"]:
        g, last = c["geometry"], c["marks"][-1]
        accuracy = last["probe"]["accuracy"]
        grid = f"{g['max_tiles_per_side']}x{g['max_tiles_per_side']}"
        probes = "".join(f"{m['probe']['accuracy']['overall'] * 100:>7.1f}%" for m in c["marks"])
        lines.append(f"{c['name']:<10}{g['image_size']:>6}{g['tile_size']:>5}{g['patch_size']:>6}{grid:>5}"
                     f"{g['font_scale']:>5.1f}{c['image_tokens']:>7}{c['label_patches']:>8.2f}"
                     f"{last['s_per_step']:>7.2f}{last['samples']:>8}{probes}"
                     f"{_percent(accuracy.get('chart')):>7}{_percent(accuracy.get('map')):>6}"
                     f"{_number(last['val_loss']):>9}")
    lines.append("probe: fields transcribed exactly (minimax_vl.vqa.read_images); label/p: nominal label height in "
                 "patches; s/step and samples at the last mark")
    return "\n".join(lines)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def describe_candidates(preset: str) -> str:
    rows = []
    for g in CANDIDATES.values():
        facts = geometry_facts(g, MiniMaxVL01Processor.for_config(g.model_config(preset)))
        rows.append(f"{g.name:<10} {g.image_size}-px images, {g.tile_size}-px tiles of {g.patch_size}-px patches, "
                    f"up to {g.max_tiles_per_side}x{g.max_tiles_per_side}, font x{g.font_scale}: "
                    f"{facts['image_tokens']} tokens, labels {facts['label_patches']} patches tall. {g.why}")
    return "\n".join(rows)


def parse_candidates(text: str | None) -> list[Geometry]:
    if not text:
        return list(CANDIDATES.values())
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        raise SystemExit(f"unknown candidate(s) {unknown}; choose from {', '.join(CANDIDATES)}")
    return [CANDIDATES[n] for n in names]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = SweepSettings()
    parser.add_argument("--candidates", help=f"comma-separated names (default: all of {', '.join(CANDIDATES)})")
    parser.add_argument("--minutes", type=float, default=defaults.minutes, help="training minutes per candidate")
    parser.add_argument("--marks", type=int, default=defaults.marks,
                        help="probe at this many evenly spaced minute marks (default 4: every minutes/4)")
    parser.add_argument("--images", type=int, default=defaults.images, help="test-split images the probe reads")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="documents per optimizer step")
    parser.add_argument("--eval-samples", type=int, default=defaults.eval_samples,
                        help="held-out documents for the loss at each mark")
    parser.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens,
                        help="longest transcription the probe lets the model write")
    parser.add_argument("--preset", default=defaults.preset, help="model preset the geometries modify")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=Path("runs/reading_sweep"), help="output folder")
    parser.add_argument("--list", action="store_true", help="describe the candidates and exit")
    args = parser.parse_args(argv)
    if args.list:
        print(describe_candidates(args.preset))
        return 0
    if args.minutes <= 0 or args.marks < 1 or args.images < 1:
        parser.error("--minutes must be positive, --marks and --images at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = SweepSettings(preset=args.preset, minutes=args.minutes, marks=args.marks, images=args.images,
                             batch_size=args.batch_size, eval_samples=args.eval_samples,
                             max_new_tokens=args.max_new_tokens, seed=args.seed)
    try:
        results = sweep(parse_candidates(args.candidates), settings, args.out)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print()
    print(format_table(results))
    print(f"wrote {args.out / 'sweep.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
