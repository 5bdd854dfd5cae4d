"""PyTorch lightning attention (chunked + decode + dispatcher) against the token recurrence (naive.py).

    .venv/bin/python -m pytest -q tests/ops/test_lightning_torch.py

Every comparison checks outputs, final states and the gradients of q, k, v and the initial state, driven by a
loss with random weights on both outputs and final states (so every path of the backward is exercised).

Tolerances. float64 runs compare algorithms, not precisions: the chunked and token-order sums differ only by
rounding, about sqrt(n) * 2^-53 relative for sums of n <= 1e5 terms (< 1e-13), so 1e-10 relative to the
reference's largest entry leaves a wide margin, while any wrong decay exponent (λ^i for λ^(i+1)) at the
slopes used (>= 0.05 for some head) is an error of >= 5%. float32 / bfloat16 runs are compared with a float64
reference on the very same (already rounded) inputs; their bounds are justified where they are used.
"""
from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from text_backbone.ops.lightning_attn import lightning_attn, lightning_attn_decode
from text_backbone.ops.lightning_attn import chunk as chunk_module
from text_backbone.ops.lightning_attn.chunk import chunk_lightning_attn
from text_backbone.ops.lightning_attn.naive import naive_lightning_attn, naive_lightning_attn_varlen

F64 = torch.float64


@pytest.fixture(autouse=True)
def _one_thread():
    """These tests run thousands of tiny ops; on a shared 2-core machine a second OpenMP thread mostly waits for a
    core (measured 5-10x slower under load), so run them single-threaded and restore the setting after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------------------


def model_slopes(layer: int, num_heads: int = 64, num_layers: int = 80) -> torch.Tensor:
    """The released model's per-head decay rates (SPEC_NOTES §2.3): 2^(-8(h+1)/H) * (1 - l/(L-1) + 1e-5)."""
    heads = torch.arange(num_heads, dtype=F64)
    return 2.0 ** (-8.0 * (heads + 1) / num_heads) * (1.0 - layer / (num_layers - 1) + 1e-5)


def mixed_slopes(num_heads: int) -> torch.Tensor:
    """Slopes from the released model's extremes (0.917: λ ≈ 0.40, strongly local; 4.9e-5: λ ≈ 0.99995,
    nearly no decay) and values in between."""
    extremes = torch.tensor([model_slopes(0)[0], model_slopes(40)[10], model_slopes(78)[-1], 0.05], dtype=F64)
    return extremes[torch.arange(num_heads) % len(extremes)]


def make_inputs(B, T, H, K, V, *, seed=0, dtype=F64, with_state=True):
    """q, k scaled so q·k is O(1) (as after SiLU in the model), v O(1); an O(1) initial state."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, K, generator=g, dtype=F64) / math.sqrt(K)
    k = torch.randn(B, T, H, K, generator=g, dtype=F64) / math.sqrt(K)
    v = torch.randn(B, T, H, V, generator=g, dtype=F64)
    h0 = torch.randn(B, H, K, V, generator=g, dtype=F64) if with_state else None
    return [x if x is None else x.to(dtype) for x in (q, k, v, h0)]


def run_with_grads(fn, q, k, v, h0, seed=1):
    """Calls `fn(q, k, v, h0) -> (o, final)` on fresh leaves; returns (o, final, [dq, dk, dv, dh0 or None]) for the
    loss sum(o * w_o) + sum(final * w_s) with fixed random weights."""
    leaves = [x.detach().clone().requires_grad_() if x is not None else None for x in (q, k, v, h0)]
    o, final = fn(*leaves)
    g = torch.Generator().manual_seed(seed)
    w_o = torch.randn(o.shape, generator=g, dtype=F64).to(o.dtype)
    w_s = torch.randn(final.shape, generator=g, dtype=F64).to(final.dtype)
    loss = (o.to(F64) * w_o).sum() + (final.to(F64) * w_s).sum()
    wanted = [x for x in leaves if x is not None]
    grads = iter(torch.autograd.grad(loss, wanted, allow_unused=True, materialize_grads=True))  # T = 0: unused
    return o.detach(), final.detach(), [next(grads) if x is not None else None for x in leaves]


def assert_close(actual, expected, rel=1e-10, what=""):
    """max |actual - expected| <= rel * max |expected| (see the module docstring for the choice of rel)."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    if expected.numel() == 0:
        return
    scale = expected.abs().max().item() or 1.0
    err = (actual.to(F64) - expected.to(F64)).abs().max().item()
    assert err <= rel * scale, f"{what}: max error {err:.3e} > {rel:.0e} * {scale:.3e}"


