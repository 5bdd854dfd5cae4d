"""Lightning-attention Triton kernels on a CUDA GPU: correctness at real shapes, then speed.

    .venv/bin/python benchmarks/lightning_gpu.py                          # everything (estimated 2-4 min on an H200)
    .venv/bin/python benchmarks/lightning_gpu.py --seqlen 4096 --skip-sdpa  # a quick look
    .venv/bin/python benchmarks/lightning_gpu.py --hbm-bandwidth 3.35e12    # another card (H100 SXM)

Needs CUDA (exits with status 2 without it) and installs nothing. Part 1 checks the kernels (autotuned tiles,
as in production) against a float64 chunked reference, itself first checked against the token recurrence;
part 2 times forward, forward+backward and decode for H = 64, D = 128, bf16, against flash-linear-attention's
`chunk_simple_gla` with MiniMax's decay (g_gamma = -slope, scale = 1) when `fla` imports, and against causal
SDPA softmax attention. Columns:

  ms      median GPU time (CUDA events around back-to-back calls)
  TFLOP/s linear attention: the chunked algorithm's flops at chunk 64, counting full intra-chunk products:
          forward 2·T·H·B·(64·K + 64·V + 2·K·V), backward 3× that (three sweeps); SDPA: causal attention flops,
          forward 2·B·H·T²·D, backward 2.5× forward
  GB/s    floor bytes / time, floor bytes = tensors that must move once: forward reads q, k, v and writes o;
          backward also reads q, k, v, do and writes dq, dk, dv (bf16); decode reads and writes the fp32 state
  floor   (floor bytes / HBM bandwidth) / time: 1.0 = at the memory-bandwidth floor
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from text_backbone.ops.lightning_attn.naive import naive_lightning_attn

# Same tolerances, with the same reasoning, as tests/ops/test_lightning_triton.py: (relative rms, relative max).
TOLERANCES = {torch.float32: (1e-5, 2e-5), torch.bfloat16: (1e-2, 2e-2)}


# ----------------------------------------------------------------------------------------------- references
def chunked_reference(q, k, v, slope, initial_state=None, chunk=64):
    """Lightning attention by 64-token chunks in the inputs' dtype (use float64), differentiable by autograd.
    q, k `[B, T, H, K]`, v `[B, T, H, V]` -> (o `[B, T, H, V]`, final state `[B, H, K, V]`)."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    log_decay = -slope.to(q.dtype).view(H, 1, 1)  # [H, 1, 1]
    state = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.to(q.dtype)
    outputs = []
    for start in range(0, T, chunk):
        length = min(chunk, T - start)
        qc, kc, vc = (x[:, start:start + length].transpose(1, 2) for x in (q, k, v))  # [B, H, L, D]
        steps = torch.arange(length, device=q.device, dtype=q.dtype)
        lag = steps.view(-1, 1) - steps.view(1, -1)  # [L, L]
        intra = torch.where(lag >= 0, torch.exp(log_decay * lag.clamp_min(0)), torch.zeros((), dtype=q.dtype,
                                                                                           device=q.device))
        o = ((qc @ kc.transpose(-1, -2)) * intra) @ vc  # [B, H, L, V]
        o = o + (qc * torch.exp(log_decay * (steps + 1).view(-1, 1))) @ state
        state = torch.exp(log_decay * length) * state + \
            (kc * torch.exp(log_decay * (length - 1 - steps).view(-1, 1))).transpose(-1, -2) @ vc
        outputs.append(o.transpose(1, 2))
    return torch.cat(outputs, dim=1), state


def minimax_slopes(num_heads: int, layer: int = 40, num_layers: int = 80, device="cuda") -> torch.Tensor:
    """SPEC_NOTES §2.3: s_h = 2^(-8(h+1)/H), scaled by (1 - l/(L-1) + 1e-5)."""
    heads = torch.arange(num_heads, dtype=torch.float64)
    base = 2.0 ** (-8.0 * (heads + 1) / num_heads)
    return (base * (1 - layer / (num_layers - 1) + 1e-5)).to(torch.float32).to(device)


def model_like(shape, dtype, generator):
    """SiLU-activated Gaussian values, like MiniMax's q, k, v (mostly positive, so states grow with length)."""
    return F.silu(torch.randn(shape, generator=generator, device="cuda")).to(dtype)


