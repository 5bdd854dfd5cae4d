"""The weight layouts MiniMax-Text-01 circulates in, and key maps between them.

Two layouts (SPEC_NOTES §6.2, §6.3):

``released``  the remote-code checkpoint MiniMaxAI publishes, and this package's own module names::

    model.layers.{layer}.block_sparse_moe.gate.weight                     (E, H)
    model.layers.{layer}.block_sparse_moe.experts.{expert}.w1.weight      (I, H)   gate proj (SiLU branch)
    model.layers.{layer}.block_sparse_moe.experts.{expert}.w3.weight      (I, H)   up proj
    model.layers.{layer}.block_sparse_moe.experts.{expert}.w2.weight      (H, I)   down proj

``transformers``  the native port (transformers 5.x ``MiniMaxForCausalLM``; names listed from a tiny
instance of transformers 5.24, not guessed)::

    model.layers.{layer}.mlp.gate.weight                                  (E, H)
    model.layers.{layer}.mlp.experts.gate_up_proj                         (E, 2I, H) = [w1; w3] per expert
    model.layers.{layer}.mlp.experts.down_proj                            (E, H, I)  = w2 per expert
    model.layers.{layer}.self_attn.{slope_rate,query_decay,key_decay,diagonal_decay}   derived buffers

Everything else has the same name in both: embeddings, norms, ``lm_head``, softmax attention
(``q_proj``/``k_proj``/``v_proj``/``o_proj``) and lightning attention (``qkv_proj``, ``output_gate``,
``norm``, ``out_proj``). The fused ``qkv_proj`` needs no reordering either: transformers reshapes its output
to (batch, seq, heads, 3·head_dim) and splits the last axis into q | k | v, which is the released
head-major layout (SPEC_NOTES §2.1). transformers persists the lightning decay tables as buffers; they are
derived from the config, so the conversion drops them and our model recomputes its own.

Public API
    RELEASED, TRANSFORMERS                               layout names
    detect_layout(keys) -> str                           from sentinel keys; UnknownLayoutError otherwise
    transformers_to_released(*, source_prefix="model.", target_prefix="model.") -> KeyMap
    released_to_transformers(*, source_prefix="model.", target_prefix="model.") -> KeyMap
    key_map_for(layout) -> KeyMap                        (text checkpoint in `layout` -> released)
    load_text_weights(module, checkpoint, **load_options) -> LoadReport

The prefixes let the VL model reuse the rules for its language model, e.g. ``source_prefix=
"model.language_model."``, ``target_prefix="language_model.model."`` (keys outside ``layers`` — embeddings,
final norm, lm_head — then need their own ``Rename`` rules).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from torch import nn

from .weights_io import (
    CheckpointError,
    CheckpointInfo,
    Drop,
    KeyMap,
    LoadReport,
    PathLike,
    Rename,
    Unfuse,
    inspect_checkpoint,
    load_into_module,
)

__all__ = [
    "RELEASED", "TRANSFORMERS", "UnknownLayoutError", "detect_layout",
    "transformers_to_released", "released_to_transformers", "key_map_for", "load_text_weights",
]

RELEASED = "released"
TRANSFORMERS = "transformers"

# Buffers transformers' MiniMaxLightningAttention registers as persistent; all are functions of the config.
TRANSFORMERS_DERIVED_BUFFERS = ("slope_rate", "query_decay", "key_decay", "diagonal_decay")

# Sentinels. Lightning attention's fused projection and output gate exist only in MiniMax (same name in
# both layouts); the expert naming then tells the layouts apart. Mixtral, for one, shares the released
# expert names but has no lightning attention.
_MINIMAX_SENTINEL = re.compile(r"(^|\.)layers\.\d+\.self_attn\.(qkv_proj|output_gate)\.weight$")
_LAYOUT_SENTINELS = {
    RELEASED: re.compile(r"(^|\.)layers\.\d+\.block_sparse_moe\.(gate\.weight|experts\.\d+\.w[123]\.weight)$"),
    TRANSFORMERS: re.compile(r"(^|\.)layers\.\d+\.mlp\.experts\.(gate_up_proj|down_proj)$"),
}


class UnknownLayoutError(CheckpointError):
    """The keys are not a MiniMax-Text-01 checkpoint in any layout this module knows."""


def detect_layout(keys: Iterable[str]) -> str:
    """``RELEASED`` or ``TRANSFORMERS``, from sentinel keys (works with any prefix in front of ``layers``)."""
    keys = list(keys)
    if not any(_MINIMAX_SENTINEL.search(key) for key in keys):
        raise UnknownLayoutError(
            "not a MiniMax-Text-01 checkpoint: no lightning-attention key (layers.N.self_attn.qkv_proj.weight "
            f"or output_gate.weight) among its {len(keys)} keys (first few: {keys[:3]}); "
            "point the loader at a MiniMax-Text-01 / MiniMax-VL-01 checkpoint"
        )
    found = [layout for layout, sentinel in _LAYOUT_SENTINELS.items() if any(sentinel.search(k) for k in keys)]
    if len(found) != 1:
        what = "both" if found else "neither"
        raise UnknownLayoutError(
            f"MiniMax checkpoint whose MoE keys match {what} of the known layouts ({RELEASED}: "
            f"layers.N.block_sparse_moe.experts.E.w1.weight; {TRANSFORMERS}: layers.N.mlp.experts.gate_up_proj); "
            "it is damaged or in a layout this package does not convert"
        )
    return found[0]


def transformers_to_released(*, source_prefix: str = "model.", target_prefix: str = "model.") -> KeyMap:
    """Rules from the transformers layout to the released one (unfuses experts, renames mlp)."""
    src = f"{source_prefix}layers.{{layer}}"
    dst = f"{target_prefix}layers.{{layer}}"
    rules = [Drop(f"{src}.self_attn.{buffer}") for buffer in TRANSFORMERS_DERIVED_BUFFERS]
    rules += [
        Rename(f"{src}.mlp.gate.weight", f"{dst}.block_sparse_moe.gate.weight"),
        Unfuse(f"{src}.mlp.experts.gate_up_proj",
               (f"{dst}.block_sparse_moe.experts.{{expert}}.w1.weight",
                f"{dst}.block_sparse_moe.experts.{{expert}}.w3.weight"),
               index="expert"),
        Unfuse(f"{src}.mlp.experts.down_proj",
               (f"{dst}.block_sparse_moe.experts.{{expert}}.w2.weight",),
               index="expert"),
    ]
    if source_prefix != target_prefix:
        # The remaining per-layer keys keep their names below the prefix.
        rules.append(Rename(f"{src}.{{rest}}", f"{dst}.{{rest}}"))
    return KeyMap(tuple(rules))


def released_to_transformers(*, source_prefix: str = "model.", target_prefix: str = "model.") -> KeyMap:
    """Rules from the released layout to the transformers one (fuses experts).

    The derived decay buffers transformers keeps in its state dict are not produced; a transformers
    model computes them when it is built.
    """
    return transformers_to_released(source_prefix=target_prefix, target_prefix=source_prefix).inverse()


def key_map_for(layout: str) -> KeyMap:
    """The key map that brings a text checkpoint in ``layout`` to the released layout (our module names)."""
    if layout == RELEASED:
        # transformers' save_pretrained writes the released names but keeps its derived decay buffers.
        return KeyMap(tuple(Drop(f"model.layers.{{layer}}.self_attn.{buffer}") for buffer in TRANSFORMERS_DERIVED_BUFFERS))
    if layout == TRANSFORMERS:
        return transformers_to_released()
    raise ValueError(f"unknown layout {layout!r}; expected {RELEASED!r} or {TRANSFORMERS!r}")


def load_text_weights(module: nn.Module, checkpoint: PathLike | CheckpointInfo, *, dtype=None, device=None,
                      allow_missing: Sequence[str] = (), allow_unexpected: Sequence[str] = ()) -> LoadReport:
    """Load a MiniMax-Text-01 checkpoint in either layout into a module named after the released layout.

    The layout is detected from the checkpoint's key names (headers only); the options are those of
    ``weights_io.load_into_module``.
    """
    info = inspect_checkpoint(checkpoint)
    key_map = key_map_for(detect_layout(info.tensors))
    return load_into_module(module, info, key_map=key_map, dtype=dtype, device=device,
                            allow_missing=allow_missing, allow_unexpected=allow_unexpected)