def assert_all_close(got, ref, rel=1e-10):
    (o, s, grads), (o_ref, s_ref, grads_ref) = got, ref
    assert_close(o, o_ref, rel, "output")
    assert_close(s, s_ref, rel, "final state")
    for name, g, g_ref in zip(("dq", "dk", "dv", "dh0"), grads, grads_ref):
        assert (g is None) == (g_ref is None), name
        if g is not None:
            assert_close(g, g_ref, rel, name)


def slope_of(q):
    return mixed_slopes(q.shape[2])


def torch_fn(chunk_size=64, backward="manual"):
    def fn(q, k, v, h0):
        return chunk_lightning_attn(q, k, v, slope_of(q), initial_state=h0, output_final_state=True,
                                    chunk_size=chunk_size, backward=backward)
    return fn


def naive_fn(**kw):
    def fn(q, k, v, h0):
        return naive_lightning_attn(q, k, v, slope_of(q), initial_state=h0, **kw)
    return fn


# ----------------------------------------------------------------------------------------------------------------------
# Chunked == token recurrence (float64): outputs, final states, all gradients
# ----------------------------------------------------------------------------------------------------------------------

SHAPES = [(2, 3, 16, 16), (1, 2, 48, 32)]  # (B, H, K, V): K != V included


@pytest.mark.parametrize("T", [1, 63, 255, 256, 257, 1000])
@pytest.mark.parametrize("B,H,K,V", SHAPES)
@pytest.mark.parametrize("with_state", [False, True])
def test_chunked_matches_naive(T, B, H, K, V, with_state):
    q, k, v, h0 = make_inputs(B, T, H, K, V, seed=T + K, with_state=with_state)
    ref = run_with_grads(naive_fn(), q, k, v, h0)
    for chunk_size in (64, 16, 100):  # the default, a small one (many chunks), one not a power of two
        assert_all_close(run_with_grads(torch_fn(chunk_size), q, k, v, h0), ref)
    # The whole-tensor chunked forward differentiated by autograd: an independent check of the manual backward.
    assert_all_close(run_with_grads(torch_fn(64, backward="autograd"), q, k, v, h0), ref)


@pytest.mark.parametrize("chunks_per_group", [1, 2, 3])
def test_group_boundaries_and_inference_mode(monkeypatch, chunks_per_group):
    """Chunks are processed in groups (large ones by default, so these shapes would fit in one): with tiny groups,
    segment starts and ends fall on and off group boundaries, states and their gradients cross groups, and the
    inference path (no autograd: a rolling state buffer) must give the training path's result."""
    B, H, K, V, C = 1, 2, 8, 4, 8
    monkeypatch.setattr(chunk_module, "ROWS_PER_GROUP", chunks_per_group * B * H * C)
    cu = torch.tensor([0, 8, 9, 33, 40, 64, 90])  # ends on chunk boundaries and off them
    q, k, v, _ = make_inputs(B, 90, H, K, V, seed=71)
    h0 = make_inputs(6, 1, H, K, V, seed=72)[3]
    slope = mixed_slopes(H)
    mask = torch.ones(B, 90, dtype=torch.long)
    mask[0, 50:52] = 0

    def packed(q, k, v, h):
        return lightning_attn(q, k, v, slope, initial_state=h, output_final_state=True, cu_seqlens=cu,
                              attention_mask=mask, backend="torch", chunk_size=C)

    def plain(q, k, v, h):
        return lightning_attn(q, k, v, slope, initial_state=h, output_final_state=True, backend="torch",
                              chunk_size=C)

    naive_packed = run_with_grads(
        lambda q, k, v, h: naive_lightning_attn_varlen(q, k, v, slope, cu, initial_state=h, attention_mask=mask),
        q, k, v, h0)
    assert_all_close(run_with_grads(packed, q, k, v, h0), naive_packed)
    naive_plain = run_with_grads(lambda q, k, v, h: naive_lightning_attn(q, k, v, slope, initial_state=h),
                                 q, k, v, h0[:1])
    assert_all_close(run_with_grads(plain, q, k, v, h0[:1]), naive_plain)
    with torch.no_grad():  # inference: the same numbers without the per-chunk state store
        for fn, ref, h in ((packed, naive_packed, h0), (plain, naive_plain, h0[:1])):
            o, s = fn(q, k, v, h)
            assert_close(o, ref[0], what="inference output")
            assert_close(s, ref[1], what="inference final state")


