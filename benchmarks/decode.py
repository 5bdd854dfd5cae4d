"""Per-token decode latency and cache memory at long contexts: our hybrid model, the same model with every
layer softmax, and transformers' MiniMaxForCausalLM with the same weights.

    .venv/bin/python benchmarks/decode.py                                   # the table in docs/PERFORMANCE.md
    .venv/bin/python benchmarks/decode.py --contexts 256 1024 --steps 8 --repeats 2   # a quick look

Every model is prefilled with the same random token ids at every context length (prefill time is reported
but is not the subject), and all these (model, context) pairs are kept. Then `--repeats` rounds each time
`--steps` greedy decode steps of every pair in turn; latency per token is the minimum and the median over the
rounds. Interleaving matters on a shared machine: load from other jobs changes over minutes, and rounds spread
it over all pairs instead of penalising whichever was measured during a burst. Our models return to the
prefilled context before each round (`HybridCache.snapshot()` / `crop()`); transformers' cache cannot crop, so
it keeps decoding (its context grows by steps * repeats tokens, 144 by default).

Models (a `small` preset: 8 layers, hidden 384, 6 heads of 64, 2 KV heads, 8 experts top-2, vocab 4096):
    hybrid        MiniMaxText01Config.from_preset("small")        7 lightning layers + 1 softmax layer
    all-softmax   the same with attn_type_list = [1] * 8
    transformers  transformers.MiniMaxForCausalLM, the hybrid's weights (converted with text_backbone.convert)
Cache bytes: ours are the allocated buffers (`HybridCache.memory_bytes()`, reserved for the context plus the
decode steps, so no doubling slack); transformers' are its lightning states plus its concatenated keys/values.

The machine is shared and noisy: compare ratios within one run. Threads default to 1 (`--threads`), since on
two contended cores the small per-token matmuls of decoding are slower with two threads than with one.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
from datetime import date

import torch

from text_backbone.config import LIGHTNING, MiniMaxText01Config
from text_backbone.generation import decode_one_token, prefill
from text_backbone.model import MiniMaxText01ForCausalLM


# ----------------------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------------------


def our_model(config: MiniMaxText01Config, seed: int) -> MiniMaxText01ForCausalLM:
    torch.manual_seed(seed)
    return MiniMaxText01ForCausalLM(config).eval()


def transformers_twin(ours: MiniMaxText01ForCausalLM):
    """transformers' MiniMaxForCausalLM holding our weights. Its RoPE rotates the whole head (ours: rotary_dim),
    which costs the same per token, so timings compare like with like."""
    import transformers

    from text_backbone.convert import released_to_transformers
    from text_backbone.weights_io import convert_state_dict

    c = ours.config
    config = transformers.MiniMaxConfig(
        vocab_size=c.vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
        num_key_value_heads=c.num_key_value_heads, head_dim=c.head_dim, num_local_experts=c.num_local_experts,
        num_experts_per_tok=c.num_experts_per_tok, max_position_embeddings=c.max_position_embeddings,
        layer_types=["linear_attention" if t == LIGHTNING else "full_attention" for t in c.attn_type_list],
        block_size=c.block_size, rms_norm_eps=c.rms_norm_eps,
        full_attn_alpha_factor=c.layernorm_full_attention_alpha, full_attn_beta_factor=c.layernorm_full_attention_beta,
        linear_attn_alpha_factor=c.layernorm_linear_attention_alpha,
        linear_attn_beta_factor=c.layernorm_linear_attention_beta,
        mlp_alpha_factor=c.layernorm_mlp_alpha, mlp_beta_factor=c.layernorm_mlp_beta,
        rope_parameters={"rope_type": "default", "rope_theta": c.rope_theta}, tie_word_embeddings=False,
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )
    theirs = transformers.MiniMaxForCausalLM(config).eval()
    weights = convert_state_dict(ours.state_dict(), released_to_transformers())
    missing, unexpected = theirs.load_state_dict(weights, strict=False)
    derived = ("slope_rate", "query_decay", "key_decay", "diagonal_decay")  # buffers transformers computes itself
    if unexpected or any(not key.endswith(derived) for key in missing):
        raise RuntimeError(f"weight conversion mismatch: missing {missing}, unexpected {unexpected}")
    return theirs


# ----------------------------------------------------------------------------------------------------------------------
# Sessions: one prefilled context of one implementation, which can decode, go back, and report its cache size
# ----------------------------------------------------------------------------------------------------------------------


class OurSession:
    def __init__(self, model: MiniMaxText01ForCausalLM, ids: torch.Tensor, extra: int, chunk_size: int) -> None:
        self.model = model
        self.cache = model.new_cache()
        self.cache.reserve(ids.shape[1] + extra)  # exact buffers: no doubling slack in the memory column
        self.first = prefill(model, ids, cache=self.cache, chunk_size=chunk_size).argmax(-1)
        self.snapshot = self.cache.snapshot()

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        return decode_one_token(self.model, tokens, self.cache).argmax(-1)

    def rewind(self) -> None:
        self.cache.crop(self.snapshot)

    def cache_bytes(self) -> int:
        return self.cache.memory_bytes()


class TransformersSession:
    @torch.no_grad()
    def __init__(self, model, ids: torch.Tensor, extra: int, chunk_size: int) -> None:
        # One forward: with a cache, transformers runs a multi-token call token by token, so no chunking.
        out = model(ids, use_cache=True, logits_to_keep=1)
        self.model, self.cache, self.position = model, out.cache, ids.shape[1]
        self.first = out.logits[:, -1].argmax(-1)

    @torch.no_grad()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        # Explicit positions: its cache reports length 0 (it reads layer 0, a lightning layer).
        positions = torch.full((tokens.shape[0], 1), self.position)
        out = self.model(tokens[:, None], cache=self.cache, position_ids=positions, use_cache=True, logits_to_keep=1)
        self.position += 1
        return out.logits[:, -1].argmax(-1)

    def rewind(self) -> None:
        pass  # MiniMaxCache.crop raises; keep decoding from where we are

    def cache_bytes(self) -> int:
        tensors = [s for s in self.cache.linear_cache if isinstance(s, torch.Tensor)]
        for layer in self.cache.layers:  # lightning layers leave their key/value slots empty
            tensors += [t for t in (getattr(layer, "keys", None), getattr(layer, "values", None))
                        if isinstance(t, torch.Tensor)]
        return sum(t.numel() * t.element_size() for t in tensors)


@torch.no_grad()
def seconds_per_token(session, steps: int) -> float:
    """Mean seconds per token over `steps` greedy decode steps from the prefilled context."""
    session.rewind()
    tokens = session.first
    start = time.perf_counter()
    for _ in range(steps):
        tokens = session.step(tokens)
    return (time.perf_counter() - start) / steps


# ----------------------------------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contexts", type=int, nargs="+", default=[512, 4096, 32768])
    parser.add_argument("--steps", type=int, default=16, help="decode steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=9, help="timing rounds over every (model, context) pair")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--prefill-chunk", type=int, default=8192, help="our prefill chunk size")
    parser.add_argument("--models", nargs="+", default=["hybrid", "all-softmax", "transformers"],
                        choices=["hybrid", "all-softmax", "transformers"])
    parser.add_argument("--transformers-max-context", type=int, default=32768,
                        help="skip transformers above this context (its prefill has no chunking)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    hybrid = our_model(MiniMaxText01Config.from_preset("small"), args.seed)
    models = {}
    if "hybrid" in args.models:
        models["hybrid"] = (OurSession, hybrid)
    if "all-softmax" in args.models:
        softmax_only = MiniMaxText01Config.from_preset("small", attn_type_list=[1] * 8)
        models["all-softmax"] = (OurSession, our_model(softmax_only, args.seed))
    if "transformers" in args.models:
        models["transformers"] = (TransformersSession, transformers_twin(hybrid))

    print(f"# decode benchmark {date.today()} | {platform.machine()}, {torch.get_num_threads()} thread(s) | "
          f"torch {torch.__version__} | batch {args.batch} | {args.repeats} rounds x {args.steps} steps | "
          "small preset, fp32")
    # Prefill every (model, context) pair first; then time in rounds that visit every pair once, so that load
    # from other jobs on the machine, which changes over minutes, is shared by all pairs.
    sessions, prefill_s = {}, {}
    generator = torch.Generator().manual_seed(args.seed)
    extra = args.steps * args.repeats + 1
    for context in args.contexts:
        ids = torch.randint(0, hybrid.config.vocab_size, (args.batch, context), generator=generator)
        for name, (session_class, model) in models.items():
            if name == "transformers" and context > args.transformers_max_context:
                continue
            start = time.perf_counter()
            sessions[name, context] = session_class(model, ids, extra, args.prefill_chunk)
            prefill_s[name, context] = time.perf_counter() - start
            print(f"  prefilled {name} at {context} in {prefill_s[name, context]:.1f} s", flush=True)
    times = {key: [] for key in sessions}
    for round_ in range(args.repeats):
        for key, session in sessions.items():
            times[key].append(seconds_per_token(session, args.steps))
        print(f"  round {round_ + 1}/{args.repeats} done", flush=True)

    results = {}
    print(f"\n{'model':<13} {'context':>8} {'prefill s':>10} {'ms/token min':>13} {'ms/token median':>16} "
          f"{'cache MiB':>10}")
    for (name, context), session in sessions.items():
        r = results[name, context] = {
            "min_ms": 1e3 * min(times[name, context]), "median_ms": 1e3 * statistics.median(times[name, context]),
            "cache_mb": session.cache_bytes() / 2**20,
        }
        print(f"{name:<13} {context:>8} {prefill_s[name, context]:>10.1f} {r['min_ms']:>13.2f} "
              f"{r['median_ms']:>16.2f} {r['cache_mb']:>10.2f}")

    print("\n# targets: min (median)")
    lo, hi = min(args.contexts), max(args.contexts)

    def ratio(a, b):
        by_min = results[a]["min_ms"] / results[b]["min_ms"]
        by_median = results[a]["median_ms"] / results[b]["median_ms"]
        return f"{by_min:.2f}x ({by_median:.2f}x)"

    if ("hybrid", lo) in results and ("hybrid", hi) in results:
        print(f"hybrid latency {hi} / {lo}: {ratio(('hybrid', hi), ('hybrid', lo))}   (target <= 1.5x)")
    for context in args.contexts:
        if ("hybrid", context) in results and ("transformers", context) in results:
            print(f"transformers / hybrid latency at {context}: {ratio(('transformers', context), ('hybrid', context))}"
                  "   (target >= 3x at 4096)")
    if ("hybrid", hi) in results and ("all-softmax", hi) in results:
        share = results["hybrid", hi]["cache_mb"] / results["all-softmax", hi]["cache_mb"]
        print(f"hybrid / all-softmax cache bytes at {hi}: {share:.3f}   (target <= 1/6 = 0.167)")


if __name__ == "__main__":
    main()
