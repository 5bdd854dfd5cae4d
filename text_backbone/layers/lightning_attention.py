"""The lightning (linear) attention layer of MiniMax-Text-01 (SPEC_NOTES §2.1–2.3).

    x [B, T, hidden] -> silu(qkv_proj(x)) split head-major into q, k, v [B, T, H, D]
    o = lightning_attn(q, k, v, slope)          # S_t = exp(-slope) S_{t-1} + k_t v_t^T ; o_t = q_t S_t
    o = RMSNorm over all H*D channels jointly
    out = out_proj(sigmoid(output_gate(x)) * o)

No positional encoding besides the per-head decay; no softmax, no 1/sqrt(d), no denominator.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from text_backbone.config import MiniMaxText01Config
from text_backbone.layers.norm import RMSNorm
from text_backbone.ops.lightning_attn import lightning_attn, lightning_attn_decode


def alibi_head_slopes(num_heads: int) -> list[float]:
    """ALiBi-style base slopes s_h = 2^(-8(h+1)/H) for power-of-two H, interleaved otherwise (SPEC_NOTES §2.3)."""

    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-(2.0 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(num_heads).is_integer():
        return power_of_two(num_heads)
    closest = 2 ** math.floor(math.log2(num_heads))
    return power_of_two(closest) + alibi_head_slopes(2 * closest)[0::2][: num_heads - closest]


def lightning_slopes(num_heads: int, layer_idx: int, num_layers: int) -> torch.Tensor:
    """Per-head decay rates of one layer: s_h * (1 - l/(L-1) + 1e-5), l the GLOBAL layer index (SPEC_NOTES §2.3).

    The released remote code divides by L - 1; for a one-layer model (L = 1) we take the factor as 1 + 1e-5,
    the value the formula gives for the first layer of any deeper model.
    """
    factor = 1.0 + 1e-5 if num_layers == 1 else 1.0 - layer_idx / (num_layers - 1) + 1e-5
    return torch.tensor(alibi_head_slopes(num_heads), dtype=torch.float32) * factor


class LightningAttention(nn.Module):
    def __init__(self, config: MiniMaxText01Config, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.num_layers = config.num_hidden_layers
        inner = self.num_heads * self.head_dim
        self.qkv_proj = nn.Linear(config.hidden_size, 3 * inner, bias=False)
        self.output_gate = nn.Linear(config.hidden_size, inner, bias=False)
        self.norm = RMSNorm(inner, eps=config.lightning_norm_eps)
        self.out_proj = nn.Linear(inner, config.hidden_size, bias=False)
        # Derived, never learned and absent from checkpoints.
        self.register_buffer("slope", lightning_slopes(self.num_heads, layer_idx, self.num_layers), persistent=False)

    def reset_derived_buffers(self) -> None:
        """Recomputes `slope` (needed after a model built on `meta` is materialised)."""
        self.slope = lightning_slopes(self.num_heads, self.layer_idx, self.num_layers).to(self.out_proj.weight.device)

    def forward(
        self,
        x: torch.Tensor,
        *,
        state: torch.Tensor | None = None,
        output_state: bool = False,
        attention_mask: torch.Tensor | None = None,
        cu_seqlens: torch.Tensor | None = None,
        backend: str = "auto",
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x [B, T, hidden]; state [B, H, D, D] fp32 or None -> (out [B, T, hidden], new state or None)."""
        B, T, _ = x.shape
        qkv = F.silu(self.qkv_proj(x))
        # Head-major split: rows [3D*h, 3D*h + D) are q of head h, then k, then v (SPEC_NOTES §2.1).
        q, k, v = qkv.view(B, T, self.num_heads, 3 * self.head_dim).split(self.head_dim, dim=-1)  # [B, T, H, D] each
        slope = self.slope.to(device=x.device)
        if T == 1 and state is not None and attention_mask is None and cu_seqlens is None:
            o, new_state = lightning_attn_decode(q[:, 0], k[:, 0], v[:, 0], slope, state, backend=backend)
            o = o.unsqueeze(1)  # [B, 1, H, D]
        else:
            o, new_state = lightning_attn(
                q, k, v, slope,
                initial_state=state, output_final_state=output_state or state is not None,
                cu_seqlens=cu_seqlens, attention_mask=attention_mask, backend=backend,
            )
        o = self.norm(o.reshape(B, T, self.num_heads * self.head_dim))
        o = torch.sigmoid(self.output_gate(x)) * o
        return self.out_proj(o), new_state