def test_dispatcher_backends_agree():
    q, k, v, h0 = make_inputs(2, 130, 2, 8, 8, seed=3)
    slope = mixed_slopes(2)
    outs = {
        backend: lightning_attn(q, k, v, slope, initial_state=h0, output_final_state=True, backend=backend)
        for backend in ("naive", "torch", "auto")  # auto is torch on CPU
    }
    for backend in ("torch", "auto"):
        assert_close(outs[backend][0], outs["naive"][0], what=f"{backend} output")
        assert_close(outs[backend][1], outs["naive"][1], what=f"{backend} state")
    assert lightning_attn(q, k, v, slope)[1] is None  # no final state unless asked


def test_empty_sequence_keeps_the_initial_state():
    q, k, v, h0 = make_inputs(2, 0, 2, 8, 4)
    o, state = lightning_attn(q, k, v, mixed_slopes(2), initial_state=h0, output_final_state=True, backend="torch")
    assert o.shape == (2, 0, 2, 4)
    assert torch.equal(state, h0)


# ----------------------------------------------------------------------------------------------------------------------
# Generation consistency: decode steps and split prefills give the full-sequence result
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["torch", "naive", "auto"])
def test_decode_steps_match_full_sequence(backend):
    B, T, H, K, V = 2, 70, 3, 48, 32
    q, k, v, h0 = make_inputs(B, T, H, K, V, seed=5)
    slope = mixed_slopes(H)
    o_ref, s_ref = naive_lightning_attn(q, k, v, slope, initial_state=h0)
    state, outs = h0.clone(), []
    for t in range(T):
        before = state.clone()
        o_t, new_state = lightning_attn_decode(q[:, t], k[:, t], v[:, t], slope, state, backend=backend)
        assert torch.equal(state, before), "decode must not modify the state it was given"
        assert o_t.shape == (B, H, V) and new_state.shape == (B, H, K, V)
        outs.append(o_t)
        state = new_state
    assert_close(torch.stack(outs, dim=1), o_ref, what="decoded outputs")
    assert_close(state, s_ref, what="decoded state")


def test_decode_gradients_match_naive():
    q, k, v, h0 = make_inputs(1, 1, 4, 8, 8, seed=6)
    slope = mixed_slopes(4)
    ref = run_with_grads(lambda q, k, v, h: naive_lightning_attn(q, k, v, slope, initial_state=h), q, k, v, h0)

    def step(q, k, v, h):
        o, s = lightning_attn_decode(q[:, 0], k[:, 0], v[:, 0], slope, h, backend="torch")
        return o[:, None], s

    assert_all_close(run_with_grads(step, q, k, v, h0), ref)


@pytest.mark.parametrize("split", [1, 37, 64, 199])
def test_prefill_split_anywhere_gives_the_same_result(split):
    q, k, v, _ = make_inputs(1, 200, 2, 16, 8, seed=7)
    slope = mixed_slopes(2)
    o_full, s_full = lightning_attn(q, k, v, slope, output_final_state=True, backend="torch")
    o1, s1 = lightning_attn(q[:, :split], k[:, :split], v[:, :split], slope, output_final_state=True, backend="torch")
    o2, s2 = lightning_attn(q[:, split:], k[:, split:], v[:, split:], slope, initial_state=s1,
                            output_final_state=True, backend="torch")
    assert_close(torch.cat([o1, o2], dim=1), o_full, what="outputs")
    assert_close(s2, s_full, what="state")


# ----------------------------------------------------------------------------------------------------------------------
# Packed documents (cu_seqlens)
# ----------------------------------------------------------------------------------------------------------------------

DOC_LENGTHS = [1, 70, 64, 129, 5, 0, 33]  # a length-1 doc, a chunk-aligned one, an empty one; none aligned after


