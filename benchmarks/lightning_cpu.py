"""Lightning attention on CPU: our chunked op and layer against transformers 5.24 and causal softmax SDPA.

    .venv/bin/python benchmarks/lightning_cpu.py                            # T = 1k, 4k, 16k: a few minutes
    .venv/bin/python benchmarks/lightning_cpu.py --lengths 1024 --repeats 2  # a quick look

Setting: B = 1, H = 8 heads, head dim 64, hidden 512, float32, 2 threads. What is compared:

- op: `lightning_attn(q, k, v, slope, backend="torch")` on q, k, v `[1, T, 8, 64]`, with the hand-written
  backward, and (row "autograd bwd") the same chunked math differentiated by autograd; against causal
  `F.scaled_dot_product_attention` on the same q, k, v (PyTorch's CPU flash kernel, forward and backward).
- layer: the whole attention layer on x `[1, T, 512]`, transformers' `MiniMaxLightningAttention` (its Python
  loop over 256-token blocks; it has no separate training path, autograd runs through that loop) against the
  same layer with our op as the core: qkv_proj -> SiLU -> op -> RMSNorm -> sigmoid(output_gate) * o -> out_proj
  using the transformers module's own weights and slopes (outputs are checked equal before timing).
- layer core: both layers again with the three projections replaced by their precomputed outputs (fixed
  tensors, so no projection FLOPs forward or backward): SiLU, the attention core, the norm and the gate only.
  This isolates the attention core as transformers implements it. "shared projections" times the rest (the
  three projections plus the glue, with the core skipped): the same work in both full layers.
- GFLOP/s: executed matmul FLOPs of the chunked algorithm (listed in `op_flops`; the masked upper half of each
  chunk's score matrix is computed, so it counts; elementwise work and the state scan are not counted) over the
  time, next to a plain 2048 x 2048 fp32 matmul and a batched 64 x 64 x 64 matmul (T/64 * 8 products, the
  shape the op is built of) measured in the same rounds.

Timing: every candidate runs once per round, rounds repeat, and each reports its fastest round. Interleaving
spreads the load of a shared machine evenly over the candidates, so the ratios are the meaningful numbers.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import platform
import time

import torch
import torch.nn.functional as F

from text_backbone.ops.lightning_attn import lightning_attn

B, H, D, HIDDEN, CHUNK = 1, 8, 64, 512, 64


def op_flops(T: int, K: int = D, V: int = D, C: int = CHUNK, heads: int = H, backward: bool = False) -> float:
    """Matmul FLOPs the chunked algorithm executes (2 per multiply-add), per README.md's operation list.

    Forward per chunk: q kᵀ (C·C·K), scores·v (C·C·V), kᵀ(v⊙decay) (C·K·V), q̃·S (C·K·V).
    Backward: recomputed q kᵀ, dO vᵀ, dS·k, dSᵀ·q, scoresᵀ·dO (3·C·C·K + 2·C·C·V) and four C·K·V products.
    """
    chunks = -(-T // C)
    fwd = 2 * (C * C * K + C * C * V + 2 * C * K * V)
    bwd = 2 * (3 * C * C * K + 2 * C * C * V + 4 * C * K * V)
    return heads * chunks * (fwd + (bwd if backward else 0))


def transformers_layer():
    from transformers import MiniMaxConfig
    from transformers.models.minimax.modeling_minimax import MiniMaxLightningAttention

    config = MiniMaxConfig(hidden_size=HIDDEN, num_attention_heads=H, head_dim=D, num_key_value_heads=H,
                           num_hidden_layers=8, intermediate_size=4 * HIDDEN, vocab_size=1000)
    layer = MiniMaxLightningAttention(config, layer_idx=1)  # layer_types[1] == "linear_attention"
    with torch.no_grad():  # buffers are built at construction; give the projections a realistic scale
        for linear in (layer.qkv_proj, layer.output_gate, layer.out_proj):
            linear.weight.normal_(0.0, linear.in_features ** -0.5)
    return layer.train()


class _Fixed(torch.nn.Module):
    """Stands in for a projection: returns a precomputed output whatever the input."""

    def __init__(self, output: torch.Tensor) -> None:
        super().__init__()
        self.output = output

    def forward(self, _):
        return self.output


def without_projections(layer, x):
    """A copy of `layer` whose projections are replaced by their outputs on x (leaves that take gradients)."""
    core = copy.deepcopy(layer)
    with torch.no_grad():
        core.qkv_proj = _Fixed(layer.qkv_proj(x).requires_grad_())
        core.output_gate = _Fixed(layer.output_gate(x).requires_grad_())
    core.out_proj = torch.nn.Identity()
    return core


def our_layer(tf_layer):
    """The transformers layer's computation with our op as the core (same modules, weights, slopes, norm)."""
    slope = tf_layer.slope_rate.flatten()

    def forward(x, core=True):
        Bx, T, _ = x.shape
        qkv = F.silu(tf_layer.qkv_proj(x)).view(Bx, T, H, 3 * D)  # head-major q | k | v per head
        q, k, v = qkv.split(D, dim=-1)  # [B, T, H, D] each
        o = lightning_attn(q, k, v, slope, backend="torch", chunk_size=CHUNK)[0] if core else v
        o = tf_layer.norm(o.reshape(Bx, T, H * D))
        return tf_layer.out_proj(torch.sigmoid(tf_layer.output_gate(x)) * o)

    return forward


