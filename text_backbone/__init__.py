"""MiniMax-Text-01: the hybrid lightning/softmax-attention MoE decoder, usable without the vision side.

    from text_backbone import MiniMaxText01Config, MiniMaxText01ForCausalLM
    model = MiniMaxText01ForCausalLM(MiniMaxText01Config.from_preset("small"))

`lightning_attn(q, k, v, slope, ..., backend="auto")` is the attention op on its own. The names are imported on
first use, so `import text_backbone` does not import torch.
"""
from __future__ import annotations

import importlib

_LAZY = {
    "MiniMaxText01Config": "text_backbone.config",
    "MiniMaxText01ForCausalLM": "text_backbone.model",
    "lightning_attn": "text_backbone.ops.lightning_attn",
}

__all__ = ["MiniMaxText01Config", "MiniMaxText01ForCausalLM", "lightning_attn"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'text_backbone' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
