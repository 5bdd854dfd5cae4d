"""Name map between the released CLIP-style vision weights and `VisionTower` (timm) weights.

Released names (SPEC_NOTES §6.1) are those of transformers' `CLIPVisionModel`, e.g.
`vision_model.encoder.layers.{j}.self_attn.q_proj.weight`; they are given here *without* the checkpoint's
`vision_tower.` prefix (the caller adds or strips it). The map is one declarative table plus two tensor
transforms:

* q_proj / k_proj / v_proj (each `[C, C]`) <-> timm's fused `attn.qkv` `[3C, C]`, stacked q, k, v along rows
  (timm splits qkv as `[3, heads, head_dim]`, so each third is head-major exactly like CLIP's projections);
* class_embedding `[C]` <-> cls_token `[1, 1, C]` and position_embedding.weight `[P, C]` <-> pos_embed
  `[1, P, C]`: the same numbers with leading unit dimensions.

`vision_model.post_layernorm.*` is not in the released checkpoint and unused by the tower: it is skipped when
a source has it (transformers' CLIP does) and never required. So is the old `embeddings.position_ids` buffer.
Everything else is strict: missing, unexpected and mis-shaped keys are all reported in one error.

Both directions work on whole state dicts (`released_to_timm`, `timm_to_released`): the vision tower is
0.3 B parameters, small enough to hold twice while `minimax_vl.weights` streams the text model. The table is
this package's own rather than a `text_backbone.weights_io.KeyMap`, because `vision` never imports `text_backbone`
(docs/ARCHITECTURE.md, "The dependency rule").
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Mapping

import torch

from .config import VisionConfig

_LAYER = "vision_model.encoder.layers.{j}."
_BLOCK = "blocks.{j}."

# (released name, timm name, part of the fused qkv tensor: 0 = q, 1 = k, 2 = v, None = whole tensor)
_GLOBAL_KEYS: tuple[tuple[str, str, int | None], ...] = (
    ("vision_model.embeddings.class_embedding", "cls_token", None),
    ("vision_model.embeddings.patch_embedding.weight", "patch_embed.proj.weight", None),
    ("vision_model.embeddings.position_embedding.weight", "pos_embed", None),
    ("vision_model.pre_layrnorm.weight", "norm_pre.weight", None),  # sic "layrnorm" (HF CLIP spelling)
    ("vision_model.pre_layrnorm.bias", "norm_pre.bias", None),
)
_LAYER_KEYS: tuple[tuple[str, str, int | None], ...] = (
    ("self_attn.q_proj.weight", "attn.qkv.weight", 0),
    ("self_attn.q_proj.bias", "attn.qkv.bias", 0),
    ("self_attn.k_proj.weight", "attn.qkv.weight", 1),
    ("self_attn.k_proj.bias", "attn.qkv.bias", 1),
    ("self_attn.v_proj.weight", "attn.qkv.weight", 2),
    ("self_attn.v_proj.bias", "attn.qkv.bias", 2),
    ("self_attn.out_proj.weight", "attn.proj.weight", None),
    ("self_attn.out_proj.bias", "attn.proj.bias", None),
    ("layer_norm1.weight", "norm1.weight", None),
    ("layer_norm1.bias", "norm1.bias", None),
    ("layer_norm2.weight", "norm2.weight", None),
    ("layer_norm2.bias", "norm2.bias", None),
    ("mlp.fc1.weight", "mlp.fc1.weight", None),
    ("mlp.fc1.bias", "mlp.fc1.bias", None),
    ("mlp.fc2.weight", "mlp.fc2.weight", None),
    ("mlp.fc2.bias", "mlp.fc2.bias", None),
)
# Present in some sources, never needed: skipped on the way in, never produced on the way out.
IGNORED_RELEASED_PREFIXES = ("vision_model.post_layernorm.", "vision_model.embeddings.position_ids")


class VisionCheckpointError(ValueError):
    """A vision state dict does not match the configuration (missing, unexpected or mis-shaped keys)."""


@dataclass(frozen=True)
class KeyMapping:
    """Where one released tensor lives in the timm state dict."""

    released: str
    timm: str
    part: int | None  # third of the fused qkv tensor (0 q, 1 k, 2 v), or None for the whole tensor
    released_shape: tuple[int, ...]
    timm_shape: tuple[int, ...]

    def timm_region(self, timm_tensor: torch.Tensor) -> torch.Tensor:
        """The view of `timm_tensor` that holds this released tensor, shaped like the released tensor."""
        region = timm_tensor if self.part is None else timm_tensor.chunk(3, dim=0)[self.part]
        return region.view(self.released_shape)


@functools.lru_cache(maxsize=16)
def key_mappings(config: VisionConfig) -> tuple[KeyMapping, ...]:
    """Every released vision tensor of `config`, in checkpoint order (globals, then layer by layer)."""
    c, p, mlp = config.hidden_size, config.patch_size, config.intermediate_size
    released_shapes = {
        "vision_model.embeddings.class_embedding": (c,),
        "vision_model.embeddings.patch_embedding.weight": (c, config.num_channels, p, p),
        "vision_model.embeddings.position_embedding.weight": (config.num_positions, c),
        "vision_model.pre_layrnorm.weight": (c,),
        "vision_model.pre_layrnorm.bias": (c,),
    }
    timm_shapes = {"cls_token": (1, 1, c), "pos_embed": (1, config.num_positions, c),
                   "attn.qkv.weight": (3 * c, c), "attn.qkv.bias": (3 * c,)}
    layer_shapes = {  # released suffix -> shape; layer norms and attention biases are [C]
        "self_attn.q_proj.weight": (c, c), "self_attn.k_proj.weight": (c, c), "self_attn.v_proj.weight": (c, c),
        "self_attn.out_proj.weight": (c, c), "mlp.fc1.weight": (mlp, c), "mlp.fc1.bias": (mlp,),
        "mlp.fc2.weight": (c, mlp),
    }

    mappings = []
    for released, timm, part in _GLOBAL_KEYS:
        shape = released_shapes[released]
        mappings.append(KeyMapping(released, timm, part, shape, timm_shapes.get(timm, shape)))
    for j in range(config.num_hidden_layers):
        for released_suffix, timm_suffix, part in _LAYER_KEYS:
            shape = layer_shapes.get(released_suffix, (c,))
            mappings.append(KeyMapping(
                _LAYER.format(j=j) + released_suffix, _BLOCK.format(j=j) + timm_suffix, part,
                shape, timm_shapes.get(timm_suffix, shape),
            ))
    return tuple(mappings)


def released_vision_shapes(config: VisionConfig) -> dict[str, tuple[int, ...]]:
    """Released vision tensor names (without `vision_tower.`) -> shapes, in checkpoint order."""
    return {m.released: m.released_shape for m in key_mappings(config)}


def released_vision_keys(config: VisionConfig) -> list[str]:
    """Released vision tensor names (without `vision_tower.`): 5 globals + 16 per layer."""
    return list(released_vision_shapes(config))


def timm_vision_shapes(config: VisionConfig) -> dict[str, tuple[int, ...]]:
    """`VisionTower` state-dict names -> shapes."""
    return {m.timm: m.timm_shape for m in key_mappings(config)}


def is_ignored_released_key(name: str) -> bool:
    """True for source keys that are skipped: `post_layernorm.*` and the `position_ids` buffer."""
    return name.startswith(IGNORED_RELEASED_PREFIXES)


def released_to_timm(state_dict: Mapping[str, torch.Tensor], config: VisionConfig) -> dict[str, torch.Tensor]:
    """Released CLIP names -> `VisionTower` state dict (new qkv tensors, reshaped views for the rest)."""
    sources = {k: v for k, v in state_dict.items() if not is_ignored_released_key(k)}
    _check(sources, released_vision_shapes(config))
    fused: dict[str, list[torch.Tensor | None]] = {}
    out: dict[str, torch.Tensor] = {}
    for m in key_mappings(config):
        tensor = sources[m.released]
        if m.part is None:
            out[m.timm] = tensor.reshape(m.timm_shape)
        else:
            fused.setdefault(m.timm, [None, None, None])[m.part] = tensor
    for name, (q, k, v) in fused.items():
        out[name] = torch.cat([q, k, v], dim=0)  # [3C, ...]: q rows, then k, then v
    return out


def timm_to_released(state_dict: Mapping[str, torch.Tensor], config: VisionConfig) -> dict[str, torch.Tensor]:
    """`VisionTower` state dict -> released CLIP names, in checkpoint order.

    q/k/v are copies (so the result can be saved with safetensors, which refuses tensors sharing memory);
    the other tensors are views of the inputs.
    """
    _check(state_dict, timm_vision_shapes(config))
    out = {}
    for m in key_mappings(config):
        region = m.timm_region(state_dict[m.timm])
        out[m.released] = region.clone() if m.part is not None else region
    return out


def _check(state_dict: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]]) -> None:
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    misshaped = [(k, tuple(v.shape), expected[k]) for k, v in state_dict.items()
                 if k in expected and tuple(v.shape) != expected[k]]
    if missing or unexpected or misshaped:
        raise VisionCheckpointError(_report(missing, unexpected, misshaped))


def _report(missing=(), unexpected=(), misshaped=()) -> str:
    lines = ["vision state dict does not match the vision config:"]
    if missing:
        lines.append(f"  missing ({len(missing)}): " + ", ".join(missing))
    if unexpected:
        lines.append(f"  unexpected ({len(unexpected)}): " + ", ".join(unexpected))
        if any(k.startswith("vision_tower.") for k in unexpected):
            lines.append("  hint: names are expected without the 'vision_tower.' prefix; strip it first")
    for name, got, want in misshaped:
        lines.append(f"  key {name} has shape {got}, the config expects {want}")
    lines.append("check that the VisionConfig matches the checkpoint's vision_config")
    return "\n".join(lines)
