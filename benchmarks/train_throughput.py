"""Training throughput on the CPU: useful (non-pad) tokens per second, packed rows against padded batches.

    .venv/bin/python benchmarks/train_throughput.py --threads 1              # tiny and small presets, ~5 minutes
    .venv/bin/python benchmarks/train_throughput.py --presets tiny --steps 2  # quick look, ~30 s
    .venv/bin/python benchmarks/train_throughput.py --threads 2 --docs 16

For each preset, the same stage-II documents (VQA 20 : text-only 1, anyres images) are trained on twice:
packed into rows of --max-length tokens (batch 1 with cu_seqlens, documents isolated) and right-padded to the
longest document of the micro-batch (with an attention mask). Wall-clock rates depend on whatever else runs on
the machine; the CPU-time rate (useful tokens per CPU-second of this process) is steadier on shared machines. A step is forward + backward + AdamW update
of all parameters in fp32, as `training.train` does it (summed cross-entropy over the target tokens plus the
MoE load-balancing loss); the batches are built beforehand, so data generation is not timed (see
benchmarks/data_throughput.py for that). One warm-up step is not timed.

Presets: "tiny" (the test preset: ViT 2x32 on 56 px tiles, 8-layer 64-wide decoder, 4 experts) and "small"
(vision "vit-small-cpu": 4x192 on 160 px tiles; text "small": 8 layers, 384 wide, 8 experts).
"""
from __future__ import annotations

import argparse
import time

import torch

from minimax_vl.config import MiniMaxVL01Config
from minimax_vl.data.samples import STAGE_MIXES, GeneratorConfig, make_sample
from minimax_vl.model import MiniMaxVL01
from minimax_vl.processor import MiniMaxVL01Processor
from text_backbone.config import MiniMaxText01Config
from training.datasets import BatchLayout, DocumentEncoder, build_batch
from training.losses import target_log_probs
from vision.anyres import default_grid_pinpoints
from vision.config import VisionConfig

ROW_LENGTH = {"tiny": 512, "small": 2048}


def build_model(preset: str) -> MiniMaxVL01:
    if preset == "tiny":
        config = MiniMaxVL01Config.from_preset("tiny")
    elif preset == "small":
        vision = VisionConfig.from_preset("vit-small-cpu")
        config = MiniMaxVL01Config.from_preset(
            "tiny", vision_config=vision, text_config=MiniMaxText01Config.from_preset("small"),
            image_grid_pinpoints=[list(p) for p in default_grid_pinpoints(vision.image_size, max_tiles=6,
                                                                           max_tiles_per_side=3)])
    else:
        raise ValueError(f"unknown preset {preset!r}; use tiny or small")
    torch.manual_seed(0)
    return MiniMaxVL01(config, processor=MiniMaxVL01Processor.for_config(config)).train()


def train_step(model, optimizer, batch, loss_path: str = "labelled") -> float:
    token_lp, aux = target_log_probs(model, batch["model_inputs"], batch["labels"], "anyres", loss_path)
    ce = -token_lp.sum() / max(batch["num_targets"], 1)
    loss = ce + model.config.text_config.router_aux_loss_coef * aux
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def measure(preset: str, packing: bool, docs: int, steps: int, max_length: int, image_size: int) -> dict:
    model = build_model(preset)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    encoder = DocumentEncoder(model.processor, "anyres", max_length)
    layout = BatchLayout(packing, max_length, model.processor.tokenizer.pad_token_id)
    config = GeneratorConfig(sample_kinds=STAGE_MIXES[2], image_size=image_size, difficulty="easy")
    batches = [build_batch([make_sample(config, s * docs + i) for i in range(docs)], encoder, layout, pairs=False)
               for s in range(steps + 1)]
    train_step(model, optimizer, batches[0])  # warm-up: allocator, first-call overheads
    start, cpu_start = time.perf_counter(), time.process_time()
    for batch in batches[1:]:
        train_step(model, optimizer, batch)
    seconds = (time.perf_counter() - start) / steps
    cpu_seconds = (time.process_time() - cpu_start) / steps
    useful = sum(b["num_tokens"] for b in batches[1:]) / steps
    positions = sum(b["model_inputs"]["input_ids"].numel() for b in batches[1:]) / steps
    return {"preset": preset, "layout": "packed" if packing else "padded", "positions": positions, "useful": useful,
            "seconds": seconds, "useful_per_s": useful / seconds, "positions_per_s": positions / seconds,
            "useful_per_cpu_s": useful / cpu_seconds,
            "parameters": sum(p.numel() for p in model.parameters())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--presets", default="tiny,small", help="comma-separated: tiny, small")
    parser.add_argument("--docs", type=int, default=8, help="documents per step")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per configuration")
    parser.add_argument("--max-length", type=int,
                        help="packed row length and truncation (default: 512 for tiny, 2048 for small: a few "
                             "documents per row, since first-fit leaves up to one document's length free per row)")
    parser.add_argument("--image-size", type=int, default=336, help="long side of the generated images, px")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"stage-II documents ({args.docs} per step, images {args.image_size} px, anyres), fp32, "
          f"{torch.get_num_threads()} thread(s), {args.steps} timed steps; packed rows of "
          f"{args.max_length or ROW_LENGTH}; 'useful' = document tokens, 'positions' = tokens incl. padding")
    header = (f"{'preset':<7}{'params':>8}{'layout':>8}{'positions':>11}{'useful':>8}{'s/step':>8}"
              f"{'useful tok/s':>14}{'positions/s':>13}{'useful tok/CPU-s':>18}")
    print(header)
    for preset in args.presets.split(","):
        max_length = args.max_length or ROW_LENGTH[preset]
        rows = [measure(preset, packing, args.docs, args.steps, max_length, args.image_size)
                for packing in (True, False)]
        for r in rows:
            print(f"{r['preset']:<7}{r['parameters'] / 1e6:>7.1f}M{r['layout']:>8}{r['positions']:>11.0f}"
                  f"{r['useful']:>8.0f}{r['seconds']:>8.2f}{r['useful_per_s']:>14.0f}{r['positions_per_s']:>13.0f}"
                  f"{r['useful_per_cpu_s']:>18.0f}")
        print(f"{preset:<7}packed / padded useful tokens/s: {rows[0]['useful_per_s'] / rows[1]['useful_per_s']:.2f}x "
              f"(wall), {rows[0]['useful_per_cpu_s'] / rows[1]['useful_per_cpu_s']:.2f}x (CPU time)")


if __name__ == "__main__":
    main()
