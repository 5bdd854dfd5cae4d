"""Memory per GPU to train MiniMax-VL-01 (456B) with FSDP2 on 8, 64 and 256 GPUs, with and without activation
checkpointing. Parameter counts are exact (the model is built on the meta device); activation sizes are measured
(saved-tensor hooks on one real decoder layer of each kind and one ViT block, at full width); the rest is
arithmetic under the assumptions printed with the table (docs/DISTRIBUTED.md).

    .venv/bin/python benchmarks/memory_plan.py                    # ~1-2 minutes on one CPU core, ~6 GB of RAM
    .venv/bin/python benchmarks/memory_plan.py --gpus 8 64 128 256 --tokens 8192 --json plan.json

Measured at full width: a decoder layer is built with 2 experts instead of 32 (top-2 routing sends every token
through 2 experts either way, so the activations per token are the same; only the router logits, E floats per
token, are counted for 32 experts separately) and run in fp32 on `--measure-tokens` tokens; saved tensors
that are parameters (or views of them) are not activations and are left out. Saved elements are then priced
at 2 bytes (bf16 autocast keeps bf16 copies for the matmuls); the fp32 kept by the code (router logits,
lightning block states, RMSNorm statistics) are a few percent of the elements, so this is a slight underestimate.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import torch

GIB = 2**30


# ---------------------------------------------------------------------- exact parameter counts (meta device)
def parameter_plan(preset: str) -> dict:
    from minimax_vl.config import MiniMaxVL01Config
    from minimax_vl.model import MiniMaxVL01

    config = MiniMaxVL01Config.from_preset(preset)
    with torch.device("meta"):
        model = MiniMaxVL01(config)
    layers = model.language_model.model.layers
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    layer_sizes = [count(layer) for layer in layers]
    expert = count(layers[0].block_sparse_moe.experts[0])
    # The other wrapping policy: each expert its own unit, the rest of the layer (attention, norms, router) one.
    rest_of_layer = max(size - len(layer.block_sparse_moe.experts) * expert for size, layer in zip(layer_sizes, layers))
    blocks = [count(block) for block in model.vision_tower.blocks]
    total = count(model)
    return {
        "config": config, "total": total, "decoder_layers": len(layers), "largest_decoder_layer": max(layer_sizes),
        "lightning_layer": layer_sizes[0], "vit_blocks": len(blocks), "vit_block": max(blocks),
        "expert": expert, "largest_expert_unit": max(expert, rest_of_layer),
        "root_unit": total - sum(layer_sizes) - sum(blocks),  # embeddings, lm_head, norms, projector, ViT stem
    }


# ---------------------------------------------------------------------- measured activations per token
def _saved_elements(module: torch.nn.Module, run) -> int:
    """Elements of the tensors autograd saves for backward while `run()` executes, parameters excluded."""
    param_storages = {p.untyped_storage().data_ptr() for p in module.parameters()}
    seen: dict[tuple[int, int, tuple], int] = {}

    def pack(tensor: torch.Tensor):
        storage = tensor.untyped_storage().data_ptr()
        if storage not in param_storages:  # weights (and their transposes) are not activations
            seen[(storage, tensor.storage_offset(), tuple(tensor.shape))] = tensor.numel()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = run()
    del out
    return sum(seen.values())


def measured_activations(config, tokens: int) -> dict[str, float]:
    """Saved elements per token: a lightning layer, a softmax layer (full width, 2 experts), one ViT block."""
    from timm.models.vision_transformer import Block

    from text_backbone.config import SOFTMAX
    from text_backbone.layers.rope import rotary_cos_sin
    from text_backbone.model import DecoderLayer

    text = dataclasses.replace(config.text_config, num_local_experts=2)
    x = torch.randn(1, tokens, text.hidden_size, requires_grad=True)
    cos, sin = rotary_cos_sin(torch.arange(tokens)[None], text.rotary_dim, text.rope_theta, x.dtype)
    per_token = {}
    for name, index in (("lightning", 0), ("softmax", text.attn_type_list.index(SOFTMAX))):
        layer = DecoderLayer(text, index).train()
        run = lambda: layer(x, cos=cos, sin=sin, cache=None, padding_mask=None, step_mask=None,  # noqa: E731
                            cu_seqlens=None, backend="torch")
        per_token[name] = _saved_elements(layer, run) / tokens
        del layer
    # Router logits: [tokens, E] per layer, measured with E = 2; the released model has E = 32.
    router_extra = config.text_config.num_local_experts - 2
    per_token["lightning"] += router_extra
    per_token["softmax"] += router_extra
    vision = config.vision_config
    block = Block(vision.hidden_size, vision.num_attention_heads, vision.intermediate_size / vision.hidden_size,
                  qkv_bias=True).train()
    patches = torch.randn(1, vision.num_patches + 1, vision.hidden_size, requires_grad=True)
    per_token["vit_block"] = _saved_elements(block, lambda: block(patches)) / patches.shape[1]
    return per_token


# ---------------------------------------------------------------------- the plan
def plan(params: dict, acts: dict, gpus: list[int], tokens: int, image_tokens: int) -> list[dict]:
    config = params["config"].text_config
    hidden, vocab = config.hidden_size, config.vocab_size
    n_softmax = sum(config.attn_type_list)
    n_lightning = params["decoder_layers"] - n_softmax
    bf16, fp32 = 2, 4
    # Activations of one micro-batch (one sequence of `tokens` text tokens, `image_tokens` ViT tokens).
    decoder_full = tokens * (n_lightning * acts["lightning"] + n_softmax * acts["softmax"]) * bf16
    vit_full = image_tokens * params["vit_blocks"] * acts["vit_block"] * bf16
    # The head: fp32 logits and the cross-entropy's softmax, both [tokens, V].
    head = tokens * vocab * fp32 * 2
    # Checkpointed: each layer keeps its input; during backward one layer's activations exist again.
    decoder_ckpt = tokens * hidden * params["decoder_layers"] * bf16 + tokens * acts["lightning"] * bf16
    vit_ckpt = image_tokens * params["config"].vision_config.hidden_size * params["vit_blocks"] * bf16 \
        + image_tokens * acts["vit_block"] * bf16
    rows = []
    for n in gpus:
        states = params["total"] * (fp32 + fp32 + 2 * fp32) / n  # sharded fp32 weights, grads, AdamW m and v
        # Unsharded bf16 copies of the running unit and the prefetched next one, and its fp32 gradient before
        # the reduce-scatter; the root unit (embeddings, lm_head) is gathered for the first and last layers.
        gathered = max(2 * params["largest_decoder_layer"] * bf16 + params["largest_decoder_layer"] * fp32,
                       params["root_unit"] * (bf16 + fp32))
        gathered_experts = max(2 * params["largest_expert_unit"] * bf16 + params["largest_expert_unit"] * fp32,
                               params["root_unit"] * (bf16 + fp32))
        rows.append({
            "gpus": n, "states_gib": states / GIB, "gathered_gib": gathered / GIB,
            "gathered_expert_units_gib": gathered_experts / GIB,
            "total_ckpt_expert_units_gib": (states + gathered_experts + decoder_ckpt + vit_ckpt + head) / GIB,
            "activations_gib": (decoder_full + vit_full + head) / GIB,
            "activations_ckpt_gib": (decoder_ckpt + vit_ckpt + head) / GIB,
            "total_gib": (states + gathered + decoder_full + vit_full + head) / GIB,
            "total_ckpt_gib": (states + gathered + decoder_ckpt + vit_ckpt + head) / GIB,
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="minimax-vl-01")
    parser.add_argument("--gpus", type=int, nargs="+", default=[8, 64, 256])
    parser.add_argument("--tokens", type=int, default=8192, help="text tokens per GPU per micro-batch")
    parser.add_argument("--images", type=int, default=1, help="anyres images per micro-batch (10 tiles each)")
    parser.add_argument("--measure-tokens", type=int, default=512, help="tokens for the activation measurement")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)

    params = parameter_plan(args.preset)
    acts = measured_activations(params["config"], args.measure_tokens)
    vision = params["config"].vision_config
    image_tokens = args.images * 10 * (vision.num_patches + 1)  # thumbnail + up to 9 tiles, CLS included
    rows = plan(params, acts, args.gpus, args.tokens, image_tokens)

    print(f"{args.preset}: {params['total'] / 1e9:.2f}B parameters; largest decoder layer "
          f"{params['largest_decoder_layer'] / 1e9:.2f}B (one expert {params['expert'] / 1e6:.0f}M, the largest unit "
          f"without experts {params['largest_expert_unit'] / 1e6:.0f}M), root unit {params['root_unit'] / 1e9:.2f}B, "
          f"ViT block {params['vit_block'] / 1e6:.1f}M")
    print(f"saved elements per token (measured on {args.measure_tokens} tokens, parameters excluded): lightning "
          f"layer {acts['lightning']:,.0f}, softmax layer {acts['softmax']:,.0f}, ViT block {acts['vit_block']:,.0f}")
    print(f"micro-batch: {args.tokens} text tokens + {image_tokens} ViT tokens per GPU; FSDP2 full shard; bf16 "
          "compute; fp32 sharded weights, grads, AdamW m and v (16 bytes/parameter / GPUs)")
    print()
    print("Per GPU, GiB. Units: 'layer' = fully_shard per decoder layer (and ViT block); 'expert' = also one unit per "
          "expert.")
    print()
    print("| GPUs | weights+grads+AdamW | gathered (layer) | gathered (expert) | activations | activations "
          "(checkpointed) | total (layer) | total (layer, ckpt) | total (expert, ckpt) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        cells = [r["states_gib"], r["gathered_gib"], r["gathered_expert_units_gib"], r["activations_gib"],
                 r["activations_ckpt_gib"], r["total_gib"], r["total_ckpt_gib"], r["total_ckpt_expert_units_gib"]]
        print(f"| {r['gpus']} | " + " | ".join(f"{c:,.1f}" for c in cells) + " |")
    if args.json:
        args.json.write_text(json.dumps({"preset": args.preset, "params": {k: v for k, v in params.items()
                                                                            if k != "config"},
                                         "activations_per_token": acts, "tokens": args.tokens,
                                         "image_tokens": image_tokens, "rows": rows}, indent=2))
    minimum = math.ceil(params["total"] * 16 / (80 * GIB))
    print(f"\nweights, grads and AdamW alone need {params['total'] * 16 / GIB:,.0f} GiB: at least {minimum} GPUs of "
          "80 GB before any activation.")


if __name__ == "__main__":
    main()
