"""The softmax (full) attention layer: GQA with partial NeoX RoPE (SPEC_NOTES §3).

64 query heads share 8 key/value heads; RoPE rotates the first `rotary_dim` channels of each head;
scale 1/sqrt(head_dim); causal. Padded keys are masked; packed documents (`cu_seqlens`) attend only
within themselves.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from text_backbone.config import MiniMaxText01Config
from text_backbone.layers.rope import apply_partial_rotary


def build_attention_mask(
    key_padding_mask: torch.Tensor | None, q_len: int, k_len: int, batch: int, device: torch.device
) -> torch.Tensor | None:
    """Boolean [B, 1, q_len, k_len] mask (True = attend) for queries at the last q_len of k_len positions.

    Returns None when plain `is_causal` suffices (no padding, no past). A query that would see no key at
    all (a left-pad position) is allowed to see itself, so softmax stays finite; its output is discarded.
    """
    past = k_len - q_len
    if key_padding_mask is None and past == 0:
        return None
    q_pos = torch.arange(past, k_len, device=device).unsqueeze(-1)  # [q, 1]
    k_pos = torch.arange(k_len, device=device).unsqueeze(0)  # [1, k]
    mask = (k_pos <= q_pos).unsqueeze(0).expand(batch, q_len, k_len)  # [B, q, k]
    if key_padding_mask is not None:
        mask = mask & key_padding_mask.bool().unsqueeze(1)
        mask = mask | ((k_pos == q_pos) & ~mask.any(-1, keepdim=True))
    return mask.unsqueeze(1)


class SoftmaxAttention(nn.Module):
    def __init__(self, config: MiniMaxText01Config, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        self.q_proj = nn.Linear(config.hidden_size, self.num_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(config.hidden_size, self.num_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(config.hidden_size, self.num_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, config.hidden_size, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        *,
        kv_cache=None,
        key_padding_mask: torch.Tensor | None = None,
        cu_seqlens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x [B, T, hidden]; cos/sin [B, T, R]; key_padding_mask [B, past + T] (1 = real token)."""
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.num_heads, self.head_dim)
        k = self.k_proj(x).view(B, T, self.num_kv_heads, self.head_dim)
        v = self.v_proj(x).view(B, T, self.num_kv_heads, self.head_dim)
        q, k = apply_partial_rotary(q, cos, sin), apply_partial_rotary(k, cos, sin)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, heads, T, D]
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer_idx, k, v)  # [B, KVH, past + T, D]
        if cu_seqlens is not None:
            o = self._packed(q, k, v, cu_seqlens)
        elif T == 1 and k.shape[2] > 1:
            o = self._decode_step(q, k, v, key_padding_mask)
        else:
            mask = build_attention_mask(key_padding_mask, T, k.shape[2], B, x.device)
            o = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=mask is None, enable_gqa=self.num_kv_heads != self.num_heads
            )
        o = o.transpose(1, 2).reshape(B, T, self.num_heads * self.head_dim)
        return self.o_proj(o)

    def _decode_step(self, q, k, v, key_padding_mask):
        """One new token per row. The query heads that share a KV head become one block of queries against
        it, so keys and values are read once per KV head (SDPA's enable_gqa path costs ~2x that on CPU;
        docs/PERFORMANCE.md "Decoding"). The newest token sees every cached key; only padding is masked."""
        B, _, _, D = q.shape
        group = self.num_heads // self.num_kv_heads
        q = q.reshape(B, self.num_kv_heads, group, D)  # head h = kv_head * group + g  ->  [B, KVH, G, D]
        mask = None if key_padding_mask is None else key_padding_mask.bool()[:, None, None, :]  # [B, 1, 1, S]
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [B, KVH, G, D]
        return o.reshape(B, self.num_heads, 1, D)

    def _packed(self, q, k, v, cu_seqlens):
        """Causal attention inside each packed document [cu[i], cu[i+1]) of a B = 1 row."""
        bounds = cu_seqlens.tolist()
        outs = [
            F.scaled_dot_product_attention(
                q[:, :, s:e], k[:, :, s:e], v[:, :, s:e], is_causal=True,
                enable_gqa=self.num_kv_heads != self.num_heads,
            )
            for s, e in zip(bounds[:-1], bounds[1:])
        ]
        return torch.cat(outs, dim=2)