def worst_head_error(actual, expected, head_axis):
    """(relative rms, relative max) of the worst head, as in the tests."""
    worst_rms = worst_max = 0.0
    actual = actual.detach().double()
    for got, want in zip(actual.unbind(head_axis), expected.detach().unbind(head_axis)):
        err = got - want
        worst_rms = max(worst_rms, (err.norm() / want.norm().clamp_min(1e-30)).item())
        worst_max = max(worst_max, (err.abs().max() / want.abs().max().clamp_min(1e-30)).item())
    if not torch.isfinite(actual).all():
        worst_rms = worst_max = math.inf
    return worst_rms, worst_max


class Checks:
    def __init__(self):
        self.failures = []
        self.records = []

    def compare(self, label, actual, expected, dtype, head_axis):
        rms, mx = worst_head_error(actual, expected, head_axis)
        rms_tol, max_tol = TOLERANCES[dtype]
        ok = rms <= rms_tol and mx <= max_tol
        print(f"  {'ok  ' if ok else 'FAIL'} {label:<48} rms {rms:.2e} (tol {rms_tol:.0e})  max {mx:.2e} "
              f"(tol {max_tol:.0e})", flush=True)
        self.records.append(dict(check=label, rms=rms, max=mx, ok=ok))
        if not ok:
            self.failures.append(label)


# ---------------------------------------------------------------------------------------------- correctness
def check_correctness(checks: Checks, attn, attn_decode):
    gen = torch.Generator(device="cuda").manual_seed(0)
    print("\n== correctness (autotuned tiles) vs float64 ==", flush=True)

    # The reference itself, against the token recurrence (float64 both).
    q, k, v = (torch.randn(2, 300, 3, 32, generator=gen, device="cuda", dtype=torch.float64) for _ in range(3))
    slope = torch.tensor([0.0, 0.9, 0.01], device="cuda")
    o_chunk, s_chunk = chunked_reference(q, k, v, slope)
    o_naive, s_naive = naive_lightning_attn(q, k, v, slope.double())
    checks.compare("chunked reference == token recurrence: o", o_chunk, o_naive, torch.float32, 2)
    checks.compare("chunked reference == token recurrence: state", s_chunk, s_naive, torch.float32, 1)

    # Forward and backward with an initial state and a loss on the final state, awkward length.
    for dtype in (torch.float32, torch.bfloat16):
        B, T, H, D = 2, 4096 + 37, 8, 128
        q, k, v = (model_like((B, T, H, D), dtype, gen) for _ in range(3))
        h0 = torch.randn(B, H, D, D, generator=gen, device="cuda")
        do = torch.randn(B, T, H, D, generator=gen, device="cuda").to(dtype)
        dht = torch.randn(B, H, D, D, generator=gen, device="cuda")
        slope = minimax_slopes(H, layer=0)
        inputs = [x.clone().requires_grad_() for x in (q, k, v, h0)]
        o, ht = attn(*inputs[:3], slope, initial_state=inputs[3], output_final_state=True)
        torch.autograd.backward([o, ht], [do, dht])
        refs = [x.double().requires_grad_() for x in (q, k, v, h0)]
        o_ref, ht_ref = chunked_reference(*refs[:3], slope.double(), initial_state=refs[3])
        torch.autograd.backward([o_ref, ht_ref], [do.double(), dht.double()])
        name = f"B{B} T{T} H{H} D{D} {str(dtype)[6:]}"
        checks.compare(f"{name}: o", o, o_ref, dtype, 2)
        checks.compare(f"{name}: final state", ht, ht_ref, dtype, 1)
        for label, x, x_ref in zip(("dq", "dk", "dv"), inputs, refs):
            checks.compare(f"{name}: {label}", x.grad, x_ref.grad, dtype, 2)
        checks.compare(f"{name}: d initial state", inputs[3].grad, refs[3].grad, dtype, 1)
        del inputs, refs, o, ht, o_ref, ht_ref

    # The benchmark's own shape, forward (prefill with final state), weakest-decay layer.
    B, T, H, D = 1, 16384, 64, 128
    q, k, v = (model_like((B, T, H, D), torch.bfloat16, gen) for _ in range(3))
    slope = minimax_slopes(H, layer=78)
    with torch.no_grad():
        o, ht = attn(q, k, v, slope, output_final_state=True)
        o_ref, ht_ref = chunked_reference(q.double(), k.double(), v.double(), slope.double())
    checks.compare(f"B{B} T{T} H{H} D{D} bf16 forward: o", o, o_ref, torch.bfloat16, 2)
    checks.compare(f"B{B} T{T} H{H} D{D} bf16 forward: final state", ht, ht_ref, torch.bfloat16, 1)
    del q, k, v, o, ht, o_ref, ht_ref

    # Packed documents (not chunk-aligned), with per-document initial states.
    lengths = [1000, 3000, 37, 1, 4059]
    cu = torch.tensor([0] + lengths, device="cuda").cumsum(0).to(torch.int32)
    H = 8
    q, k, v = (model_like((1, sum(lengths), H, D), torch.bfloat16, gen) for _ in range(3))
    h0 = torch.randn(len(lengths), H, D, D, generator=gen, device="cuda")
    slope = minimax_slopes(H, layer=20)
    with torch.no_grad():
        o, ht = attn(q, k, v, slope, initial_state=h0, output_final_state=True, cu_seqlens=cu)
        pieces, states = [], []
        for i, (a, b) in enumerate(zip(cu[:-1].tolist(), cu[1:].tolist())):
            o_i, s_i = chunked_reference(q[:, a:b].double(), k[:, a:b].double(), v[:, a:b].double(),
                                         slope.double(), initial_state=h0[i:i + 1].double())
            pieces.append(o_i)
            states.append(s_i)
    checks.compare("packed documents: o", o, torch.cat(pieces, 1), torch.bfloat16, 2)
    checks.compare("packed documents: final states", ht, torch.cat(states, 0), torch.bfloat16, 1)

    # Decode at the benchmark's batch.
    B, H = 64, 64
    q, k, v = (model_like((B, H, D), torch.bfloat16, gen) for _ in range(3))
    state = torch.randn(B, H, D, D, generator=gen, device="cuda")
    slope = minimax_slopes(H)
    expected_state = torch.exp(-slope.double()).view(1, H, 1, 1) * state.double() + \
        k.double().unsqueeze(-1) * v.double().unsqueeze(-2)
    expected_o = (q.double().unsqueeze(-2) @ expected_state).squeeze(-2)
    o, new_state = attn_decode(q, k, v, slope, state)
    checks.compare("decode B64: state", new_state, expected_state, torch.float32, 1)
    checks.compare("decode B64: o", o, expected_o, torch.bfloat16, 1)


