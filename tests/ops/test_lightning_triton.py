"""Triton lightning-attention kernels against the float64 token recurrence (naive.py).

    .venv/bin/python -m pytest -q tests/ops/test_lightning_triton.py          # CPU: Triton's interpreter
    .venv/bin/python -m pytest -q tests/ops/test_lightning_triton.py -m gpu   # GPU only tests (CUDA machine)

Without CUDA, tests/conftest.py sets TRITON_INTERPRET=1 before triton is imported and the kernels run in
Triton's interpreter on CPU tensors (slow, so shapes and tiles are small); with CUDA the same tests compile
for the GPU. Every kernel output buffer is NaN-poisoned (`poison_outputs`), so an element a kernel forgets
to write fails the comparison. The reference runs on float64 copies of the very same (already rounded)
inputs, so the measured error is the kernels' own.

Tolerances (errors are normalised by the reference's scale: `rms` = ‖err‖/‖ref‖, `max` = max|err|/max|ref|):
- float32 inputs: the interpreter multiplies exactly in fp32 (numpy); a GPU uses 3xTF32 products (relative
  error ~2^-21 per product, fp32-class; no plain TF32). Sums of up to a few hundred such terms give ≈ 1e-7
  (measured). The larger term is the decay: λ^n = exp2(n·log2 λ) with log2 λ rounded to fp32 has relative
  error up to n·|ln λ|·2^-24, i.e. up to 5e-6 for the smallest weights fp32 represents (n·|ln λ| ≈ 87), and a
  head whose result consists only of such weights (d(initial state) of a fast-decaying head when the loss
  sees only the final state) carries it throughout (measured 2.3e-6). We allow rms 1e-5, max 2e-5.
- bfloat16 / float16 inputs: the computed operands of the tensor-core products (decayed scores, decayed
  values, the fp32 state) are rounded to the input dtype (unit roundoff u = 2^-9 for bf16, 2^-12 for fp16)
  and the output is rounded once more, so each element carries a few independent roundings of relative
  size u: rms ≈ u·sqrt(3) ≈ 3.4e-3 for bf16 (measured ≈ 2.4e-3). The interpreter rounds these to nearest
  exactly as a GPU does (sweep.BF16_SPLIT), so the same bounds hold on both. We allow rms 1e-2 (≈ 5u) and
  max 2e-2 (≈ 10u); for fp16 the same multiples of its u: rms 1.5e-3, max 3e-3. A wrong decay exponent
  (λ^i for λ^(i+1)) at slope 0.05 is a 5% error, a dropped chunk or state term is O(1): both far outside
  these bounds.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

import triton  # noqa: F401  (a pinned dependency through torch: failing to import must fail this module)
from text_backbone.ops.lightning_attn.naive import naive_lightning_attn, naive_lightning_attn_varlen
from text_backbone.ops.lightning_attn.triton import (
    AUTOTUNE_CONFIGS,
    DEFAULT_CONFIG,
    INTERPRET,
    DecodeConfig,
    SweepConfig,
    chunk_sweep,
    poison_outputs,
    triton_lightning_attn,
    triton_lightning_attn_decode,
)
from text_backbone.ops.lightning_attn.triton._runtime import new_output

REPO_ROOT = Path(__file__).resolve().parents[2]
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
if DEVICE.type == "cpu" and not INTERPRET:
    raise RuntimeError("no CUDA device and TRITON_INTERPRET was not set before triton was imported; "
                       "run through pytest so tests/conftest.py can set it")

TOLERANCES = {  # dtype: (rms, max), justified in the module docstring
    torch.float32: (1e-5, 2e-5),
    torch.bfloat16: (1e-2, 2e-2),
    torch.float16: (1.5e-3, 3e-3),
}
SMALL_TILES = SweepConfig(block_t=16, block_c=32, num_warps=4, num_stages=1)  # many chunks at small T


@pytest.fixture(autouse=True)
def _poisoned_outputs():
    with poison_outputs():
        yield


def assert_close(name: str, actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype,
                 head_axis: int) -> None:
    """Errors relative to the reference's scale, head by head: heads decay at very different rates, so their
    outputs differ in size by orders of magnitude and a bug in a quiet head must not hide under a loud one."""
    rms_tol, max_tol = TOLERANCES[dtype]
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    actual = actual.detach().to(torch.float64)
    assert torch.isfinite(actual).all(), f"{name}: {(~torch.isfinite(actual)).sum()} non-finite elements"
    for head, (got, want) in enumerate(zip(actual.unbind(head_axis), expected.detach().unbind(head_axis))):
        if want.numel() == 0:
            continue
        err = got - want
        rel_max = (err.abs().max() / want.abs().max().clamp_min(1e-30)).item()
        rel_rms = (err.norm() / want.norm().clamp_min(1e-30)).item()
        assert rel_rms <= rms_tol and rel_max <= max_tol, (
            f"{name}, head {head}: relative rms error {rel_rms:.2e} (tol {rms_tol:.0e}), "
            f"max error {rel_max:.2e} (tol {max_tol:.0e})"
        )


SEQ_HEAD_AXIS, STATE_HEAD_AXIS = 2, 1  # [B, T, H, D] and [N, H, K, V]


def make_slopes(num_heads: int) -> torch.Tensor:
    """Head 0: no decay (λ = 1); head 1: MiniMax's strongest decay (layer 0, head 0); head 2: λ ≈ 6e-6, so
    λ^n under- and λ^-n overflows within one chunk; further heads: random in MiniMax's range."""
    fixed = torch.tensor([0.0, 0.917, 12.0])
    extra = torch.rand(max(num_heads - 3, 0), generator=torch.Generator().manual_seed(1)) * 0.9 + 0.004
    return torch.cat([fixed, extra])[:num_heads].to(DEVICE)


