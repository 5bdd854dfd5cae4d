"""Writes a generated chart/map dataset to disk: `images/*.png` plus `data.json` in LLaVA format.

    python -m training.data.generate --out data/train --split train --num-images 1000 --kinds chart,map --image-size 336 --workers 2
    python -m training.data.generate --out data/stage1 --stage 1 --num-images 200 --difficulty easy   # tiny CPU run

Each record: {"id", "image", "conversations": [{"from": "human", "value": "<image>\\n..."}, {"from": "gpt", ...}],
"meta": {"kind", "sample_kind", "question_types", "matches", "split", "seed", ...}}; text-only records have no
"image"; preference records add "rejected_response". The same (split, index) always gives the same record.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
from pathlib import Path

from tqdm import tqdm

from minimax_vl.data.formats import Sample, to_llava
from minimax_vl.data.samples import (
    IMAGE_KINDS,
    SAMPLE_KINDS,
    STAGE_MIXES,
    GeneratorConfig,
    make_sample,
    parse_sample_kinds,
)
from minimax_vl.data.splits import SPLITS

PNG_COMPRESS_LEVEL = 3  # flat-colour images: level 3 is ~2x faster to write than 6 and barely larger

_worker_state: dict = {}


def save_sample(sample: Sample, out_dir: Path) -> Sample:
    """Writes the sample's images under out_dir/images and swaps them for relative paths."""
    paths = []
    for i, image in enumerate(sample.images):
        name = f"images/{sample.id}.png" if len(sample.images) == 1 else f"images/{sample.id}-{i}.png"
        image.save(out_dir / name, compress_level=PNG_COMPRESS_LEVEL)
        paths.append(name)
    sample.images = paths
    return sample


def _init_worker(config: GeneratorConfig, out_dir: Path) -> None:
    _worker_state.update(config=config, out_dir=out_dir)


def _write_one(index: int) -> dict:
    sample = make_sample(_worker_state["config"], index)
    return to_llava(save_sample(sample, _worker_state["out_dir"]))


def generate_dataset(config: GeneratorConfig, out_dir: str | Path, num_samples: int, *, start: int = 0,
                     workers: int = 1, progress: bool = True) -> Path:
    """Generates samples start..start+num_samples-1 into out_dir; returns the path of data.json."""
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    indices = range(start, start + num_samples)
    bar = tqdm(total=num_samples, desc=f"{config.split} samples", unit="sample", disable=not progress)
    records = []
    if workers <= 1:
        _init_worker(config, out_dir)
        for index in indices:
            records.append(_write_one(index))
            bar.update()
    else:
        with multiprocessing.get_context("fork" if os.name == "posix" else "spawn").Pool(
                workers, initializer=_init_worker, initargs=(config, out_dir)) as pool:
            for record in pool.imap(_write_one, indices, chunksize=16):
                records.append(record)
                bar.update()
    bar.close()
    data_path = out_dir / "data.json"
    data_path.write_text(json.dumps(records, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return data_path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.data.generate",
        description="Generate chart and map VQA data (LLaVA JSON + PNG images), deterministic by split and index.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder (images/ and data.json are written inside)")
    parser.add_argument("--split", default="train", choices=SPLITS,
                        help="seed range; 'heldout' also uses unseen label words, palettes and fonts")
    parser.add_argument("--num-images", "--num-samples", dest="num_samples", type=int, required=True,
                        help="number of records to write (text-only records have no image)")
    parser.add_argument("--start", type=int, default=0, help="index of the first sample within the split")
    parser.add_argument("--kinds", default=",".join(IMAGE_KINDS), help=f"image kinds, comma-separated: {IMAGE_KINDS}")
    parser.add_argument("--image-size", type=int, default=336, help="long side of each image in px")
    parser.add_argument("--difficulty", default="normal", choices=("easy", "normal"),
                        help="'easy': few categories, big labels, small vocabulary, square images")
    parser.add_argument("--font-scale", type=float, default=1.0, help="multiplies the label font size")
    parser.add_argument("--sample-kinds", default="vqa",
                        help=f"weighted mix such as 'vqa:20,text_only:1'; kinds: {', '.join(SAMPLE_KINDS)}")
    parser.add_argument("--stage", type=int, choices=sorted(STAGE_MIXES),
                        help="use the mix of a training stage instead of --sample-kinds: "
                             + "; ".join(f"{k}: {dict(v)}" for k, v in STAGE_MIXES.items()))
    parser.add_argument("--max-questions", type=int, default=4, help="questions per vqa sample (1..N)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = GeneratorConfig(
            split=args.split, image_kinds=tuple(k.strip() for k in args.kinds.split(",") if k.strip()),
            sample_kinds=STAGE_MIXES[args.stage] if args.stage else parse_sample_kinds(args.sample_kinds),
            image_size=args.image_size, difficulty=args.difficulty, font_scale=args.font_scale,
            max_questions=args.max_questions)
    except ValueError as error:
        parser.error(str(error))
    path = generate_dataset(config, args.out, args.num_samples, start=args.start, workers=args.workers,
                            progress=not args.no_progress)
    print(f"wrote {args.num_samples} records to {path}")


if __name__ == "__main__":
    main()