# --------------------------------------------------------------------------------------------------- timing
def time_ms(fn, budget_ms: float = 300.0, max_calls: int = 100) -> float:
    """Median per-call GPU time over batches of back-to-back calls. The first call (compilation, autotuning)
    is not timed; the second gives an estimate; calls that take longer than the budget are timed once more
    (SDPA at 64k tokens takes seconds)."""
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def timed(calls: int) -> float:
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / calls

    estimate = timed(1)
    if estimate >= budget_ms:
        return statistics.median([estimate, timed(1)])
    calls = int(min(max(budget_ms / 3 / estimate, 1), max_calls))
    return statistics.median([timed(calls) for _ in range(3)])


def linear_flops(B, T, H, K, V, chunk=64):
    return 2.0 * B * T * H * (chunk * K + chunk * V + 2 * K * V)


def io_bytes(B, T, H, K, V, backward: bool, elem=2):
    forward = B * T * H * (2 * K + 2 * V) * elem  # read q, k, v; write o
    if not backward:
        return forward
    return forward + B * T * H * ((2 * K + 2 * V) + (2 * K + V)) * elem  # read q, k, v, do; write dq, dk, dv


def run_timing(args, attn, results):
    fla_fn = None
    try:
        from fla.ops.simple_gla import chunk_simple_gla as fla_fn  # noqa: F811
    except Exception as error:  # not installed, or fails to import on this machine
        print(f"\nflash-linear-attention not importable ({error!r}); skipping the fla comparison", flush=True)
    H, D = args.heads, args.head_dim
    bw = args.hbm_bandwidth
    header = f"{'impl':<18}{'B':>3}{'T':>7} {'mode':<8}{'ms':>10}{'TFLOP/s':>9}{'GB/s':>9}{'floor':>7}"
    print(f"\n== timing: H={H} D={D} bf16, HBM {bw / 1e12:.2f} TB/s ==\n{header}", flush=True)

    def report(impl, B, T, mode, ms, flops, nbytes):
        row = dict(impl=impl, B=B, T=T, mode=mode, ms=ms, tflops=flops / ms / 1e9, gbps=nbytes / ms / 1e6,
                   floor_fraction=(nbytes / bw * 1e3) / ms)
        results.append(row)
        print(f"{impl:<18}{B:>3}{T:>7} {mode:<8}{ms:>10.3f}{row['tflops']:>9.1f}{row['gbps']:>9.0f}"
              f"{row['floor_fraction']:>7.2f}", flush=True)

    for T in args.seqlen:
        for B in args.batch:
            gen = torch.Generator(device="cuda").manual_seed(B * T)
            q, k, v, do = (model_like((B, T, H, D), torch.bfloat16, gen) for _ in range(4))
            slope = minimax_slopes(H)
            fwd_flops, fwd_bytes = linear_flops(B, T, H, D, D), io_bytes(B, T, H, D, D, backward=False)
            all_flops, all_bytes = 4 * fwd_flops, io_bytes(B, T, H, D, D, backward=True)

            with torch.no_grad():
                report("triton (ours)", B, T, "fwd", time_ms(lambda: attn(q, k, v, slope)), fwd_flops, fwd_bytes)
            leaves = [x.detach().requires_grad_() for x in (q, k, v)]

            def ours_fwd_bwd():
                o, _ = attn(*leaves, slope)
                torch.autograd.grad(o, leaves, do)

            report("triton (ours)", B, T, "fwd+bwd", time_ms(ours_fwd_bwd), all_flops, all_bytes)

            if fla_fn is not None:
                g_gamma = -slope

                def fla_forward(*xs):
                    return fla_fn(*xs, g_gamma=g_gamma, scale=1.0)[0]

                with torch.no_grad():
                    if T == args.seqlen[0] and B == args.batch[0]:  # same maths: agreement check once
                        rms, mx = worst_head_error(fla_forward(q, k, v), attn(q, k, v, slope)[0].double(), 2)
                        print(f"  fla vs ours: worst-head relative rms {rms:.2e}, max {mx:.2e}", flush=True)
                    report("fla chunk_simple", B, T, "fwd", time_ms(lambda: fla_forward(q, k, v)), fwd_flops,
                           fwd_bytes)

                def fla_fwd_bwd():
                    torch.autograd.grad(fla_forward(*leaves), leaves, do)

                report("fla chunk_simple", B, T, "fwd+bwd", time_ms(fla_fwd_bwd), all_flops, all_bytes)

            if not args.skip_sdpa:
                qs, ks, vs, dos = (x.transpose(1, 2).contiguous() for x in (q, k, v, do))  # [B, H, T, D]
                sdpa_flops = 2.0 * B * H * T * T * D
                with torch.no_grad():
                    report("sdpa causal", B, T, "fwd",
                           time_ms(lambda: F.scaled_dot_product_attention(qs, ks, vs, is_causal=True)),
                           sdpa_flops, fwd_bytes)
                sdpa_leaves = [x.detach().requires_grad_() for x in (qs, ks, vs)]

                def sdpa_fwd_bwd():
                    o = F.scaled_dot_product_attention(*sdpa_leaves, is_causal=True)
                    torch.autograd.grad(o, sdpa_leaves, dos)

                report("sdpa causal", B, T, "fwd+bwd", time_ms(sdpa_fwd_bwd), 3.5 * sdpa_flops, all_bytes)
                del qs, ks, vs, dos, sdpa_leaves
            del q, k, v, do, leaves
            torch.cuda.empty_cache()


