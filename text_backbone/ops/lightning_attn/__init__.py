"""Lightning attention (MiniMax-Text-01's decayed linear attention): one entry point, three backends.

Shapes: q, k `[B, T, H, K]`, v `[B, T, H, V]`, slope `[H]` (decay λ_h = exp(-slope_h)), states `[B, H, K, V]`
(`[N, H, K, V]` for N packed documents).

    S_t = λ S_{t-1} + k_t v_tᵀ,   o_t = q_t S_t        (no softmax, no scaling, no denominator; SPEC_NOTES §2.4)

Backends: "naive" (token loop, naive.py), "torch" (chunked, chunk.py), "triton" (kernels in triton/, imported
only when first used), "auto" (triton for CUDA tensors when it imports, else torch; float64 always goes to
torch, which the kernels do not take). The math, including padding and packed documents, is derived in
README.md next to this file.
"""
from __future__ import annotations

import warnings

import torch

from .chunk import chunk_lightning_attn, real_token_segments
from .decode import decode_lightning_attn
from .naive import naive_lightning_attn, naive_lightning_attn_varlen

__all__ = ["lightning_attn", "lightning_attn_decode"]

BACKENDS = ("auto", "naive", "torch", "triton")

_triton_module = None
_triton_import_error: Exception | None = None


def _load_triton():
    """Imports the Triton kernels once; returns the module or None (the reason kept in `_triton_import_error`)."""
    global _triton_module, _triton_import_error
    if _triton_module is None and _triton_import_error is None:
        try:
            from . import triton as module  # our kernel package, which imports the triton library
        except ImportError as error:  # no triton installed, or the kernel package is missing
            _triton_import_error = error
        else:
            _triton_module = module
    return _triton_module


def _resolve_backend(backend: str, device: torch.device, dtype: torch.dtype) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "triton":
        if _load_triton() is None:
            raise RuntimeError(
                f"backend='triton' but the Triton lightning-attention kernels could not be imported "
                f"({_triton_import_error!r}); install triton on a CUDA machine, or use backend='torch'"
            )
        return "triton"
    if backend == "auto":
        if device.type != "cuda" or dtype == torch.float64:  # the kernels take float32/bfloat16/float16
            return "torch"
        if _load_triton() is None:
            warnings.warn(
                f"lightning_attn: Triton kernels unavailable ({_triton_import_error!r}); using the slower "
                "PyTorch chunked path on CUDA",
                stacklevel=3,
            )
            return "torch"
        return "triton"
    return backend


