"""One generation step of lightning attention: the per-token cost of decoding.

Shapes: q, k `[B, H, K]`, v `[B, H, V]`, slope `[H]`, state `[B, H, K, V]` (float32, or float64 for float64 inputs).

    S <- λ S + k vᵀ        (λ = exp(-slope), per head)
    o  = q S

All heads and batch rows go through two fused ops (an addcmul and one batched matrix-vector product).
"""
from __future__ import annotations

import torch


def decode_lightning_attn(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slope: torch.Tensor, state: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (o `[B, H, V]` in q's dtype, new state `[B, H, K, V]` in the state's dtype). The input state is not
    modified, so a caller may keep it (e.g. to branch a generation)."""
    acc = state.dtype
    decay = torch.exp(-slope.to(acc)).view(1, -1, 1, 1)  # [1, H, 1, 1]
    outer = k.to(acc).unsqueeze(-1) * v.to(acc).unsqueeze(-2)  # [B, H, K, V]
    new_state = torch.addcmul(outer, state, decay)
    o = (q.to(acc).unsqueeze(-2) @ new_state).squeeze(-2)  # [B, H, 1, K] @ [B, H, K, V] -> [B, H, V]
    return o.to(q.dtype), new_state