@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("chunk_size", [64, 16])
def test_packed_documents_equal_each_document_alone(with_state, chunk_size):
    H, K, V = 2, 16, 8
    cu = torch.tensor([0] + DOC_LENGTHS).cumsum(0)
    N, T = len(DOC_LENGTHS), int(cu[-1])
    q, k, v, _ = make_inputs(1, T, H, K, V, seed=11)
    h0 = make_inputs(N, 1, H, K, V, seed=12)[3] if with_state else None
    slope = mixed_slopes(H)

    def packed(q, k, v, h):
        return lightning_attn(q, k, v, slope, initial_state=h, output_final_state=True, cu_seqlens=cu,
                              backend="torch", chunk_size=chunk_size)

    def one_by_one(q, k, v, h):
        outs, finals = [], []
        for n, (start, end) in enumerate(zip(cu[:-1].tolist(), cu[1:].tolist())):
            o, s = lightning_attn(q[:, start:end], k[:, start:end], v[:, start:end], slope,
                                  initial_state=None if h is None else h[n : n + 1], output_final_state=True,
                                  backend="torch", chunk_size=chunk_size)
            outs.append(o)
            finals.append(s)
        return torch.cat(outs, dim=1), torch.cat(finals)

    got = run_with_grads(packed, q, k, v, h0)
    assert_all_close(got, run_with_grads(one_by_one, q, k, v, h0))
    naive = run_with_grads(lambda q, k, v, h: naive_lightning_attn_varlen(q, k, v, slope, cu, initial_state=h),
                           q, k, v, h0)
    assert_all_close(got, naive)
    empty = DOC_LENGTHS.index(0)
    assert torch.equal(got[1][empty], h0[empty] if with_state else torch.zeros(H, K, V, dtype=F64))


# ----------------------------------------------------------------------------------------------------------------------
# Padding (attention_mask): a pad is an identity step
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("with_state", [False, True])
def test_left_and_right_padding_equal_the_unpadded_row(side, with_state):
    H, K, V, T, n = 2, 16, 8, 145, 100  # 45 pads
    q, k, v, h0 = make_inputs(1, T, H, K, V, seed=21, with_state=with_state)
    slope = mixed_slopes(H)
    mask = torch.zeros(1, T, dtype=torch.long)
    if side == "left":
        mask[0, -n:] = 1
    else:
        mask[0, :n] = 1
    real = mask[0].bool()

    def padded(q, k, v, h):  # the outputs at real positions, so the loss weights match the unpadded run
        o, s = lightning_attn(q, k, v, slope, initial_state=h, output_final_state=True, attention_mask=mask,
                              backend="torch")
        assert torch.all(o[:, ~real] == 0), "outputs at pads are defined as zero"
        return o[:, real], s

    o, s, grads = run_with_grads(padded, q, k, v, h0)
    alone = run_with_grads(torch_fn(), q[:, real], k[:, real], v[:, real], h0)
    assert_close(o, alone[0], what="outputs at real positions")
    assert_close(s, alone[1], what="final state")
    for name, g, g_alone in zip(("dq", "dk", "dv"), grads, alone[2]):
        assert torch.all(g[:, ~real] == 0), f"{name}: pads must not influence anything"
        assert_close(g[:, real], g_alone, what=name)
    if with_state:
        assert_close(grads[3], alone[2][3], what="dh0")


def test_mask_with_holes_matches_naive_and_all_ones_mask_is_no_mask():
    B, T, H, K, V = 3, 150, 2, 8, 8
    q, k, v, h0 = make_inputs(B, T, H, K, V, seed=31)
    slope = mixed_slopes(H)
    mask = (torch.rand(B, T, generator=torch.Generator().manual_seed(0)) > 0.3).long()
    mask[2] = 0  # a row with no tokens at all keeps its initial state
    got = run_with_grads(lambda q, k, v, h: lightning_attn(q, k, v, slope, initial_state=h, output_final_state=True,
                                                           attention_mask=mask, backend="torch"), q, k, v, h0)
    assert_all_close(got, run_with_grads(naive_fn(attention_mask=mask), q, k, v, h0))
    assert torch.equal(got[1][2], h0[2])
    ones = torch.ones(B, T, dtype=torch.long)
    o1, s1 = lightning_attn(q, k, v, slope, initial_state=h0, output_final_state=True, attention_mask=ones)
    o2, s2 = lightning_attn(q, k, v, slope, initial_state=h0, output_final_state=True)
    assert torch.equal(o1, o2) and torch.equal(s1, s2)