def random_inputs(B, T, H, K, V, dtype, seed, num_states=None):
    gen = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(B, T, H, K, generator=gen).to(dtype).to(DEVICE) for _ in range(2))
    v = torch.randn(B, T, H, V, generator=gen).to(dtype).to(DEVICE)
    num_states = B if num_states is None else num_states
    h0 = torch.randn(num_states, H, K, V, generator=gen).to(DEVICE)
    do = torch.randn(B, T, H, V, generator=gen).to(dtype).to(DEVICE)
    dht = torch.randn(num_states, H, K, V, generator=gen).to(DEVICE)
    return q, k, v, h0, do, dht


def reference(q, k, v, slope, h0, cu_seqlens=None):
    """float64 leaves of the same values plus the naive outputs."""
    leaves = [x.detach().to(torch.float64).requires_grad_() for x in (q, k, v)]
    h0_ref = None if h0 is None else h0.detach().to(torch.float64).requires_grad_()
    if cu_seqlens is None:
        o, ht = naive_lightning_attn(*leaves, slope.to(torch.float64), initial_state=h0_ref)
    else:
        o, ht = naive_lightning_attn_varlen(*leaves, slope.to(torch.float64), cu_seqlens.cpu(), initial_state=h0_ref)
    return leaves, h0_ref, o, ht


