"""One generation step of lightning attention as a single Triton kernel.

Shapes: q, k `[B, H, K]` (or `[B, 1, H, K]`), v `[B, H, V]` (or `[B, 1, H, V]`), slope `[H]`,
state `[B, H, K, V]` float32, updated in place:

    S <- λ S + k vᵀ,   o = q S        (λ = exp(-slope), per head; SPEC_NOTES §2.6)

Decoding is bound by moving the state (64 KiB per head at K = V = 128) in and out of HBM, so each
program streams one [K, BLOCK_V] slice of one head's state once: read, update, write, and reduce o from
the updated slice while it is still in registers.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from ._runtime import INTERPRET, SUPPORTED_DTYPES, check_device, log2_decay, new_output
from .sweep import BF16_SPLIT


@dataclass(frozen=True)
class DecodeConfig:
    """block_v: state columns per program (power of two >= 16); more programs hide more memory latency."""

    block_v: int = 32
    num_warps: int = 4

    def __post_init__(self):
        if self.block_v < 16 or self.block_v & (self.block_v - 1):
            raise ValueError(f"DecodeConfig.block_v must be a power of two >= 16, got {self.block_v}")


@triton.jit
def decode_kernel(
    q_ptr, k_ptr, v_ptr, o_ptr, state_ptr,
    log2_decay_ptr,  # [H] float32
    H,
    K: tl.constexpr, V: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_V: tl.constexpr,
    ROUND_BF16: tl.constexpr,  # interpreter with bf16 output: round to nearest like a GPU (see sweep.BF16_SPLIT)
):
    i_v = tl.program_id(0)
    i_bh = tl.program_id(1)  # b * H + h
    i_h = i_bh % H
    offs_k = tl.arange(0, BLOCK_K)
    offs_v = i_v * BLOCK_V + tl.arange(0, BLOCK_V)
    mask_k = offs_k < K
    mask_v = offs_v < V

    q = tl.load(q_ptr + i_bh * K + offs_k, mask=mask_k, other=0.0).to(tl.float32)  # [BLOCK_K]
    k = tl.load(k_ptr + i_bh * K + offs_k, mask=mask_k, other=0.0).to(tl.float32)  # [BLOCK_K]
    v = tl.load(v_ptr + i_bh * V + offs_v, mask=mask_v, other=0.0).to(tl.float32)  # [BLOCK_V]
    state_offs = i_bh.to(tl.int64) * K * V + offs_k[:, None] * V + offs_v[None, :]
    state_mask = mask_k[:, None] & mask_v[None, :]
    state = tl.load(state_ptr + state_offs, mask=state_mask, other=0.0)  # [BLOCK_K, BLOCK_V]

    decay = tl.exp2(tl.load(log2_decay_ptr + i_h))
    state = state * decay + k[:, None] * v[None, :]
    tl.store(state_ptr + state_offs, state, mask=state_mask)
    o = tl.sum(q[:, None] * state, axis=0)  # [BLOCK_V]
    if ROUND_BF16:
        split = o * BF16_SPLIT
        o = split - (split - o)
    tl.store(o_ptr + i_bh * V + offs_v, o.to(o_ptr.dtype.element_ty), mask=mask_v)


def triton_lightning_attn_decode(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    slope: torch.Tensor,
    state: torch.Tensor,
    *,
    inplace: bool = True,
    config: DecodeConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (o in q's dtype and layout with V features, the updated state). With inplace (the default) the
    given state tensor itself is updated and returned; inplace=False updates and returns a copy. Inference
    only: no autograd."""
    token_axis = q.dim() == 4
    if token_axis:
        if q.shape[1] != 1 or k.shape != q.shape or v.dim() != 4 or v.shape[:2] != q.shape[:2]:
            raise ValueError(f"decode takes one token: q, k [B, 1, H, K], v [B, 1, H, V]; got q {tuple(q.shape)}, "
                             f"k {tuple(k.shape)}, v {tuple(v.shape)}")
        q, k, v = q[:, 0], k[:, 0], v[:, 0]
    if q.dim() != 3 or k.shape != q.shape or v.dim() != 3 or v.shape[:2] != q.shape[:2]:
        raise ValueError(f"expected q, k [B, H, K] and v [B, H, V]; got q {tuple(q.shape)}, k {tuple(k.shape)}, "
                         f"v {tuple(v.shape)}")
    if not (q.dtype == k.dtype == v.dtype) or q.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"q, k, v must share one dtype among {SUPPORTED_DTYPES}; got {q.dtype}, {k.dtype}, {v.dtype}")
    B, H, K = q.shape
    V = v.shape[-1]
    if slope.shape != (H,):
        raise ValueError(f"slope must have shape [H] = [{H}], got {tuple(slope.shape)}")
    if state.shape != (B, H, K, V) or state.dtype != torch.float32:
        raise ValueError(f"state must be float32 [B, H, K, V] = {(B, H, K, V)}, got {state.dtype} "
                         f"{tuple(state.shape)}; keep the recurrent state in float32 even for bf16 activations")
    if not (q.device == k.device == v.device == slope.device == state.device):
        raise ValueError("q, k, v, slope and state must be on one device")
    check_device(q)
    if not inplace:
        state = state.clone(memory_format=torch.contiguous_format)
    elif not state.is_contiguous():
        raise ValueError("an in-place decode needs a contiguous state; pass state.contiguous() and keep the result, "
                         "or call with inplace=False")
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    config = config or DecodeConfig()
    o = new_output((B, H, V), q.dtype, q.device)
    if B * H > 0 and V > 0:
        block_v = min(config.block_v, max(16, triton.next_power_of_2(V)))
        grid = (triton.cdiv(V, block_v), B * H)
        decode_kernel[grid](
            q, k, v, o, state, log2_decay(slope), H,
            K=K, V=V, BLOCK_K=max(16, triton.next_power_of_2(K)), BLOCK_V=block_v,
            ROUND_BF16=INTERPRET and q.dtype == torch.bfloat16, num_warps=config.num_warps,
        )
    return (o[:, None] if token_axis else o), state