def test_packed_documents_with_pads_inside_match_naive():
    cu = torch.tensor([0, 40, 41, 150])
    q, k, v, _ = make_inputs(1, 150, 2, 8, 8, seed=41)
    h0 = make_inputs(3, 1, 2, 8, 8, seed=42)[3]
    slope = mixed_slopes(2)
    mask = torch.ones(1, 150, dtype=torch.long)
    mask[0, 30:45] = 0  # the end of doc 0, all of doc 1, the start of doc 2
    mask[0, 140:] = 0
    got = run_with_grads(lambda q, k, v, h: lightning_attn(q, k, v, slope, initial_state=h, output_final_state=True,
                                                           cu_seqlens=cu, attention_mask=mask, backend="torch"),
                         q, k, v, h0)
    ref = run_with_grads(lambda q, k, v, h: naive_lightning_attn_varlen(q, k, v, slope, cu, initial_state=h,
                                                                        attention_mask=mask), q, k, v, h0)
    assert_all_close(got, ref)


@settings(max_examples=25, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 40), min_size=1, max_size=5),
    chunk_size=st.sampled_from([1, 3, 8, 16]),
    pad_prob=st.sampled_from([0.0, 0.3]),
    seed=st.integers(0, 2**16),
)
def test_random_packings_and_masks_match_naive(lengths, chunk_size, pad_prob, seed):
    cu = torch.tensor([0] + lengths).cumsum(0)
    T = int(cu[-1])
    q, k, v, _ = make_inputs(1, T, 2, 4, 3, seed=seed)
    h0 = make_inputs(len(lengths), 1, 2, 4, 3, seed=seed + 1)[3]
    mask = (torch.rand(1, T, generator=torch.Generator().manual_seed(seed)) >= pad_prob).long()
    slope = mixed_slopes(2)
    got = run_with_grads(lambda q, k, v, h: lightning_attn(q, k, v, slope, initial_state=h, output_final_state=True,
                                                           cu_seqlens=cu, attention_mask=mask, backend="torch",
                                                           chunk_size=chunk_size), q, k, v, h0)
    ref = run_with_grads(lambda q, k, v, h: naive_lightning_attn_varlen(q, k, v, slope, cu, initial_state=h,
                                                                        attention_mask=mask), q, k, v, h0)
    assert_all_close(got, ref)


