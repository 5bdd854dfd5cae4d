"""HybridCache: what generation carries between forward calls.

Shapes: lightning states `[B, H, D, D]` fp32 (fixed size, one per lightning layer); softmax keys/values
`[B, KVH, S, D]` (grow with the sequence, one pair per softmax layer); `padding_mask` `[B, S]` (1 = real token)
for every position seen so far, or None when no row was ever padded.
"""
from __future__ import annotations

import torch

from text_backbone.config import SOFTMAX, MiniMaxText01Config


class HybridCache:
    def __init__(self, config: MiniMaxText01Config) -> None:
        self.attn_type_list = list(config.attn_type_list)
        self.lightning_states: list[torch.Tensor | None] = [None] * len(self.attn_type_list)
        self.keys: list[torch.Tensor | None] = [None] * len(self.attn_type_list)
        self.values: list[torch.Tensor | None] = [None] * len(self.attn_type_list)
        self.padding_mask: torch.Tensor | None = None
        self.seq_len = 0

    # ------------------------------------------------------------------ per layer
    def lightning_state(self, layer_idx: int) -> torch.Tensor | None:
        return self.lightning_states[layer_idx]

    def set_lightning_state(self, layer_idx: int, state: torch.Tensor) -> None:
        self.lightning_states[layer_idx] = state

    def update(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Appends this call's keys/values [B, KVH, T, D]; returns all of them [B, KVH, past + T, D]."""
        if self.attn_type_list[layer_idx] != SOFTMAX:
            raise ValueError(f"layer {layer_idx} is a lightning layer; it keeps a state, not keys and values")
        if self.keys[layer_idx] is not None:
            k = torch.cat([self.keys[layer_idx], k], dim=2)
            v = torch.cat([self.values[layer_idx], v], dim=2)
        self.keys[layer_idx], self.values[layer_idx] = k, v
        return k, v

    # ------------------------------------------------------------------ whole cache
    def full_padding_mask(self, batch: int, new_tokens: int, mask: torch.Tensor | None, device) -> torch.Tensor | None:
        """Padding mask over past + new positions, given this call's mask ([B, T] or [B, past + T]) or None."""
        if mask is not None and mask.shape[1] == self.seq_len + new_tokens:
            return mask
        if mask is None and self.padding_mask is None:
            return None
        past = self.padding_mask
        if past is None:
            past = torch.ones(batch, self.seq_len, dtype=torch.long, device=device)
        if mask is None:
            mask = torch.ones(batch, new_tokens, dtype=torch.long, device=device)
        return torch.cat([past.to(mask.dtype), mask], dim=1)

    def advance(self, new_tokens: int, full_mask: torch.Tensor | None) -> None:
        self.seq_len += new_tokens
        self.padding_mask = full_mask

    def memory_bytes(self) -> int:
        tensors = [t for t in (*self.lightning_states, *self.keys, *self.values) if t is not None]
        return sum(t.numel() * t.element_size() for t in tensors)