def run_decode_timing(args, attn_decode, DecodeConfig, results):
    B, H, D = args.decode_batch, args.heads, args.head_dim
    gen = torch.Generator(device="cuda").manual_seed(1)
    q, k, v = (model_like((B, H, D), torch.bfloat16, gen) for _ in range(3))
    state = torch.randn(B, H, D, D, generator=gen, device="cuda")
    slope = minimax_slopes(H)
    nbytes = 2 * B * H * D * D * 4  # the fp32 state, read and written once (q, k, v, o add < 0.1%)
    print(f"\n== decode: B={B} H={H} K=V={D}, fp32 state {nbytes / 2 / 2**20:.0f} MiB ==", flush=True)
    best = None
    for block_v in (16, 32, 64, 128):
        for warps in (2, 4, 8):
            config = DecodeConfig(block_v=block_v, num_warps=warps)
            ms = time_ms(lambda: attn_decode(q, k, v, slope, state, config=config), budget_ms=60)
            fraction = (nbytes / args.hbm_bandwidth * 1e3) / ms
            print(f"  block_v {block_v:>3} warps {warps}: {ms * 1e3:8.1f} us  {nbytes / ms / 1e6:6.0f} GB/s  "
                  f"{fraction:.2f} of HBM", flush=True)
            row = dict(impl="triton decode", B=B, block_v=block_v, num_warps=warps, ms=ms, floor_fraction=fraction)
            results.append(row)
            if best is None or ms < best["ms"]:
                best = row
    default_ms = time_ms(lambda: attn_decode(q, k, v, slope, state), budget_ms=60)
    results.append(dict(impl="triton decode (default config)", B=B, ms=default_ms,
                        floor_fraction=(nbytes / args.hbm_bandwidth * 1e3) / default_ms))
    print(f"  default config: {default_ms * 1e3:.1f} us; best: block_v {best['block_v']} warps {best['num_warps']}",
          flush=True)

    def torch_decode():
        new_state = torch.addcmul(k.float().unsqueeze(-1) * v.float().unsqueeze(-2), state,
                                  torch.exp(-slope).view(1, H, 1, 1))
        return (q.float().unsqueeze(-2) @ new_state).squeeze(-2)

    ms = time_ms(torch_decode, budget_ms=60)
    print(f"  torch eager (for scale): {ms * 1e3:.1f} us", flush=True)
    results.append(dict(impl="torch decode", B=B, ms=ms, floor_fraction=(nbytes / args.hbm_bandwidth * 1e3) / ms))
    return best, default_ms


