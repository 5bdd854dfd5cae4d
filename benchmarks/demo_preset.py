"""Pick the demo model's size: training-step throughput of candidate CPU presets on real stage-II batches.

    .venv/bin/python benchmarks/demo_preset.py            # ~3 minutes on 2 cores
    .venv/bin/python benchmarks/demo_preset.py --steps 3 --threads 2

Every candidate is `minimax_vl.config._demo(...)` with one knob changed, trained for a few AdamW steps on the
same generated batches (easy charts and maps, 8 question-answer documents packed into rows), so the table's
ratios compare like with like. Prints parameters, fp16 size, image tokens per 224-px image and samples/s.
"""
from __future__ import annotations

import argparse
import time

import torch

from minimax_vl.config import MiniMaxVL01Config, _demo
from minimax_vl.data.samples import GeneratorConfig, make_sample
from minimax_vl.model import MiniMaxVL01
from minimax_vl.processor import MiniMaxVL01Processor
from training.datasets import BatchLayout, DocumentEncoder

CANDIDATES = {
    "demo (96-px tiles 2x2, ViT 192x4, LM 256x4)": {},
    "112-px tiles (224-px view)": dict(tile=112),
    "ViT depth 6": dict(vision_depth=6),
    "112-px tiles and ViT depth 6": dict(tile=112, vision_depth=6),
    "LM width 192": dict(text_width=192, expert_width=384),
    "LM 6 layers (0,0,1,0,0,1)": dict(attn_types=(0, 0, 1, 0, 0, 1)),
}


def measure(name: str, overrides: dict, steps: int, batch: int) -> dict:
    values = _demo(**overrides)
    config = MiniMaxVL01Config(**values)
    torch.manual_seed(0)
    model = MiniMaxVL01(config, processor=MiniMaxVL01Processor.for_config(config)).train()
    image_size = 2 * config.vision_config.image_size
    data = GeneratorConfig(split="train", sample_kinds=(("vqa", 1.0),), difficulty="easy", image_size=image_size)
    encoder = DocumentEncoder(model.processor, "anyres", max_length=512)
    layout = BatchLayout(packing=True, max_length=512, pad_token_id=model.processor.tokenizer.pad_token_id)
    batches = [layout.collate([encoder.encode(make_sample(data, s * batch + i)) for i in range(batch)])
               for s in range(steps + 1)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(b):
        out = model(**b["model_inputs"], labels=b["labels"])
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step(batches[0])  # warm-up: allocator, optimizer state
    start = time.perf_counter()
    for b in batches[1:]:
        step(b)
    seconds = (time.perf_counter() - start) / steps
    params = sum(p.numel() for p in model.parameters())
    tokens = model.processor.image_processor.num_image_tokens(image_size, image_size)
    return dict(name=name, params=params, mb=params * 2 / 2**20, tokens=tokens, sps=batch / seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [measure(name, overrides, args.steps, args.batch) for name, overrides in CANDIDATES.items()]
    base = rows[0]["sps"]
    print(f"{'candidate':<46}{'params':>10}{'fp16 MB':>9}{'img tokens':>11}{'samples/s':>11}{'vs demo':>9}")
    for r in rows:
        print(f"{r['name']:<46}{r['params'] / 1e6:>9.2f}M{r['mb']:>9.1f}{r['tokens']:>11}{r['sps']:>11.2f}"
              f"{r['sps'] / base:>8.2f}x")


if __name__ == "__main__":
    main()
