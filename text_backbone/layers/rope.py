"""Partial NeoX-style rotary embedding (SPEC_NOTES §3).

Only the first `rotary_dim` of each head's `head_dim` channels rotate (64 of 128 in the released model);
within them channel i pairs with channel i + rotary_dim/2 ("rotate_half"). The rest pass through.
cos/sin are computed from the positions on every call: the cost is tiny next to attention and there is
no cache to size, grow or move between devices.
"""
from __future__ import annotations

import torch


def rotary_cos_sin(position_ids: torch.Tensor, rotary_dim: int, theta: float, dtype: torch.dtype):
    """position_ids [B, T] -> cos, sin [B, T, rotary_dim] (frequencies computed in fp32, as the references do)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, rotary_dim, 2, device=position_ids.device, dtype=torch.float32) / rotary_dim))
    freqs = position_ids.to(torch.float32).unsqueeze(-1) * inv_freq  # [B, T, rotary_dim/2]
    emb = torch.cat((freqs, freqs), dim=-1)  # [B, T, rotary_dim]
    return emb.cos().to(dtype), emb.sin().to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_partial_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, T, H, D]; cos/sin [B, T, R] with R <= D: rotate x[..., :R], keep x[..., R:]."""
    rot = cos.shape[-1]
    cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)  # [B, T, 1, R]
    x_rot, x_pass = x[..., :rot], x[..., rot:]
    return torch.cat((x_rot * cos + _rotate_half(x_rot) * sin, x_pass), dim=-1)
