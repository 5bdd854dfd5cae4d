"""Where the time goes when MiniMaxVL01 answers a question about an image: preprocessing, vision encoding,
prefill, decoding — measured separately, per model size and image size.

    .venv/bin/python benchmarks/vl_encode_decode.py                              # both presets, both images
    .venv/bin/python benchmarks/vl_encode_decode.py --presets tiny --repeats 3   # a quick look

Stages (each timed on its own, `--repeats` times, median and min reported):
    preprocess   processor(images=[PIL image], text=prompt): tiling, resizing, normalising, tokenising
                 (decoding the image file is not included: the image is an in-memory PIL image)
    vision       model.encode_images: ViT over every tile + projector + anyres packing with image_newline
    prefill      the text model over the whole prompt's embeddings (image tokens included), with a cache
    decode       greedy decoding with that cache, one token per step (`text_backbone.generation.decode_one_token`);
                 reported per token over `--steps` steps
    generate     model.generate(image, question, max_new_tokens=steps), end to end, for reference: close to the
                 sum of the stages plus the chat-template overhead

Presets:
    tiny       MiniMaxVL01Config.from_preset("tiny"): ViT 56-px tiles (4x4 patches, width 32, 2 layers), text
               `tiny` (8 layers, hidden 64); 1.48 M parameters
    cpu-small  ViT "vit-small-cpu" (160-px tiles, 10x10 patches, width 192, 4 layers) + text "small" (8 layers,
               hidden 384, 8 experts top-2); the released 28-entry grid scaled to 160-px tiles; 67.5 M parameters
               (vision 1.95 M, projector 0.22 M, text 65.4 M)
Images are (width x height) 336x336 and 1000x700 random RGB; their tile and token counts are printed.

fp32, CPU. Threads default to 1 (`--threads`): on a few contended cores the small matmuls run slower with more
threads. The machine may be shared and noisy: compare rows within one run.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
from datetime import date

import numpy as np
import torch
from PIL import Image

from minimax_vl.config import MiniMaxVL01Config
from minimax_vl.model import MiniMaxVL01, parameter_counts
from minimax_vl.processor import MiniMaxVL01Processor
from minimax_vl.tokenizer import shipped_tokenizer
from text_backbone.config import MiniMaxText01Config
from text_backbone.generation import decode_one_token, prefill
from vision.anyres import MINIMAX_VL_01_GRID_PINPOINTS, RELEASED_TILE_SIZE, scale_grid_pinpoints
from vision.config import VisionConfig

QUESTION = "What is shown in this picture? Describe it in detail."
IMAGE_SIZES = {"336x336": (336, 336), "1000x700": (700, 1000)}  # name (width x height) -> (height, width)


def preset_config(name: str) -> MiniMaxVL01Config:
    if name == "tiny":
        return MiniMaxVL01Config.from_preset("tiny")
    if name == "cpu-small":
        vision = VisionConfig.from_preset("vit-small-cpu")
        return MiniMaxVL01Config(
            vision_config=vision,
            text_config=MiniMaxText01Config.from_preset("small"),
            image_token_index=shipped_tokenizer().image_token_id,
            image_grid_pinpoints=[list(p) for p in scale_grid_pinpoints(
                MINIMAX_VL_01_GRID_PINPOINTS, RELEASED_TILE_SIZE, vision.image_size)],
        )
    raise ValueError(f"unknown preset {name!r}; use 'tiny' or 'cpu-small'")


def build(name: str, seed: int) -> MiniMaxVL01:
    config = preset_config(name)
    torch.manual_seed(seed)
    return MiniMaxVL01(config, processor=MiniMaxVL01Processor.for_config(config)).eval()


def timed(fn, repeats: int) -> tuple[list[float], object]:
    """Runs fn once to warm up, then `repeats` times; returns the seconds of the timed runs and the last result."""
    result = fn()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - start)
    return seconds, result


@torch.no_grad()
def measure(model: MiniMaxVL01, image: Image.Image, steps: int, repeats: int) -> dict[str, object]:
    processor = model.processor
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}],
        add_generation_prompt=True)
    lm = model.language_model

    pre_s, inputs = timed(lambda: processor(images=[image], text=prompt), repeats)
    ids, pixel_values, image_sizes = inputs["input_ids"], inputs["pixel_values"], inputs["image_sizes"]
    vision_s, features = timed(lambda: model.encode_images(pixel_values, image_sizes), repeats)
    embeds = lm.model.embed_tokens(ids).masked_scatter(
        (ids == model.config.image_token_index).unsqueeze(-1), torch.cat(features))

    def run_prefill():
        cache = lm.new_cache()
        cache.reserve(ids.shape[1] + steps + 1)
        return cache, prefill(lm, inputs_embeds=embeds, cache=cache)

    prefill_s, (cache, logits) = timed(run_prefill, repeats)

    def run_decode():
        # Each repeat decodes from its own copy of the prefilled cache, so every repeat sees the same context.
        step_cache = cache.copy(capacity=ids.shape[1] + steps + 1)
        token = logits.argmax(-1)
        start = time.perf_counter()
        for _ in range(steps):
            token = decode_one_token(lm, token, step_cache).argmax(-1)
        return (time.perf_counter() - start) / steps

    decode_per_token = [run_decode() for _ in range(repeats + 1)][1:]  # the first is a warm-up
    generate_s, answer = timed(lambda: model.generate(image, QUESTION, max_new_tokens=steps, eos_token_id=[]),
                               repeats)
    return {
        "tiles": int(pixel_values[0].shape[0]),
        "image_tokens": int(features[0].shape[0]),
        "prompt_tokens": int(ids.shape[1]),
        "preprocess": pre_s, "vision": vision_s, "prefill": prefill_s, "decode": decode_per_token,
        "generate": generate_s, "answer": answer,
    }


def ms(values: list[float]) -> str:
    return f"{1e3 * statistics.median(values):.1f} ({1e3 * min(values):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "cpu-small"], choices=["tiny", "cpu-small"])
    parser.add_argument("--images", nargs="+", default=list(IMAGE_SIZES), choices=list(IMAGE_SIZES))
    parser.add_argument("--steps", type=int, default=16, help="decode steps (and generate's max_new_tokens)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per stage, after one warm-up run")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print(f"# VL encode/decode benchmark {date.today()} | {platform.machine()}, {torch.get_num_threads()} thread(s) "
          f"| torch {torch.__version__} | fp32 | {args.repeats} repeats, {args.steps} decode steps")
    rows = []
    for preset in args.presets:
        model = build(preset, args.seed)
        counts = parameter_counts(model)
        print(f"  {preset}: {counts['total'] / 1e6:.2f} M parameters (vision {counts['vision_tower'] / 1e6:.2f} M, "
              f"projector {counts['multi_modal_projector'] / 1e6:.2f} M, text {counts['language_model'] / 1e6:.2f} M), "
              f"tile {model.config.vision_config.image_size} px", flush=True)
        for image_name in args.images:
            height, width = IMAGE_SIZES[image_name]
            rng = np.random.default_rng(args.seed)
            image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
            rows.append((preset, image_name, measure(model, image, args.steps, args.repeats)))
            print(f"  measured {preset} {image_name}", flush=True)

    print("\nmedian (min) milliseconds")
    header = (f"{'preset':<10} {'image':<9} {'tiles':>5} {'img tok':>7} {'prompt':>6} {'preprocess':>13} "
              f"{'vision':>13} {'prefill':>13} {'decode/token':>13} {f'generate {args.steps} tok':>16}")
    print(header)
    print("-" * len(header))
    for preset, image_name, r in rows:
        print(f"{preset:<10} {image_name:<9} {r['tiles']:>5} {r['image_tokens']:>7} {r['prompt_tokens']:>6} "
              f"{ms(r['preprocess']):>13} {ms(r['vision']):>13} {ms(r['prefill']):>13} {ms(r['decode']):>13} "
              f"{ms(r['generate']):>16}")


if __name__ == "__main__":
    main()
