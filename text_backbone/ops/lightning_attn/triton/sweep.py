"""The one kernel behind forward and backward: a chunked sweep of a decayed linear recurrence.

Shapes: a, b `[B, T, H, DA]`, c `[B, T, H, DC]`, out `[B, T, H, DC]`, state X `[N, H, DA, DC]` (float32),
N = B, or the number of documents with cu_seqlens (then B = 1). λ = exp(-slope_h) per head.

Forward sweep (REVERSE = False), for every position i (within a sequence):

    out_i = Σ_{j ≤ i} λ^(i-j) (a_i · b_j) c_j + λ^(i+1) a_i X_0     X_end = λ^T X_0 + Σ_j λ^(T-1-j) b_j c_jᵀ

Reverse sweep (REVERSE = True), the same with time running backwards:

    out_j = Σ_{i ≥ j} λ^(i-j) (a_j · b_i) c_i + λ^(T-1-j) a_j X_T   X_0 = λ^T X_T + Σ_i λ^(i+1) b_i c_iᵀ

(the reverse weights differ from a mirrored forward sweep by one power of λ because the state is
"after the last token", not "before the first"). With (a, b, c) = (q, k, v) the forward sweep is
lightning attention; autograd.py maps dq, dk, dv and d(initial state) onto the same kernel.

One program owns one (sequence, head, BLOCK_C-wide slice of DC) and walks the sequence in chunks of BT
tokens, keeping its [DA, BLOCK_C] slice of the state in registers (Lightning Attention-2, SPEC_NOTES §2.8):
per chunk an intra-chunk product through the BT×BT decay mask, an inter-chunk product against the state,
and the state update. Chunks start at each sequence's first token, so packed documents need no alignment.
c is read and out written once; a and b once per DC slice (a head's slices are neighbouring programs, so
the re-reads can come from L2); the state never leaves the chip.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl
import triton.testing

from ._runtime import INTERPRET, matmul_settings, new_output


@dataclass(frozen=True)
class SweepConfig:
    """Tile sizes for the sweep kernel. block_t: tokens per chunk; block_c: width of the DC slice one program
    owns (a power of two ≥ 16; DC is masked to it). Both ≥ 16 because `tl.dot` needs 16-wide tiles."""

    block_t: int = 64
    block_c: int = 64
    num_warps: int = 8  # 4 warps spill registers at this tile on sm_90a (benchmarks/triton_compile_check.py)
    num_stages: int = 2

    def __post_init__(self):
        for name in ("block_t", "block_c"):
            value = getattr(self, name)
            if value < 16 or value & (value - 1):
                raise ValueError(f"SweepConfig.{name} must be a power of two >= 16, got {value}")


# Candidate tilings for Hopper, timed once per (head dims, direction, flags, dtype, size bucket) on the GPU.
# BT trades the O(BT) intra-chunk work per token against the number of sequential steps; BLOCK_C trades the
# number of programs (B·H·DC/BLOCK_C, which must cover 132 SMs at B = 1) against re-reading a and b (from
# L2) and recomputing the BT×BT scores once per slice. Only tilings that compile for sm_90a without
# register spills at K = V = 128 (benchmarks/triton_compile_check.py --all) are listed, except the 128-token chunk, which
# spills ~200 B but halves the sequential steps. Every entry is one more compilation per variant.
AUTOTUNE_CONFIGS = [
    SweepConfig(block_t=64, block_c=64, num_warps=8, num_stages=2),
    SweepConfig(block_t=64, block_c=64, num_warps=8, num_stages=3),
    SweepConfig(block_t=64, block_c=32, num_warps=4, num_stages=2),
    SweepConfig(block_t=64, block_c=32, num_warps=4, num_stages=3),
    SweepConfig(block_t=64, block_c=32, num_warps=8, num_stages=2),
    SweepConfig(block_t=32, block_c=64, num_warps=8, num_stages=3),
    SweepConfig(block_t=32, block_c=32, num_warps=4, num_stages=3),
    SweepConfig(block_t=128, block_c=32, num_warps=8, num_stages=2),
]


# Interpreter-only rounding (UPCAST, see _runtime.matmul_settings): Triton 3.8's interpreter converts
# float32 -> bfloat16 by truncation, which biases every rounded operand towards zero, where GPUs round to
# nearest. Veltkamp's split, hi = t - (t - x) with t = x·(2^16 + 1), is x rounded to its 8 leading
# significant bits (bf16's precision) in exact fp32 arithmetic, so the interpreter multiplies the numbers a
# GPU would. It is written out inline below because every nested jit call costs the interpreter ~20 ms.
BF16_SPLIT: tl.constexpr = tl.constexpr(65537.0)


# The optional-input flags are run-time integers, kept out of Triton's value specialisation (which would
# compile separate kernels for 0 and 1): each variant is another compilation of every autotune config
# (seconds each), while the flags only steer one masked load, one masked store and one scalar branch.
_RUNTIME_INTS = ["T", "has_h0", "store_ht", "is_varlen", "T_BUCKET", "NH_BUCKET"]


@triton.jit(do_not_specialize=_RUNTIME_INTS)
def chunk_sweep_kernel(
    a_ptr, b_ptr, c_ptr, out_ptr,
    log2_decay_ptr,  # [H] float32, log2(λ)
    h0_ptr, ht_ptr,  # [N, H, DA, DC] float32, contiguous
    cu_seqlens_ptr,  # [N + 1] int32 (is_varlen only)
    T, H,
    has_h0, store_ht, is_varlen,  # 0/1: read h0, write ht, documents from cu_seqlens
    T_BUCKET, NH_BUCKET,  # autotune keys only
    DA: tl.constexpr, DC: tl.constexpr, BLOCK_DA: tl.constexpr,
    BT: tl.constexpr, BLOCK_C: tl.constexpr, REVERSE: tl.constexpr,
    MM_DTYPE: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr,
):
    i_c = tl.program_id(0)
    i_nh = tl.program_id(1)
    i_n = i_nh // H
    i_h = i_nh % H
    if is_varlen:
        bos = tl.load(cu_seqlens_ptr + i_n).to(tl.int64)
        eos = tl.load(cu_seqlens_ptr + i_n + 1).to(tl.int64)
    else:
        bos = i_n.to(tl.int64) * T
        eos = bos + T
    seq_len = (eos - bos).to(tl.int32)
    num_chunks = tl.cdiv(seq_len, BT)
    log2_lam = tl.load(log2_decay_ptr + i_h).to(tl.float32)
    lam = tl.exp2(log2_lam)

    offs_t = tl.arange(0, BT)
    offs_a = tl.arange(0, BLOCK_DA)
    offs_c = i_c * BLOCK_C + tl.arange(0, BLOCK_C)
    mask_a = offs_a < DA
    mask_c = offs_c < DC
    pos = offs_t.to(tl.float32)
    # Element offsets inside one chunk (int32, loop-invariant); each chunk adds one int64 scalar base. Per-element
    # int64 offsets would cost two registers per element of every tile.
    ab_tile = offs_t[:, None] * (H * DA) + offs_a[None, :]  # [BT, BLOCK_DA]
    c_tile = offs_t[:, None] * (H * DC) + offs_c[None, :]  # [BT, BLOCK_C]

    state_base = i_nh.to(tl.int64) * DA * DC
    state_mask = mask_a[:, None] & mask_c[None, :] & (has_h0 != 0)
    state = tl.load(h0_ptr + state_base + offs_a[:, None] * DC + offs_c[None, :], mask=state_mask, other=0.0)

    for step in range(0, num_chunks):
        if REVERSE:
            chunk = num_chunks - 1 - step
        else:
            chunk = step
        chunk_len = tl.minimum(seq_len - chunk * BT, BT)
        live = offs_t < chunk_len
        row0 = (bos + chunk * BT) * H + i_h  # int64 index of the chunk's first row in the [B·T·H, D] view
        if DA == BLOCK_DA:  # masks only where there is padding: fewer live predicate registers
            ab_mask = live[:, None]
        else:
            ab_mask = live[:, None] & mask_a[None, :]
        if DC % BLOCK_C == 0:
            c_mask = live[:, None]
        else:
            c_mask = live[:, None] & mask_c[None, :]
        a = tl.load(a_ptr + row0 * DA + ab_tile, mask=ab_mask, other=0.0)  # [BT, BLOCK_DA]
        b = tl.load(b_ptr + row0 * DA + ab_tile, mask=ab_mask, other=0.0)  # [BT, BLOCK_DA]
        c = tl.load(c_ptr + row0 * DC + c_tile, mask=c_mask, other=0.0)  # [BT, BLOCK_C]
        if UPCAST:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
            c = c.to(tl.float32)

        # Decay of each row to the state's reference point. The query side scales the fp32 product's rows
        # (diag(d)·(a X) rather than (diag(d)·a) X): no extra rounding, and a and b feed every product
        # straight from shared memory. The key side scales c's rows before rounding, with the largest weight
        # λ^0 = 1 (one factor λ of the reverse sweep is applied after the product), so a strongly decaying
        # head does not push fp16 operands into subnormals. Dead rows (past the chunk end) hold zeros; their
        # exponents are zeroed too, since λ^(-n) could overflow to inf and inf · 0 is NaN.
        last = chunk_len.to(tl.float32) - 1.0
        if REVERSE:
            a_decay = tl.exp2(tl.where(live, last - pos, 0.0) * log2_lam)  # λ^(L-1-i)
            c_decay = tl.exp2(pos * log2_lam)  # λ^(j+1) / λ
        else:
            a_decay = tl.exp2((pos + 1.0) * log2_lam)  # λ^(i+1)
            c_decay = tl.exp2(tl.where(live, last - pos, 0.0) * log2_lam)  # λ^(L-1-j)

        # Inter-chunk term first, the intra-chunk term accumulated onto it, then the state update accumulated
        # onto the decayed state: few tiles are alive at once (register pressure).
        if UPCAST:
            split = state * BF16_SPLIT
            state_op = split - (split - state)
        else:
            state_op = state.to(MM_DTYPE)
        out = tl.dot(a, state_op, input_precision=PRECISION, out_dtype=tl.float32) * a_decay[:, None]

        scores = tl.dot(a, tl.trans(b), input_precision=PRECISION, out_dtype=tl.float32)  # [BT, BT]
        # λ^|i-j| on the causal side (i ≥ j forward, i ≤ j reverse), 0 elsewhere
        if REVERSE:
            lag = pos[None, :] - pos[:, None]
        else:
            lag = pos[:, None] - pos[None, :]
        scores = tl.where(lag >= 0, scores * tl.exp2(tl.maximum(lag, 0.0) * log2_lam), 0.0)
        if UPCAST:
            split = scores * BF16_SPLIT
            scores = split - (split - scores)
        else:
            scores = scores.to(MM_DTYPE)
        out = tl.dot(scores, c, acc=out, input_precision=PRECISION, out_dtype=tl.float32)  # [BT, BLOCK_C]
        if UPCAST:
            split = out * BF16_SPLIT
            out = split - (split - out)
        tl.store(out_ptr + row0 * DC + c_tile, out.to(out_ptr.dtype.element_ty), mask=c_mask)

        c_dec = c * c_decay[:, None]  # [BT, BLOCK_C]
        if UPCAST:
            split = c_dec * BF16_SPLIT
            c_dec = split - (split - c_dec)
        else:
            c_dec = c_dec.to(MM_DTYPE)
        if REVERSE:  # X <- λ^L X + λ Σ λ^j b_j c_jᵀ, written as λ (λ^(L-1) X + Σ ...) to accumulate in place
            state = tl.dot(tl.trans(b), c_dec, acc=state * tl.exp2(last * log2_lam), input_precision=PRECISION,
                           out_dtype=tl.float32) * lam
        else:
            state = tl.dot(tl.trans(b), c_dec, acc=state * tl.exp2((last + 1.0) * log2_lam),
                           input_precision=PRECISION, out_dtype=tl.float32)

    state_mask = mask_a[:, None] & mask_c[None, :] & (store_ht != 0)
    tl.store(ht_ptr + state_base + offs_a[:, None] * DC + offs_c[None, :], state, mask=state_mask)


def _prune_configs(configs, named_args, **kwargs):
    """Drop tilings wider than the (padded) DC: they would only add masked-off lanes."""
    dc = kwargs["DC"] if "DC" in kwargs else named_args["DC"]  # constexprs arrive as keyword arguments
    widest = max(16, triton.next_power_of_2(dc))
    kept = [config for config in configs if config.kwargs["BLOCK_C"] <= widest]
    return kept or configs[:1]


def _quick_bench(kernel_call, quantiles):
    """~5 ms warm-up and ~25 ms of timed runs per config (Triton's default is 25 + 100 ms): enough to rank
    tilings of a multi-millisecond kernel, and it keeps first calls on new shapes short."""
    return triton.testing.do_bench(kernel_call, warmup=5, rep=25, quantiles=quantiles)


_tuned_kernel = None
if not INTERPRET:  # the autotuner times configs on the GPU; the interpreter runs one given config
    _tuned_kernel = triton.autotune(
        configs=[
            triton.Config({"BT": c.block_t, "BLOCK_C": c.block_c}, num_warps=c.num_warps, num_stages=c.num_stages)
            for c in AUTOTUNE_CONFIGS
        ],
        key=["DA", "DC", "T_BUCKET", "NH_BUCKET", "REVERSE", "is_varlen", "MM_DTYPE"],
        prune_configs_by={"early_config_prune": _prune_configs},
        do_bench=_quick_bench,
    )(chunk_sweep_kernel)

DEFAULT_CONFIG = SweepConfig()
# fp32 products are three TF32 products each, with twice the operand bytes: small tiles keep it compiling in
# seconds and spilling little (benchmarks/triton_compile_check.py).
FP32_CONFIG = SweepConfig(block_t=16, block_c=32, num_warps=4, num_stages=1)


def chunk_sweep(
    a: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor,
    log2_decay: torch.Tensor,
    *,
    reverse: bool,
    initial_state: torch.Tensor | None = None,
    transpose_state: bool = False,
    output_final_state: bool = False,
    cu_seqlens: torch.Tensor | None = None,
    config: SweepConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Runs the sweep described in the module docstring. Returns (out `[B, T, H, DC]` in a's dtype,
    final state float32 or None).

    a, b, c must be contiguous with one dtype; initial_state float32 `[N, H, DA, DC]`, or `[N, H, DC, DA]`
    holding Xᵀ when transpose_state (the final state is then returned in that layout too; the transposes are
    copies of the small state, which keeps the kernel's state addressing compile-time simple).
    config None: autotuned on a GPU (FP32_CONFIG for fp32), DEFAULT_CONFIG in the interpreter.
    """
    B, T, H, DA = a.shape
    DC = c.shape[-1]
    N = B if cu_seqlens is None else cu_seqlens.numel() - 1
    is_varlen = cu_seqlens is not None
    out = new_output((B, T, H, DC), a.dtype, a.device)
    final_state = new_output((N, H, DA, DC), torch.float32, a.device) if output_final_state else None
    if initial_state is not None:
        initial_state = (initial_state.transpose(-1, -2) if transpose_state else initial_state).contiguous()
    if N * H == 0 or DC == 0:
        return out, _as_layout(final_state, transpose_state)
    # Absent optional tensors are stood in for by tensors of the same dtype (never dereferenced), so that
    # present or absent they select the same compiled kernel.
    no_state = log2_decay
    cu_seqlens = torch.zeros(1, dtype=torch.int32, device=a.device) if cu_seqlens is None else \
        cu_seqlens.to(torch.int32)
    args = (
        a, b, c, out, log2_decay,
        no_state if initial_state is None else initial_state,
        no_state if final_state is None else final_state,
        cu_seqlens,
        T, H,
        int(initial_state is not None), int(output_final_state), int(is_varlen),
        triton.next_power_of_2(max(T, 1)).bit_length(), triton.next_power_of_2(N * H).bit_length(),
    )
    constexprs = dict(DA=DA, DC=DC, BLOCK_DA=max(16, triton.next_power_of_2(DA)), REVERSE=reverse,
                      **matmul_settings(a.dtype))
    if config is None and a.dtype == torch.float32:
        config = FP32_CONFIG  # fp32 is the accuracy mode: one fixed tiling, no autotuning compile storm
    if config is None and _tuned_kernel is not None:
        grid = lambda meta: (triton.cdiv(DC, meta["BLOCK_C"]), N * H)  # noqa: E731
        _tuned_kernel[grid](*args, **constexprs)
    else:
        config = config or DEFAULT_CONFIG
        grid = (triton.cdiv(DC, config.block_c), N * H)
        chunk_sweep_kernel[grid](
            *args, **constexprs, BT=config.block_t, BLOCK_C=config.block_c,
            num_warps=config.num_warps, num_stages=config.num_stages,
        )
    return out, _as_layout(final_state, transpose_state)


def _as_layout(state: torch.Tensor | None, transpose: bool) -> torch.Tensor | None:
    if state is None or not transpose:
        return state
    return state.transpose(-1, -2).contiguous()