def check_forward_backward(q, k, v, slope, h0, do, dht, *, loss_terms, cu_seqlens=None, config=SMALL_TILES):
    """Runs kernels and reference with loss = Σ o·do (if "o" in loss_terms) + Σ S_T·dS_T (if "state"), and
    compares o, the final state and the gradients of q, k, v and the initial state."""
    dtype = q.dtype
    want_state = "state" in loss_terms
    inputs = [x.clone().requires_grad_() for x in (q, k, v)]
    h0_in = None if h0 is None else h0.clone().requires_grad_()
    o, ht = triton_lightning_attn(*inputs, slope, initial_state=h0_in, output_final_state=want_state,
                                  cu_seqlens=cu_seqlens, config=config)
    leaves, h0_ref, o_ref, ht_ref = reference(q, k, v, slope, h0, cu_seqlens)

    assert o.dtype == dtype
    assert_close("o", o, o_ref, dtype, SEQ_HEAD_AXIS)
    if want_state:
        assert ht.dtype == torch.float32
        assert_close("final state", ht, ht_ref, dtype, STATE_HEAD_AXIS)
    else:
        assert ht is None

    loss = sum([(o.float() * do.float()).sum()] if "o" in loss_terms else []) + \
        ((ht * dht).sum() if want_state else 0)
    loss_ref = sum([(o_ref * do.double()).sum()] if "o" in loss_terms else []) + \
        ((ht_ref * dht.double()).sum() if want_state else 0)
    loss.backward()
    loss_ref.backward()
    for name, x, x_ref in zip(("dq", "dk", "dv"), inputs, leaves):
        assert x.grad is not None and x.grad.dtype == dtype, f"{name}: missing or wrong dtype"
        expected = torch.zeros_like(x_ref) if x_ref.grad is None else x_ref.grad  # q is unused by S_T
        assert_close(name, x.grad, expected, dtype, SEQ_HEAD_AXIS)
    if h0 is not None:
        assert_close("d initial_state", h0_in.grad, h0_ref.grad, dtype, STATE_HEAD_AXIS)


# (B, T, H, K, V, tiles). T = 1: a single partial chunk; 63: 4 chunks of 16, the last partial; 257: 9 chunks
# of 32, one token in the last. K/V cover 32, 48 (not a power of two: padded to 64 inside; with 32-wide
# slices the second slice is half masked, with 64-wide slices the only one is), 64 and 128 (four 32-wide
# slices). Sizes are small because the interpreter costs ~10-30 ms per chunk step per program.
CASES = [
    (2, 1, 3, 32, 32, SMALL_TILES),
    (1, 63, 3, 48, 48, SMALL_TILES),
    (1, 257, 3, 64, 48, SweepConfig(block_t=32, block_c=64, num_warps=4, num_stages=1)),
    (1, 63, 3, 128, 128, SMALL_TILES),
]
CASE_IDS = ["B{}T{}H{}K{}V{}".format(*case[:5]) for case in CASES]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_matches_reference_with_states(case, dtype):
    B, T, H, K, V, config = case
    q, k, v, h0, do, dht = random_inputs(B, T, H, K, V, dtype, seed=T + K)
    check_forward_backward(q, k, v, make_slopes(H), h0, do, dht, loss_terms=("o", "state"), config=config)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_matches_reference_from_zero_state(dtype):
    B, T, H, K, V, config = CASES[1]
    q, k, v, _, do, dht = random_inputs(2, T, H, K, V, dtype, seed=2 * T + V)
    check_forward_backward(q, k, v, make_slopes(H), None, do, dht, loss_terms=("o",), config=config)


def test_loss_on_final_state_only():
    """No gradient reaches o: backward gets do = None and must still produce dq, dk, dv and d(initial state)."""
    q, k, v, h0, do, dht = random_inputs(1, 40, 3, 32, 48, torch.float32, seed=5)
    check_forward_backward(q, k, v, make_slopes(3), h0, do, dht, loss_terms=("state",))


def test_float16():
    q, k, v, h0, do, dht = random_inputs(1, 50, 3, 48, 32, torch.float16, seed=6)
    check_forward_backward(q, k, v, make_slopes(3), h0, do, dht, loss_terms=("o", "state"))


