"""Data pipeline throughput: generator images/s, and useful-token fractions of packing vs padding.

    .venv/bin/python benchmarks/data_throughput.py                 # 336 px, 1 and 2 workers, ~1 minute
    .venv/bin/python benchmarks/data_throughput.py --images 200 --workers 2 --image-tokens 100

Part 1 renders chart/map VQA samples at --image-size and encodes each image as PNG in memory (what
`python -m training.data.generate` does, minus the disk), with 1 and --workers processes. It reports
wall-clock images/s and CPU seconds per image: on a shared machine the wall clock depends on the other
jobs, while CPU time per image says what two free cores would do (2 / cpu_per_image).

Part 2 encodes the stage-II mix (20:1 image questions to text-only) with the shipped tokenizer, each
image standing for --image-tokens tokens, and prints the share of batch positions holding real tokens
for: padding to the longest example of each batch, padding to a fixed --max-length, and first-fit
packing into rows of --max-length.
"""
from __future__ import annotations

import argparse
import io
import multiprocessing
import random
import resource
import time

from minimax_vl.data.samples import STAGE_MIXES, GeneratorConfig, make_sample
from training.data.collate import PackingCollator, PaddingCollator, useful_token_fraction
from training.data.encoding import encode_conversation
from training.data.tokenizer import load_tokenizer

_config: GeneratorConfig | None = None


def _init(config: GeneratorConfig) -> None:
    global _config
    _config = config


def _render_one(index: int) -> int:
    sample = make_sample(_config, index)
    for image in sample.images:
        image.save(io.BytesIO(), format="PNG", compress_level=3)
    return len(sample.images)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def generation_rate(config: GeneratorConfig, images: int, workers: int) -> tuple[float, float]:
    """(wall images/s, CPU seconds per image), measured in `workers` fresh worker processes."""
    cpu_before = _children_cpu()
    start = time.perf_counter()
    context = multiprocessing.get_context("fork")
    with context.Pool(workers, initializer=_init, initargs=(config,)) as pool:
        made = sum(pool.imap_unordered(_render_one, range(images), chunksize=8))
        pool.close()
        pool.join()
    wall = time.perf_counter() - start
    return made / wall, (_children_cpu() - cpu_before) / made


def token_fractions(samples: int, image_tokens: int, max_length: int, batch_size: int, buffer: int) -> dict[str, float]:
    tokenizer = load_tokenizer()
    pad = tokenizer.token_to_id("<end_of_document>")
    config = GeneratorConfig(sample_kinds=STAGE_MIXES[2])
    docs = []
    for index in range(samples):
        sample = make_sample(config, index, draw=False)
        ids, labels = encode_conversation(sample.messages, tokenizer, [image_tokens] * len(sample.images),
                                          max_length=max_length)
        docs.append({"input_ids": ids, "labels": labels})
    random.Random(0).shuffle(docs)
    lengths = sorted(len(d["input_ids"]) for d in docs)

    def mean(collator, size):
        groups = [docs[i:i + size] for i in range(0, len(docs), size)]
        return sum(useful_token_fraction(collator(g)) for g in groups) / len(groups)

    return {
        "median document length": float(lengths[len(lengths) // 2]),
        "padding to longest in batch": mean(PaddingCollator(pad), batch_size),
        f"padding to max_length {max_length}": mean(PaddingCollator(pad, "max_length", max_length), batch_size),
        f"packing into {max_length}-token rows": mean(PackingCollator(max_length, pad), buffer),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--image-size", type=int, default=336)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--difficulty", default="normal", choices=("easy", "normal"))
    parser.add_argument("--samples", type=int, default=400, help="documents for the packing comparison")
    parser.add_argument("--image-tokens", type=int, default=576, help="tokens per image (576 = one 336 px tile)")
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=8, help="padding batch size")
    parser.add_argument("--pack-buffer", type=int, default=64, help="documents the packer sees at once")
    args = parser.parse_args()

    config = GeneratorConfig(sample_kinds=(("vqa", 1.0),), image_size=args.image_size, difficulty=args.difficulty)
    print(f"generator: chart+map VQA at {args.image_size} px ({args.difficulty}), PNG-encoded in memory")
    print(f"{'workers':>7}  {'images/s':>9}  {'cpu ms/image':>12}  {'images/s on free cores':>22}")
    for workers in sorted({1, args.workers}):
        rate, cpu = generation_rate(config, args.images, workers)
        print(f"{workers:>7}  {rate:>9.1f}  {1000 * cpu:>12.1f}  {workers / cpu:>22.1f}")

    fractions = token_fractions(args.samples, args.image_tokens, args.max_length, args.batch_size, args.pack_buffer)
    print(f"\nuseful-token fraction, stage-II mix, {args.image_tokens} tokens per image, {args.samples} documents")
    for name, value in fractions.items():
        shown = f"{value:.0f}" if name.startswith("median") else f"{value:.3f}"
        print(f"  {name:<36} {shown:>6}")
    packed = list(fractions.values())[-1]
    print(f"  packing / padding-to-longest          {packed / list(fractions.values())[1]:>6.2f}x")
    print(f"  packing / padding-to-max_length       {packed / list(fractions.values())[2]:>6.2f}x")


if __name__ == "__main__":
    main()
