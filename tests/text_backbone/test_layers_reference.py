"""Softmax attention and partial RoPE against plain written-out references (SPEC_NOTES §3)."""
import math

import torch
import torch.nn.functional as F

from text_backbone.config import MiniMaxText01Config
from text_backbone.layers.rope import apply_partial_rotary, rotary_cos_sin
from text_backbone.layers.softmax_attention import SoftmaxAttention


def reference_partial_rope(x, positions, rotary_dim, theta):
    """Rotate pairs (i, i + R/2) for i < R/2 by angle pos * theta^(-2i/R); channels >= R untouched."""
    out = x.clone()
    half = rotary_dim // 2
    for i in range(half):
        angle = positions.double()[..., None] * theta ** (-2 * i / rotary_dim)  # [B, T, 1]
        a, b = x[..., i], x[..., i + half]  # [B, T, H]
        out[..., i] = a * torch.cos(angle) - b * torch.sin(angle)
        out[..., i + half] = b * torch.cos(angle) + a * torch.sin(angle)
    return out


def test_partial_rope_matches_pairwise_rotation():
    x = torch.randn(2, 9, 3, 16, dtype=torch.float64)
    positions = torch.tensor([list(range(9)), list(range(100, 109))])
    cos, sin = rotary_cos_sin(positions, 8, 1e7, torch.float64)
    got = apply_partial_rotary(x, cos, sin)
    expected = reference_partial_rope(x, positions, 8, 1e7)
    # cos/sin are built from fp32 frequencies (as in the references): ~1e-7 relative angle error at position 108.
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert torch.equal(got[..., 8:], x[..., 8:])


def test_rope_scores_depend_only_on_relative_position():
    q, k = torch.randn(1, 1, 1, 16, dtype=torch.float64), torch.randn(1, 1, 1, 16, dtype=torch.float64)

    def score(pq, pk):
        cq, sq = rotary_cos_sin(torch.tensor([[pq]]), 16, 1e4, torch.float64)
        ck, sk = rotary_cos_sin(torch.tensor([[pk]]), 16, 1e4, torch.float64)
        return (apply_partial_rotary(q, cq, sq) * apply_partial_rotary(k, ck, sk)).sum().item()

    assert math.isclose(score(7, 3), score(27, 23), rel_tol=1e-6)


def test_softmax_attention_matches_explicit_gqa_reference():
    torch.manual_seed(0)
    cfg = MiniMaxText01Config.from_preset("tiny")
    attn = SoftmaxAttention(cfg, 7).double()
    B, T = 2, 11
    x = torch.randn(B, T, cfg.hidden_size, dtype=torch.float64)
    positions = torch.arange(T).expand(B, T)
    cos, sin = rotary_cos_sin(positions, cfg.rotary_dim, cfg.rope_theta, torch.float64)
    got = attn(x, cos, sin)

    H, KVH, D = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    q = (x @ attn.q_proj.weight.T).view(B, T, H, D)
    k = (x @ attn.k_proj.weight.T).view(B, T, KVH, D)
    v = (x @ attn.v_proj.weight.T).view(B, T, KVH, D)
    q = reference_partial_rope(q, positions, cfg.rotary_dim, cfg.rope_theta)
    k = reference_partial_rope(k, positions, cfg.rotary_dim, cfg.rope_theta)
    group = H // KVH
    out = torch.zeros(B, T, H, D, dtype=torch.float64)
    for h in range(H):
        kv = h // group  # query head h reads key/value head h // group
        scores = torch.einsum("btd,bsd->bts", q[:, :, h], k[:, :, kv]) / math.sqrt(D)
        scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        out[:, :, h] = scores.softmax(-1) @ v[:, :, kv]
    expected = out.reshape(B, T, H * D) @ attn.o_proj.weight.T
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_decode_step_matches_masked_full_attention():
    """The grouped single-token path equals the general masked path, with and without padding."""
    from text_backbone.layers.softmax_attention import build_attention_mask

    torch.manual_seed(0)
    cfg = MiniMaxText01Config.from_preset("tiny")
    attn = SoftmaxAttention(cfg, 7).double()
    B, S, H, KVH, D = 2, 9, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    q = torch.randn(B, H, 1, D, dtype=torch.float64)
    k, v = torch.randn(B, KVH, S, D, dtype=torch.float64), torch.randn(B, KVH, S, D, dtype=torch.float64)
    padding = torch.ones(B, S, dtype=torch.long)
    padding[1, :3] = 0
    for mask in (None, padding):
        full = build_attention_mask(mask, 1, S, B, q.device)
        expected = F.scaled_dot_product_attention(q, k, v, attn_mask=full, enable_gqa=True) if full is not None \
            else F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
        torch.testing.assert_close(attn._decode_step(q, k, v, mask), expected, rtol=1e-12, atol=1e-12)