def _check_inputs(q, k, v, slope, initial_state, cu_seqlens, attention_mask, chunk_size) -> None:
    if q.dim() != 4 or k.shape != q.shape or v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(
            f"expected q, k [B, T, H, K] and v [B, T, H, V] with equal B, T, H; got q {tuple(q.shape)}, "
            f"k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if not (q.dtype == k.dtype == v.dtype) or not q.is_floating_point():
        raise TypeError(f"q, k, v must share one floating dtype; got {q.dtype}, {k.dtype}, {v.dtype}")
    B, T, H, K = q.shape
    V = v.shape[-1]
    if slope.shape != (H,):
        raise ValueError(f"slope must have shape [H] = [{H}], got {tuple(slope.shape)}")
    num_states = B
    if cu_seqlens is not None:
        if B != 1:
            raise ValueError(f"packed input (cu_seqlens) needs batch size 1, got {B}; concatenate the rows along T")
        if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2 or cu_seqlens.is_floating_point():
            raise ValueError(f"cu_seqlens must be a 1-D integer tensor [N + 1], got {cu_seqlens.dtype} "
                             f"{tuple(cu_seqlens.shape)}")
        if cu_seqlens.device.type == "cpu":  # checking values on a GPU tensor would force a sync
            bounds = cu_seqlens.tolist()
            if bounds[0] != 0 or bounds[-1] != T or any(a > b for a, b in zip(bounds, bounds[1:])):
                raise ValueError(f"cu_seqlens must rise from 0 to T = {T}, got {bounds}")
        num_states = cu_seqlens.numel() - 1
    if initial_state is not None and initial_state.shape != (num_states, H, K, V):
        what = "N documents" if cu_seqlens is not None else "B"
        raise ValueError(f"initial_state must have shape [{what}, H, K, V] = {(num_states, H, K, V)}, "
                         f"got {tuple(initial_state.shape)}")
    if attention_mask is not None and attention_mask.shape != (B, T):
        raise ValueError(f"attention_mask must have shape [B, T] = {(B, T)}, got {tuple(attention_mask.shape)}")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")


def lightning_attn(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    slope: torch.Tensor,
    *,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    cu_seqlens: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    backend: str = "auto",
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Causal decayed linear attention over whole sequences (training and prefill).

    Returns (o `[B, T, H, V]` in q's dtype, final state or None). The final state is `[B, H, K, V]`
    (`[N, H, K, V]` with cu_seqlens), float32 (float64 for float64 inputs), only if `output_final_state`.

    cu_seqlens `[N + 1]` (batch 1): packed documents, each starting from zero or its row of initial_state.
    attention_mask `[B, T]` (1 = token, 0 = pad): a pad is an identity step, so any padding pattern gives the
    unpadded result at real positions and in the final state; outputs at pads are zero.
    chunk_size is used by the torch backend only.
    """
    _check_inputs(q, k, v, slope, initial_state, cu_seqlens, attention_mask, chunk_size)
    if attention_mask is not None and bool(attention_mask.all()):
        attention_mask = None  # the common all-ones mask takes the fast unpadded path
    backend = _resolve_backend(backend, q.device, q.dtype)
    if backend == "torch":
        return chunk_lightning_attn(
            q, k, v, slope, initial_state=initial_state, output_final_state=output_final_state,
            cu_seqlens=cu_seqlens, attention_mask=attention_mask, chunk_size=chunk_size,
        )
    if backend == "naive":
        if cu_seqlens is not None:
            o, state = naive_lightning_attn_varlen(
                q, k, v, slope, cu_seqlens, initial_state=initial_state, attention_mask=attention_mask
            )
        else:
            o, state = naive_lightning_attn(q, k, v, slope, initial_state=initial_state, attention_mask=attention_mask)
        return o, (state if output_final_state else None)
    return _triton_lightning_attn(q, k, v, slope, initial_state, output_final_state, cu_seqlens, attention_mask)


def _triton_lightning_attn(q, k, v, slope, initial_state, output_final_state, cu_seqlens, attention_mask):
    """The kernels take no padding mask: a padded batch becomes packed documents of its real tokens."""
    kernel = _triton_module.triton_lightning_attn
    if attention_mask is None:
        return kernel(q, k, v, slope, initial_state=initial_state, output_final_state=output_final_state,
                      cu_seqlens=cu_seqlens)
    B, T, H, _ = q.shape
    source, lengths = real_token_segments(B, T, q.device, cu_seqlens=cu_seqlens, attention_mask=attention_mask)
    packed_cu = torch.nn.functional.pad(lengths.cumsum(0), (1, 0)).to(torch.int32)  # [N + 1]
    packed = [x.reshape(B * T, H, x.shape[-1]).index_select(0, source).unsqueeze(0) for x in (q, k, v)]  # [1, R, H, D]
    o_packed, final_state = kernel(*packed, slope, initial_state=initial_state,
                                   output_final_state=output_final_state, cu_seqlens=packed_cu)
    o = o_packed.new_zeros(B * T, H, v.shape[-1]).index_copy(0, source, o_packed[0])  # zeros at pads
    return o.view(B, T, H, -1), final_state


def lightning_attn_decode(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    slope: torch.Tensor,
    state: torch.Tensor,
    *,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token: q, k `[B, H, K]`, v `[B, H, V]`, state `[B, H, K, V]` (float32/float64) -> (o `[B, H, V]`,
    new state). `S <- λ S + k vᵀ; o = q S`. The given state is left unchanged."""
    if q.dim() != 3 or k.shape != q.shape or v.dim() != 3 or v.shape[:2] != q.shape[:2]:
        raise ValueError(f"expected q, k [B, H, K] and v [B, H, V]; got q {tuple(q.shape)}, k {tuple(k.shape)}, "
                         f"v {tuple(v.shape)}")
    B, H, K = q.shape
    if state.shape != (B, H, K, v.shape[-1]):
        raise ValueError(f"state must have shape [B, H, K, V] = {(B, H, K, v.shape[-1])}, got {tuple(state.shape)}")
    if state.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"the recurrent state must be float32 (or float64), got {state.dtype}; keep it in float32 "
                        "even when activations are bf16")
    if slope.shape != (H,):
        raise ValueError(f"slope must have shape [H] = [{H}], got {tuple(slope.shape)}")
    wide = torch.float64 if torch.float64 in (q.dtype, state.dtype) else q.dtype
    backend = _resolve_backend(backend, q.device, wide)
    if backend == "triton":  # the kernel updates in place by default; this API promises a new state
        return _triton_module.triton_lightning_attn_decode(q, k, v, slope, state, inplace=False)
    if backend == "naive":
        o, new_state = naive_lightning_attn(q[:, None], k[:, None], v[:, None], slope, initial_state=state)
        return o[:, 0], new_state
    return decode_lightning_attn(q, k, v, slope, state)