def summarize_targets(results, best_decode, decode_default_ms, args):
    print("\n== targets ==")

    def find(impl, B, T, mode):
        for row in results:
            if row.get("impl") == impl and row.get("B") == B and row.get("T") == T and row.get("mode") == mode:
                return row
        return None

    lines = []
    fwd = find("triton (ours)", 1, 16384, "fwd")
    both = find("triton (ours)", 1, 16384, "fwd+bwd")
    fla = find("fla chunk_simple", 1, 16384, "fwd")
    if fwd:
        lines.append(("forward B=1 T=16k within 1.5x of the memory floor", fwd["floor_fraction"] >= 1 / 1.5,
                      f"{1 / fwd['floor_fraction']:.2f}x floor"))
        if fla:
            lines.append(("forward B=1 T=16k at least as fast as fla chunk_simple_gla", fwd["ms"] <= fla["ms"],
                          f"{fwd['ms']:.3f} ms vs {fla['ms']:.3f} ms"))
        if both:
            lines.append(("fwd+bwd <= 3x fwd (B=1 T=16k)", both["ms"] <= 3 * fwd["ms"],
                          f"{both['ms'] / fwd['ms']:.2f}x"))
    if best_decode:
        fraction = (2 * args.decode_batch * args.heads * args.head_dim ** 2 * 4 / args.hbm_bandwidth * 1e3) / \
            decode_default_ms
        lines.append(("decode B=64 >= 70% of HBM bandwidth (default config)", fraction >= 0.7, f"{fraction:.2f}"))
        lines.append(("decode B=64 >= 70% of HBM bandwidth (best config)", best_decode["floor_fraction"] >= 0.7,
                      f"{best_decode['floor_fraction']:.2f}"))
    for label, ok, detail in lines:
        print(f"  {'MET ' if ok else 'MISS'} {label}: {detail}")
    return [dict(target=label, met=ok, detail=detail) for label, ok, detail in lines]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hbm-bandwidth", type=float, default=4.8e12, help="bytes/s (H200: 4.8e12)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--seqlen", type=int, nargs="+", default=[4096, 16384, 65536])
    parser.add_argument("--heads", type=int, default=64)
    parser.add_argument("--head-dim", type=int, default=128)
    parser.add_argument("--decode-batch", type=int, default=64)
    parser.add_argument("--skip-sdpa", action="store_true")
    parser.add_argument("--skip-correctness", action="store_true")
    parser.add_argument("--json", help="also write all numbers to this JSON file")
    args = parser.parse_args()

    if not torch.cuda.is_available():
        print("benchmarks/lightning_gpu.py needs a CUDA GPU; on CPU run the tests instead "
              "(pytest tests/ops/test_lightning_triton.py)", file=sys.stderr)
        return 2
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("TRITON_INTERPRET is set: unset it to time compiled kernels", file=sys.stderr)
        return 2
    from text_backbone.ops.lightning_attn.triton import (
        DecodeConfig,
        triton_lightning_attn,
        triton_lightning_attn_decode,
    )

    began = time.time()
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    checks = Checks()
    if not args.skip_correctness:
        check_correctness(checks, triton_lightning_attn, triton_lightning_attn_decode)
    results = []
    run_timing(args, triton_lightning_attn, results)
    best_decode, decode_default_ms = run_decode_timing(args, triton_lightning_attn_decode, DecodeConfig, results)
    targets = summarize_targets(results, best_decode, decode_default_ms, args)
    print(f"\ncorrectness failures: {checks.failures or 'none'}; total {time.time() - began:.0f} s")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(dict(device=torch.cuda.get_device_name(), hbm_bandwidth=args.hbm_bandwidth,
                           correctness=checks.records, timing=results, targets=targets), handle, indent=1)
    return 1 if checks.failures else 0


if __name__ == "__main__":
    sys.exit(main())