def test_default_tiles():
    """The GPU default tiling (64-token chunks, 64-wide slices, the autotuner's starting point): one full chunk
    and one partial chunk at MiniMax's head size."""
    q, k, v, h0, do, dht = random_inputs(1, 100, 2, 128, 128, torch.bfloat16, seed=7)
    check_forward_backward(q, k, v, make_slopes(2), h0, do, dht, loss_terms=("o", "state"), config=DEFAULT_CONFIG)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_packed_documents(dtype):
    """Documents of length 1, 16 (exactly one chunk), 0, 18 (crosses a chunk edge), 5 and 60, not aligned to
    chunks, each from its own initial state; states restart at every document boundary."""
    lengths = [1, 16, 0, 18, 5, 60]
    cu_seqlens = torch.tensor([0] + lengths, dtype=torch.int32).cumsum(0).to(torch.int32).to(DEVICE)
    T = sum(lengths)
    q, k, v, h0, do, dht = random_inputs(1, T, 3, 48, 32, dtype, seed=8, num_states=len(lengths))
    check_forward_backward(q, k, v, make_slopes(3), h0, do, dht, loss_terms=("o", "state"), cu_seqlens=cu_seqlens)


def test_packed_equals_separate_calls():
    """int64 cu_seqlens; each document's rows equal a separate batch-1 call on that document alone."""
    lengths = [23, 9, 40]
    cu_seqlens = torch.tensor([0, 23, 32, 72], dtype=torch.int64, device=DEVICE)
    q, k, v, h0, _, _ = random_inputs(1, sum(lengths), 2, 32, 32, torch.float32, seed=9, num_states=3)
    slope = make_slopes(2)
    with torch.no_grad():
        o, ht = triton_lightning_attn(q, k, v, slope, initial_state=h0, output_final_state=True,
                                      cu_seqlens=cu_seqlens, config=SMALL_TILES)
        for i, (start, end) in enumerate(zip(cu_seqlens[:-1].tolist(), cu_seqlens[1:].tolist())):
            o_i, ht_i = triton_lightning_attn(q[:, start:end], k[:, start:end], v[:, start:end], slope,
                                              initial_state=h0[i:i + 1], output_final_state=True, config=SMALL_TILES)
            # Same kernel, same chunking from each document's first token: identical arithmetic.
            torch.testing.assert_close(o[:, start:end], o_i, rtol=0, atol=0)
            torch.testing.assert_close(ht[i:i + 1], ht_i, rtol=0, atol=0)


def test_prefill_split_anywhere_gives_same_result():
    """Running [0, 37) then [37, T) from the carried state equals one call (37 is inside a chunk)."""
    q, k, v, _, _, _ = random_inputs(2, 90, 3, 32, 48, torch.float32, seed=10)
    slope = make_slopes(3)
    with torch.no_grad():
        o, ht = triton_lightning_attn(q, k, v, slope, output_final_state=True, config=SMALL_TILES)
        o1, h1 = triton_lightning_attn(q[:, :37], k[:, :37], v[:, :37], slope, output_final_state=True,
                                       config=SMALL_TILES)
        o2, h2 = triton_lightning_attn(q[:, 37:], k[:, 37:], v[:, 37:], slope, initial_state=h1,
                                       output_final_state=True, config=SMALL_TILES)
    # Different chunk boundaries reorder fp32 sums: agreement to fp32 rounding, as for the reference.
    assert_close("split o", torch.cat([o1, o2], dim=1), o.double(), torch.float32, SEQ_HEAD_AXIS)
    assert_close("split state", h2, ht.double(), torch.float32, STATE_HEAD_AXIS)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("kv", [(48, 128), (128, 48)], ids=["K48V128", "K128V48"])