def timed(fn, backward: bool, leaves) -> float:
    """Seconds for one call (+ backward of the sum of outputs); gradients are cleared first."""
    for leaf in leaves:
        leaf.grad = None
    start = time.perf_counter()
    if backward:
        out = fn()
        out.sum().backward()
    else:
        with torch.no_grad():
            fn()
    return time.perf_counter() - start


def run_length(T: int, repeats: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    # Activations like the layer's: SiLU of unit-scale projections, so q·k and v are O(1).
    q, k, v = (F.silu(torch.randn(B, T, H, D, generator=g)).requires_grad_() for _ in range(3))
    slope = 2.0 ** (-8.0 * torch.arange(1, H + 1) / H)  # the model's per-head rates for 8 heads (SPEC_NOTES §2.3)
    x = torch.randn(B, T, HIDDEN, generator=g).requires_grad_()
    tf = transformers_layer()
    ours = our_layer(tf)
    tf_core = without_projections(tf, x)
    ours_core = our_layer(tf_core)
    core_leaves = (tf_core.qkv_proj.output, tf_core.output_gate.output, *tf_core.parameters())
    q_sdpa, k_sdpa, v_sdpa = (t.detach().transpose(1, 2).contiguous().requires_grad_() for t in (q, k, v))
    a = torch.randn(2048, 2048, generator=g)
    b = torch.randn(2048, 2048, generator=g)
    small = torch.randn(2, T // CHUNK * H, CHUNK, D, generator=g)  # the op's building block: 64x64x64 products
    small_out = torch.empty(T // CHUNK * H, CHUNK, CHUNK)

    with torch.no_grad():  # same computation: check before timing (float32; differences are rounding only)
        ref = tf(x, position_embeddings=None, attention_mask=None)[0]
        err = ((ours(x) - ref).abs().max() / ref.abs().max()).item()
        ref_core = tf_core(x, position_embeddings=None, attention_mask=None)[0]
        err = max(err, ((ours_core(x) - ref_core).abs().max() / ref_core.abs().max()).item())
    assert err < 1e-4, f"our layer differs from transformers' by {err:.2e} (relative to max)"

    layer_leaves = (x, *tf.parameters())
    candidates = {  # name: (function returning the output to differentiate, leaves)
        "op ours": (lambda: lightning_attn(q, k, v, slope, backend="torch")[0], (q, k, v)),
        "op ours, autograd bwd": (lambda: _autograd_op(q, k, v, slope), (q, k, v)),
        "op SDPA causal": (lambda: F.scaled_dot_product_attention(q_sdpa, k_sdpa, v_sdpa, is_causal=True),
                           (q_sdpa, k_sdpa, v_sdpa)),
        "layer core ours": (lambda: ours_core(x), core_leaves),
        "layer core transformers": (lambda: tf_core(x, position_embeddings=None, attention_mask=None)[0],
                                    core_leaves),
        "layer ours": (lambda: ours(x), layer_leaves),
        "layer transformers": (lambda: tf(x, position_embeddings=None, attention_mask=None)[0], layer_leaves),
        "shared projections": (lambda: ours(x, core=False), layer_leaves),
    }
    best = {(name, bwd): float("inf") for name in candidates for bwd in (False, True)}
    best[("matmul 2048", False)] = best[("bmm 64", False)] = float("inf")
    for name, (fn, leaves) in candidates.items():  # warm-up (allocator, thread pool, lazy imports)
        timed(fn, True, leaves)
    for _ in range(repeats):
        for name, (fn, leaves) in candidates.items():
            for bwd in (False, True):
                best[(name, bwd)] = min(best[(name, bwd)], timed(fn, bwd, leaves))
        start = time.perf_counter()
        torch.mm(a, b)
        best[("matmul 2048", False)] = min(best[("matmul 2048", False)], time.perf_counter() - start)
        start = time.perf_counter()
        torch.bmm(small[0], small[1], out=small_out)
        best[("bmm 64", False)] = min(best[("bmm 64", False)], time.perf_counter() - start)
    best["layer check"] = err
    return best


def _autograd_op(q, k, v, slope):
    from text_backbone.ops.lightning_attn.chunk import chunk_lightning_attn

    return chunk_lightning_attn(q, k, v, slope, chunk_size=CHUNK, backward="autograd")[0]


def report(T: int, r: dict) -> list[str]:
    ms = lambda name, bwd: r[(name, bwd)] * 1e3  # noqa: E731
    lines = [f"T = {T} (layer check: max |ours - transformers| / max |transformers| = {r['layer check']:.1e})",
             f"| {'what':<28} | {'fwd ms':>9} | {'fwd+bwd ms':>10} | {'fwd: x ours':>11} | {'fwd+bwd: x ours':>15} |",
             f"|{'-' * 30}|{'-' * 11}:|{'-' * 12}:|{'-' * 13}:|{'-' * 17}:|"]
    for name in ("op ours", "op ours, autograd bwd", "op SDPA causal", "layer core ours", "layer core transformers",
                 "layer ours", "layer transformers", "shared projections"):
        base = "op ours" if name.startswith("op ") else "layer core ours" if "core" in name else "layer ours"
        ratio_f, ratio_b = ms(name, False) / ms(base, False), ms(name, True) / ms(base, True)
        lines.append(f"| {name:<28} | {ms(name, False):>9.1f} | {ms(name, True):>10.1f} | {ratio_f:>10.2f}x |"
                     f" {ratio_b:>14.2f}x |")
    mm = 2 * 2048**3 / r[("matmul 2048", False)] / 1e9
    fwd = op_flops(T) / r[("op ours", False)] / 1e9
    both = op_flops(T, backward=True) / r[("op ours", True)] / 1e9
    small = 2 * T // CHUNK * H * CHUNK**3 / r[("bmm 64", False)] / 1e9
    lines.append(f"op GFLOP/s: fwd {fwd:.1f} ({fwd / mm:.0%} of matmul), fwd+bwd {both:.1f} ({both / mm:.0%}); "
                 f"plain fp32 matmul 2048^3: {mm:.1f} GFLOP/s; batched 64x64x64 bmm (the op's building block): "
                 f"{small:.1f} GFLOP/s")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--repeats", type=int, default=None, help="rounds per length (default 12 / 6 / 3 for "
                        "up to 1k / 4k / longer): the fastest round is kept, so cheap lengths get more tries")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# {datetime.date.today()} | {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
          f"threads | torch {torch.__version__} | B={B} H={H} D={D} hidden={HIDDEN} chunk={CHUNK} float32 | "
          f"load average at start {_load_average()}")
    results = {}
    for T in args.lengths:
        repeats = args.repeats or (12 if T <= 1024 else 6 if T <= 4096 else 3)
        results[T] = run_length(T, repeats)
        print("\n".join(report(T, results[T])), flush=True)
        print()
    print("\n".join(targets(results)))
    print(f"load average at end {_load_average()}")


def _load_average() -> str:
    """1/5/15-minute load averages: other processes on a shared machine distort absolute times."""
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "unknown"


def targets(results: dict) -> list[str]:
    """The issue's targets, checked on this run's numbers."""
    lines = ["Targets (from 4k on): layer core >= 5x faster than transformers', op faster than SDPA, "
             "op forward >= 40% of matmul GFLOP/s"]
    for T, r in results.items():
        if T < 4096:
            continue
        for bwd, label in ((False, "fwd"), (True, "fwd+bwd")):
            speedup = r[("layer core transformers", bwd)] / r[("layer core ours", bwd)]
            full = r[("layer transformers", bwd)] / r[("layer ours", bwd)]
            sdpa = r[("op SDPA causal", bwd)] / r[("op ours", bwd)]
            lines.append(f"T={T} {label:>7}: layer core {speedup:5.1f}x [{'met' if speedup >= 5 else 'MISSED'}]"
                         f" (full layer {full:.1f}x), vs SDPA {sdpa:5.1f}x [{'met' if sdpa > 1 else 'MISSED'}]")
        mm = 2 * 2048**3 / r[("matmul 2048", False)]
        share = op_flops(T) / r[("op ours", False)] / mm
        lines.append(f"T={T}     fwd: op at {share:.0%} of matmul GFLOP/s [{'met' if share >= 0.4 else 'MISSED'}]")
    return lines


if __name__ == "__main__":
    main()
