"""Lightning attention over whole sequences with Triton kernels, forward and backward.

Shapes: q, k `[B, T, H, K]`, v `[B, T, H, V]`, slope `[H]`, states `[B, H, K, V]` (`[N, H, K, V]` with
cu_seqlens `[N + 1]`, B = 1), float32. S_t = λ S_{t-1} + k_t v_tᵀ, o_t = q_t S_t, λ = exp(-slope) (SPEC_NOTES
§2.4).

All four passes are the chunk sweep of sweep.py with different roles (X is the state the sweep carries):

    pass      direction   a    b    c    X (initial -> final)
    o         forward     q    k    v    S: h0 -> S_T
    dq        forward     do   v    k    Sᵀ: h0ᵀ
    dv        reverse     k    q    do   G: dS_T -> dh0        (G_t = dLoss/dS_t, accumulated backwards)
    dk        reverse     v    do   q    Gᵀ: dS_Tᵀ

e.g. dv_j = Σ_{i ≥ j} λ^(i-j) (q_i · k_j) do_i + λ^(T-1-j) dS_Tᵀ k_j, which is the reverse sweep with
(a, b, c) = (k, q, do); the state's gradient G obeys G_{t-1} = λ G_t + q_t do_tᵀ, so the final X of that
sweep is d(initial state). Backward reads q, k, v, do three times in all and never materialises per-chunk
states. The slope is a fixed buffer (SPEC_NOTES §2.3) and gets no gradient.
"""
from __future__ import annotations

import torch

from ._runtime import SUPPORTED_DTYPES, check_device, log2_decay
from .sweep import SweepConfig, chunk_sweep


class LightningAttnFunction(torch.autograd.Function):
    """Autograd wrapper; inputs are validated and made contiguous by `triton_lightning_attn`."""

    @staticmethod
    def forward(ctx, q, k, v, log2_lam, initial_state, cu_seqlens, output_final_state, config):
        h0 = None if initial_state is None else initial_state.to(torch.float32).contiguous()
        o, final_state = chunk_sweep(
            q, k, v, log2_lam, reverse=False, initial_state=h0,
            output_final_state=output_final_state, cu_seqlens=cu_seqlens, config=config,
        )
        ctx.save_for_backward(q, k, v, log2_lam, h0, cu_seqlens)
        ctx.initial_state_dtype = None if initial_state is None else initial_state.dtype
        ctx.config = config
        ctx.set_materialize_grads(False)
        return o, final_state

    @staticmethod
    def backward(ctx, do, d_final_state):
        q, k, v, log2_lam, h0, cu_seqlens = ctx.saved_tensors
        need_dq, need_dk, need_dv, _, need_dh0 = ctx.needs_input_grad[:5]
        need_dh0 = need_dh0 and h0 is not None
        loss_ignores_o = do is None  # the loss depends on the final state only
        do = torch.zeros_like(v) if loss_ignores_o else do.to(q.dtype).contiguous()
        dht = None if d_final_state is None else d_final_state.to(torch.float32).contiguous()
        common = dict(cu_seqlens=cu_seqlens, config=ctx.config)

        dq = dk = dv = dh0 = None
        if need_dq and loss_ignores_o:
            dq = torch.zeros_like(q)  # q only reaches the loss through o
        elif need_dq:
            dq, _ = chunk_sweep(do, v, k, log2_lam, reverse=False, initial_state=h0, transpose_state=True, **common)
        if need_dv or need_dh0:
            dv, dh0 = chunk_sweep(k, q, do, log2_lam, reverse=True, initial_state=dht,
                                  output_final_state=need_dh0, **common)
        if need_dk:
            dk, _ = chunk_sweep(v, do, q, log2_lam, reverse=True, initial_state=dht, transpose_state=True, **common)
        if dh0 is not None:
            dh0 = dh0.to(ctx.initial_state_dtype)
        return dq, dk, dv if need_dv else None, None, dh0, None, None, None


def triton_lightning_attn(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    slope: torch.Tensor,
    *,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    cu_seqlens: torch.Tensor | None = None,
    config: SweepConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Causal decayed linear attention (training and prefill), differentiable in q, k, v and initial_state.

    Returns (o `[B, T, H, V]` in q's dtype, final state float32 `[B|N, H, K, V]` if output_final_state else
    None). Inputs float32, bfloat16 or float16 (one dtype); products accumulate in float32.
    cu_seqlens `[N + 1]` (int32/int64, B = 1): packed documents, each restarting from its row of initial_state
    (or zero); documents need not be aligned to the chunk size. config: tile sizes (None = autotuned on GPU).
    """
    _check_inputs(q, k, v, slope, initial_state, cu_seqlens)
    if slope.requires_grad:
        raise ValueError("slope is a fixed per-head buffer and the triton kernels give it no gradient; "
                         "pass slope.detach()")
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    if cu_seqlens is not None:
        cu_seqlens = cu_seqlens.contiguous()
    return LightningAttnFunction.apply(
        q, k, v, log2_decay(slope), initial_state, cu_seqlens, output_final_state, config
    )


def _check_inputs(q, k, v, slope, initial_state, cu_seqlens) -> None:
    if q.dim() != 4 or k.shape != q.shape or v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"expected q, k [B, T, H, K] and v [B, T, H, V] with equal B, T, H; got q "
                         f"{tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if not (q.dtype == k.dtype == v.dtype) or q.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"q, k, v must share one dtype among {SUPPORTED_DTYPES}; got {q.dtype}, {k.dtype}, "
                        f"{v.dtype} (use backend='torch' for float64)")
    if not (q.device == k.device == v.device == slope.device):
        raise ValueError(f"q, k, v, slope must be on one device; got {q.device}, {k.device}, {v.device}, "
                         f"{slope.device}")
    check_device(q)
    B, T, H, K = q.shape
    if slope.shape != (H,):
        raise ValueError(f"slope must have shape [H] = [{H}], got {tuple(slope.shape)}")
    num_states = B
    if cu_seqlens is not None:
        if B != 1:
            raise ValueError(f"packed input (cu_seqlens) needs batch size 1, got {B}; concatenate rows along T")
        if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2 or cu_seqlens.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"cu_seqlens must be a 1-D int32/int64 tensor [N + 1], got {cu_seqlens.dtype} "
                             f"{tuple(cu_seqlens.shape)}")
        if cu_seqlens.device != q.device:
            raise ValueError(f"cu_seqlens is on {cu_seqlens.device}, q on {q.device}; move it to q's device")
        num_states = cu_seqlens.numel() - 1
    if initial_state is not None and initial_state.shape != (num_states, H, K, v.shape[-1]):
        what = "N documents" if cu_seqlens is not None else "B"
        raise ValueError(f"initial_state must have shape [{what}, H, K, V] = {(num_states, H, K, v.shape[-1])}, "
                         f"got {tuple(initial_state.shape)}")