def test_decode_step(kv, dtype):
    K, V = kv
    B, H = 3, 3
    q, k, v, state, _, _ = random_inputs(B, 1, H, K, V, dtype, seed=11 + K)
    slope = make_slopes(H)
    state_in = state.clone()
    o, new_state = triton_lightning_attn_decode(q[:, 0], k[:, 0], v[:, 0], slope, state_in,
                                                config=DecodeConfig(block_v=32))
    _, _, o_ref, state_ref = reference(q, k, v, slope, state)
    assert new_state is state_in, "the state must be updated in place"
    assert o.shape == (B, H, V) and o.dtype == dtype
    # The update S <- λS + k vᵀ is elementwise in fp32 on the same (rounded) inputs: fp32 tolerance for the state
    # whatever the input dtype; o is rounded once to the input dtype.
    assert_close("decode state", new_state, state_ref, torch.float32, STATE_HEAD_AXIS)
    assert_close("decode o", o, o_ref[:, 0], dtype, 1)  # [B, H, V]


def test_decode_out_of_place_and_token_axis():
    q, k, v, state, _, _ = random_inputs(2, 1, 3, 32, 32, torch.float32, seed=12)
    slope = make_slopes(3)
    before = state.clone()
    o, new_state = triton_lightning_attn_decode(q, k, v, slope, state, inplace=False)
    assert torch.equal(state, before), "inplace=False must leave the given state alone"
    assert o.shape == (2, 1, 3, 32)
    _, _, o_ref, state_ref = reference(q, k, v, slope, before)
    assert_close("decode o", o, o_ref, torch.float32, SEQ_HEAD_AXIS)
    assert_close("decode state", new_state, state_ref, torch.float32, STATE_HEAD_AXIS)


def test_prefill_then_decode_equals_full_sequence():
    """Teacher-forced generation: prefill 20 tokens, then decode 5 one by one == the reference on all 25."""
    q, k, v, _, _, _ = random_inputs(2, 25, 3, 48, 48, torch.bfloat16, seed=13)
    slope = make_slopes(3)
    with torch.no_grad():
        o_prefill, state = triton_lightning_attn(q[:, :20], k[:, :20], v[:, :20], slope, output_final_state=True,
                                                 config=SMALL_TILES)
        steps = [triton_lightning_attn_decode(q[:, t], k[:, t], v[:, t], slope, state)[0] for t in range(20, 25)]
    o = torch.cat([o_prefill, torch.stack(steps, dim=1)], dim=1)
    _, _, o_ref, state_ref = reference(q, k, v, slope, None)
    assert_close("prefill+decode o", o, o_ref, torch.bfloat16, SEQ_HEAD_AXIS)
    assert_close("prefill+decode state", state, state_ref, torch.bfloat16, STATE_HEAD_AXIS)


def test_poisoned_allocation_is_nan():
    """The guard the other tests rely on: in poison mode fresh kernel outputs are all NaN."""
    buffer = new_output((3, 5), torch.bfloat16, DEVICE)
    assert torch.isnan(buffer).all()


def test_reverse_sweep_is_forward_sweep_on_flipped_time():
    """The backward passes' reverse sweep, checked on its own: with the state term off (no initial state),
    reverse(a, b, c) == flip(forward(flip a, flip b, flip c)); and its final state is Σ_i λ^(i+1) b_i c_iᵀ."""
    a, b, c, _, _, _ = random_inputs(2, 45, 3, 48, 32, torch.float32, seed=14)
    slope = make_slopes(3)
    log2_lam = (-slope.float() / torch.log(torch.tensor(2.0))).to(DEVICE)
    out, final = chunk_sweep(a, b, c, log2_lam, reverse=True, output_final_state=True, config=SMALL_TILES)
    flipped, _ = chunk_sweep(a.flip(1), b.flip(1), c.flip(1), log2_lam, reverse=False, config=SMALL_TILES)
    assert_close("reverse out", out, flipped.flip(1).double(), torch.float32, SEQ_HEAD_AXIS)
    steps = torch.arange(1, 46, device=DEVICE, dtype=torch.float64)
    weights = torch.exp(-slope.double()[:, None] * steps)  # [H, T]: λ^(i+1)
    expected = torch.einsum("ht,bthk,bthv->bhkv", weights, b.double(), c.double())
    assert_close("reverse final state", final, expected, torch.float32, STATE_HEAD_AXIS)


