"""Triton kernels for lightning attention: chunked forward/backward (with packed documents) and decode.

This is the only package that imports triton; the dispatcher in `..` imports it lazily for backend="triton".

    triton_lightning_attn(q, k, v, slope, *, initial_state=None, output_final_state=False, cu_seqlens=None)
        -> (o [B, T, H, V], final state [B|N, H, K, V] float32 or None)       # autograd.py
    triton_lightning_attn_decode(q, k, v, slope, state) -> (o, state)          # decode.py, state updated in place

Modules: sweep.py (the chunk-sweep kernel used by every forward and backward pass), autograd.py (how the
passes map onto it), decode.py (one-token kernel), _runtime.py (interpreter mode, NaN-poisoned test outputs).
`benchmarks/triton_compile_check.py` compiles every variant for sm_90a without a GPU and reports registers and
spills (a developer tool, so it lives outside the runtime package).
"""
from ._runtime import INTERPRET, poison_outputs
from .autograd import LightningAttnFunction, triton_lightning_attn
from .decode import DecodeConfig, triton_lightning_attn_decode
from .sweep import AUTOTUNE_CONFIGS, DEFAULT_CONFIG, SweepConfig, chunk_sweep

__all__ = [
    "triton_lightning_attn",
    "triton_lightning_attn_decode",
    "LightningAttnFunction",
    "SweepConfig",
    "DecodeConfig",
    "DEFAULT_CONFIG",
    "AUTOTUNE_CONFIGS",
    "chunk_sweep",
    "poison_outputs",
    "INTERPRET",
]
