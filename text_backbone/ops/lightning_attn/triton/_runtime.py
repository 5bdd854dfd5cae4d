"""Run-time facts the kernels and their launchers share: interpreter mode, dtypes, output allocation.

Triton decides at decoration time whether `@triton.jit` compiles for a GPU or runs in its Python
interpreter (`TRITON_INTERPRET=1`, used by the CPU test suite), so the mode is read once here, when
this package is imported, before any kernel module is.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import triton
import triton.language as tl

INTERPRET: bool = bool(triton.knobs.runtime.interpret)

SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_TL_DTYPES = {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}

_poison_outputs = False


def matmul_settings(dtype: torch.dtype) -> dict:
    """Constexpr arguments that fix how `tl.dot` is fed for inputs of `dtype`.

    MM_DTYPE: operands are rounded to the input dtype before each product (bf16/fp16 tensor cores with
    fp32 accumulation); fp32 inputs stay fp32 and, on a GPU, use "tf32x3" products (three TF32 tensor-core
    products, ~2^-21 relative error, i.e. fp32 accuracy; plain TF32 would be 2^-11, and "ieee" FMA products
    compile to a kernel that spills kilobytes of registers). The interpreter multiplies fp32 exactly.
    UPCAST: Triton 3.8's interpreter multiplies bf16 tiles as their raw uint16 bit patterns (numpy has no
    bf16) and truncates float32 -> bf16, so there operands are rounded to bf16 values by hand (to nearest,
    as GPUs do) and kept in fp32; the values multiplied are then the bf16 numbers a GPU would multiply.
    """
    if dtype not in _TL_DTYPES:
        raise TypeError(f"triton lightning attention supports {SUPPORTED_DTYPES}, got {dtype}")
    return {
        "MM_DTYPE": _TL_DTYPES[dtype],
        "UPCAST": INTERPRET and dtype == torch.bfloat16,
        "PRECISION": ("ieee" if INTERPRET else "tf32x3") if dtype == torch.float32 else "tf32",
    }


@contextlib.contextmanager
def poison_outputs(enabled: bool = True) -> Iterator[None]:
    """Test mode: every buffer the kernels write is allocated full of NaN, so an element a kernel
    forgets to write shows up as NaN instead of as whatever memory happened to hold."""
    global _poison_outputs
    previous, _poison_outputs = _poison_outputs, enabled
    try:
        yield
    finally:
        _poison_outputs = previous


def new_output(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An output buffer the kernel fully overwrites (NaN-filled in `poison_outputs` mode)."""
    if _poison_outputs:
        return torch.full(shape, float("nan"), dtype=dtype, device=device)
    return torch.empty(shape, dtype=dtype, device=device)


def log2_decay(slope: torch.Tensor) -> torch.Tensor:
    """Per-head log2 of the decay, float32 `[H]`: λ^n = exp(-slope·n) = exp2(log2_decay·n)."""
    return (slope.detach().to(torch.float32) * -1.4426950408889634).contiguous()


def check_device(tensor: torch.Tensor) -> None:
    if not INTERPRET and tensor.device.type != "cuda":
        raise RuntimeError(
            f"the triton lightning-attention kernels need CUDA tensors, got {tensor.device}; use "
            "backend='torch' on CPU (or set TRITON_INTERPRET=1 before importing triton to debug on CPU)"
        )