def test_errors_name_the_problem():
    q, k, v, h0, _, _ = random_inputs(2, 4, 3, 32, 32, torch.float32, seed=15)
    slope = make_slopes(3)
    with pytest.raises(ValueError, match="batch size 1"):
        triton_lightning_attn(q, k, v, slope, cu_seqlens=torch.tensor([0, 4], dtype=torch.int32, device=DEVICE))
    with pytest.raises(TypeError, match="float64"):
        triton_lightning_attn(q.double(), k.double(), v.double(), slope)
    with pytest.raises(ValueError, match="initial_state must have shape"):
        triton_lightning_attn(q, k, v, slope, initial_state=h0[:1])
    with pytest.raises(ValueError, match="slope.detach"):
        triton_lightning_attn(q, k, v, slope.clone().requires_grad_())
    with pytest.raises(ValueError, match="float32"):
        triton_lightning_attn_decode(q[:, 0], k[:, 0], v[:, 0], slope, h0.to(torch.bfloat16))


def _run_compile_check(*flags: str) -> list[dict]:
    """Runs benchmarks/triton_compile_check.py in a fresh interpreter without TRITON_INTERPRET (this process has the interpreter
    on, and Triton picks compiler or interpreter once, when kernels are defined)."""
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    with tempfile.TemporaryDirectory() as tmp:
        report_path = Path(tmp) / "reports.json"
        result = subprocess.run(
            [sys.executable, str(REPO_ROOT / "benchmarks" / "triton_compile_check.py"), *flags,
             "--json", str(report_path)],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1200,
        )
        assert result.returncode == 0, f"compile_check failed:\n{result.stdout}\n{result.stderr[-4000:]}"
        return json.loads(report_path.read_text())


def test_kernels_compile_for_hopper_without_spills():
    """The interpreter accepts programs the compiler rejects: compile the production variants (bf16 forward
    and reverse sweeps at D = 128 with the default tiles, an fp16 sweep at D = 48, the decode step) to
    sm_90a machine code, and require the default tiles not to spill registers (a spill inside the sequential
    chunk loop is paid on every step)."""
    reports = _run_compile_check()
    assert len(reports) == 4
    for report in reports:
        assert report["registers"] > 0, report
        assert report["spill_bytes"] == 0, f"register spills: {report}"


@pytest.mark.slow
def test_every_autotune_config_compiles_for_hopper():
    """Every tiling the autotuner may pick compiles; spills stay within what AUTOTUNE_CONFIGS documents."""
    reports = _run_compile_check("--all")
    sweeps = [r for r in reports if r["kernel"] == "chunk_sweep_kernel" and "bfloat16" in r["variant"]]
    assert len(sweeps) == 2 * len(AUTOTUNE_CONFIGS)
    for report in sweeps:
        limit = 256 if "BT=128" in report["variant"] else 8  # see the comment above AUTOTUNE_CONFIGS
        assert report["spill_bytes"] <= limit, report


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_gpu_autotuned_at_model_head_size(dtype):
    """The production path (config=None: autotuned tiles) at MiniMax's head size, several chunk lengths long."""
    q, k, v, h0, do, dht = random_inputs(2, 1000, 4, 128, 128, dtype, seed=16)
    check_forward_backward(q, k, v, make_slopes(4), h0, do, dht, loss_terms=("o", "state"), config=None)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_packed_autotuned():
    lengths = [300, 1, 0, 700, 64]
    cu_seqlens = torch.tensor([0] + lengths).cumsum(0).to(torch.int32).to(DEVICE)
    q, k, v, h0, do, dht = random_inputs(1, sum(lengths), 4, 128, 128, torch.bfloat16, seed=17,
                                         num_states=len(lengths))
    check_forward_backward(q, k, v, make_slopes(4), h0, do, dht, loss_terms=("o", "state"),
                           cu_seqlens=cu_seqlens, config=None)