def test_triton_backend_gets_padded_batches_as_packed_documents():
    """The Triton kernels take cu_seqlens but no mask: the dispatcher packs each row's real tokens into documents
    and scatters the outputs back. Checked against the float64 recurrence with left, right and all-pad rows,
    gradients included (on CPU the kernels run in Triton's interpreter; tests/conftest.py arranges that).
    Tolerance: float32 kernels, same argument as F32_TOLERANCE below."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    B, T, H, K, V = 3, 40, 2, 16, 16
    q, k, v, h0 = make_inputs(B, T, H, K, V, seed=81, dtype=torch.float32)
    slope = mixed_slopes(H).float()
    mask = torch.ones(B, T, dtype=torch.long)
    mask[0, :7] = 0  # left padding
    mask[1, 30:] = 0  # right padding
    mask[2] = 0  # nothing at all: keeps its initial state

    def triton(q, k, v, h):
        o, s = lightning_attn(*(x.to(device) for x in (q, k, v)), slope.to(device), initial_state=h.to(device),
                              output_final_state=True, attention_mask=mask.to(device), backend="triton")
        return o.cpu(), s.cpu()

    ref = run_with_grads(naive_fn(attention_mask=mask), *(x.double() for x in (q, k, v, h0)))
    got = run_with_grads(triton, q, k, v, h0)
    assert_all_close(got, ref, rel=2e-5)
    assert torch.all(got[0][mask == 0] == 0)


# ----------------------------------------------------------------------------------------------------------------------
# Precision: fp32 / bf16 inputs keep a float32 state; the released model's slopes are numerically safe
# ----------------------------------------------------------------------------------------------------------------------


def test_slope_helper_reproduces_the_spec_numbers():
    assert model_slopes(0)[0].item() == pytest.approx(0.9170, abs=5e-5)
    assert model_slopes(78)[-1].item() == pytest.approx(4.9e-5, abs=1e-6)


F32_TOLERANCE = 2e-5  # justified in test_low_precision_inputs_with_real_model_slopes
OUTPUT_TOLERANCE = {torch.float32: F32_TOLERANCE, torch.bfloat16: 1e-2, torch.float16: 1.25e-3}


@pytest.mark.parametrize("dtype", list(OUTPUT_TOLERANCE))
@pytest.mark.parametrize("chunk_size", [64, 256])
def test_low_precision_inputs_with_real_model_slopes(dtype, chunk_size):
    """Real slopes: layer 0 (λ down to 0.40, so λ^256 underflows to 0 in float32) and layer 78 (λ up to 0.99995).

    Reference: float64 recurrence on the same rounded inputs. Chunked float32 arithmetic errs by about
    sqrt(n) * 2^-24 relative for sums of n <= T * K = 64k terms: ~1.5e-5 in the worst case (measured: 4e-7);
    we allow 2e-5 of the reference's scale. A bfloat16 / float16 output adds one rounding of at most
    u = 2^-8 / 2^-11 of each entry (measured: 2.9e-3 / 2.1e-4 of the scale); we allow 2.5u (1e-2 / 1.25e-3).
    The final state is float32 in every case (2e-5). A wrong decay (λ^i for λ^(i+1)) at slope 0.917 is a 60%
    error.
    """
    B, T, H, K, V = 1, 1000, 4, 64, 32
    slope = torch.cat([model_slopes(0)[:2], model_slopes(78)[-2:]]).float()
    q, k, v, h0 = make_inputs(B, T, H, K, V, seed=51, dtype=dtype)
    o, s = lightning_attn(q, k, v, slope, initial_state=h0.float(), output_final_state=True, backend="torch",
                          chunk_size=chunk_size)
    assert o.dtype == dtype and s.dtype == torch.float32
    o_ref, s_ref = naive_lightning_attn(q.double(), k.double(), v.double(), slope.double(), initial_state=h0.double())
    assert torch.isfinite(o).all() and torch.isfinite(s).all()
    assert_close(o, o_ref, OUTPUT_TOLERANCE[dtype], "output")
    assert_close(s, s_ref, F32_TOLERANCE, "final state (always float32)")

    state = h0.float()
    o_t, state = lightning_attn_decode(q[:, 0], k[:, 0], v[:, 0], slope, state, backend="torch")
    assert o_t.dtype == dtype and state.dtype == torch.float32


def test_float32_gradients_with_real_model_slopes():
    """Gradients of the float32 chunked op against float64 naive (same rounding argument; measured 2.6e-7)."""
    slope = torch.cat([model_slopes(0)[:2], model_slopes(78)[-2:]])
    q, k, v, h0 = make_inputs(1, 300, 4, 32, 32, seed=61)
    ref = run_with_grads(lambda q, k, v, h: naive_lightning_attn(q, k, v, slope, initial_state=h), q, k, v, h0)
    got = run_with_grads(
        lambda q, k, v, h: chunk_lightning_attn(q, k, v, slope.float(), initial_state=h, output_final_state=True),
        *(x.float() for x in (q, k, v, h0)),
    )
    assert all(g.dtype == torch.float32 for g in got[2])
    assert_all_close(got, ref, rel=F32_TOLERANCE)


# ----------------------------------------------------------------------------------------------------------------------
# API: clear errors, and importing never pulls in triton
# ----------------------------------------------------------------------------------------------------------------------


def test_invalid_inputs_raise_clear_errors():
    q, k, v, h0 = make_inputs(2, 10, 2, 4, 4)
    slope = mixed_slopes(2)
    with pytest.raises(ValueError, match="slope must have shape"):
        lightning_attn(q, k, v, slope[:1])
    with pytest.raises(ValueError, match="batch size 1"):
        lightning_attn(q, k, v, slope, cu_seqlens=torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="rise from 0 to T"):
        lightning_attn(q[:1], k[:1], v[:1], slope, cu_seqlens=torch.tensor([0, 4, 9]))
    with pytest.raises(ValueError, match="initial_state must have shape"):
        lightning_attn(q, k, v, slope, initial_state=h0[:1])
    with pytest.raises(ValueError, match="attention_mask must have shape"):
        lightning_attn(q, k, v, slope, attention_mask=torch.ones(2, 9))
    with pytest.raises(TypeError, match="share one floating dtype"):
        lightning_attn(q, k.float(), v, slope)
    with pytest.raises(ValueError, match="backend must be one of"):
        lightning_attn(q, k, v, slope, backend="cuda")
    with pytest.raises(TypeError, match="float32"):
        lightning_attn_decode(q[:, 0], k[:, 0], v[:, 0], slope, h0.bfloat16())


def test_importing_the_package_does_not_import_triton():
    code = ("import sys, text_backbone.ops.lightning_attn as la; "
            "assert 'triton' not in sys.modules, 'triton was imported'; print('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
