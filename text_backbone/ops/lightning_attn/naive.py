"""Reference lightning attention: the token recurrence, plain and obviously right.

Shapes: q, k `[B, T, H, K]`, v `[B, T, H, V]`, slope `[H]`, states `[B, H, K, V]`.

For one head with decay lambda = exp(-slope), starting from S_0 (zero or an initial state):

    S_t = lambda * S_{t-1} + k_t v_t^T
    o_t = q_t^T S_t

(SPEC_NOTES §2.4). A padded position (mask 0) is an identity step: no decay and nothing added,
so pads never touch the state; the output at a pad is defined as zero. Everything is computed in
float32 or wider (float64 stays float64).
"""
from __future__ import annotations

import torch


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def naive_lightning_attn(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    slope: torch.Tensor,
    *,
    initial_state: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (o `[B, T, H, V]` in q's dtype, final state `[B, H, K, V]` in the accumulation dtype)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    acc = _acc_dtype(q.dtype)
    decay = torch.exp(-slope.to(acc))  # [H]
    if initial_state is None:
        state = q.new_zeros(B, H, K, V, dtype=acc)
    else:
        state = initial_state.to(acc)
    outputs = []
    # unbind (not q[:, t]) so that the backward gathers all T slices in one step instead of T full-size adds
    steps = zip(q.to(acc).unbind(1), k.to(acc).unbind(1), v.to(acc).unbind(1))
    for t, (q_t, k_t, v_t) in enumerate(steps):  # [B, H, K|V]
        step_decay = decay.view(1, H, 1, 1).expand(B, H, 1, 1)
        kv = k_t.unsqueeze(-1) * v_t.unsqueeze(-2)  # [B, H, K, V]
        if attention_mask is not None:
            keep = attention_mask[:, t].to(acc).view(B, 1, 1, 1)
            step_decay = keep * step_decay + (1 - keep)  # pad: decay 1
            kv = kv * keep  # pad: nothing added
        state = step_decay * state + kv
        o_t = torch.einsum("bhk,bhkv->bhv", q_t, state)
        if attention_mask is not None:
            o_t = o_t * keep.view(B, 1, 1)  # pad: output defined as zero
        outputs.append(o_t)
    o = torch.stack(outputs, dim=1) if T > 0 else q.new_zeros(B, 0, H, V, dtype=acc)
    return o.to(q.dtype), state


def naive_lightning_attn_varlen(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    slope: torch.Tensor,
    cu_seqlens: torch.Tensor,
    *,
    initial_state: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Packed documents (B = 1): each document [cu[i], cu[i+1]) starts from its own state.
    An optional attention_mask `[1, T]` marks pads inside the packed sequence.

    Returns (o `[1, T, H, V]`, final states `[N, H, K, V]`), N = number of documents.
    """
    if q.shape[0] != 1:
        raise ValueError(f"packed input must have batch size 1, got {q.shape[0]}")
    outs, finals = [], []
    bounds = cu_seqlens.tolist()
    for i, (start, end) in enumerate(zip(bounds[:-1], bounds[1:])):
        init = None if initial_state is None else initial_state[i : i + 1]
        mask = None if attention_mask is None else attention_mask[:, start:end]
        o, s = naive_lightning_attn(
            q[:, start:end], k[:, start:end], v[:, start:end], slope, initial_state=init, attention_mask=mask
        )
        outs.append(o)
        finals.append(s)
    return torch.cat(outs, dim=1), torch.cat(finals, dim=0)
