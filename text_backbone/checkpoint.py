"""from_pretrained / save_pretrained for the text model: config.json + safetensors (single file or sharded).

Loading builds the model on the `meta` device (no memory, no random init) and streams the checkpoint's
tensors into it one at a time, so the full 456B preset never exists twice. Both the released remote-code
layout and transformers' native `minimax` layout load; saving writes the released layout.
"""
from __future__ import annotations

from pathlib import Path

import torch

from text_backbone.config import MiniMaxText01Config
from text_backbone.convert import load_text_weights
from text_backbone.weights_io import save_safetensors


def load_text_model(cls, path: Path, *, dtype: torch.dtype | None = None, device=None):
    config = MiniMaxText01Config.load(path)
    with torch.device("meta"):
        model = cls(config)
    load_text_weights(model, path, dtype=dtype, device=device or "cpu")
    return model.eval()


def save_text_model(model, path: Path, *, max_shard_size: int | str = "5GB") -> None:
    path.mkdir(parents=True, exist_ok=True)
    save_safetensors(model.state_dict(), path, max_shard_size=max_shard_size, metadata={"format": "pt"})
    model.config.save(path / "config.json")
