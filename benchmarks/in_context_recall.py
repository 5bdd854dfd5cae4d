"""How fast can a decoder learn to look a value up in its context? (associative recall, the skill that both
reading a label out of the image tokens and answering from a transcription need)

    .venv/bin/python benchmarks/in_context_recall.py                  # demo decoder at two learning rates vs plain
    .venv/bin/python benchmarks/in_context_recall.py --steps 1000 --models demo@3e-4/100 plain-pre-norm@1e-3/0
    .venv/bin/python benchmarks/in_context_recall.py --steps 400 --queries 6      # six trained look-ups a document
    .venv/bin/python benchmarks/in_context_recall.py --steps 800 --queries 6 --value-digits 2 \
        --models "demo,initializer_range=0.06@1e-3/100"          # values as "key SPACE d d"; add --no-space: "key d d"

Each document is `k1 v1 k2 v2 ... k6 v6 SEP kq vq`: six distinct random keys (of `--symbols`, default 20) with
random values (of as many), then one of the keys again; only the value after it is trained (`--queries N`: N
distinct keys asked again, each value trained). Guessing among all values costs ln 20 = 3.00 nats; a model that
has learnt that the answer is one of the six values in its context, but not which, reaches ln 6 = 1.79 ("bag of
context"; with six queries, excluding the values already asked: 1.10 and 41% on average); recall reaches 0.
All models see the same batches (64 documents, AdamW, weight decay 0.1) on one thread. A model is given as
NAME@LR/WARMUP (linear warm-up steps).

Models:
  demo             the `demo` preset's decoder as it is (4 layers, lightning/softmax/lightning/softmax,
                   DeepNorm post-norm, 4 experts top-2, RoPE theta 1e7 on 32 of 64 channels)
  demo-softmax     the same with four softmax layers
  demo,FIELD=VALUE the demo decoder with text-config fields changed, e.g. demo,initializer_range=0.06
  plain-pre-norm   torch's TransformerEncoder, causal, 2 layers, width 256, learned positions, pre-norm
  plain-post-norm  the same, post-norm
Prints loss and accuracy every `--every` steps, side by side (one run: ratios hold on a noisy machine).

Measured 2026-12-06 (docs/MODEL_CARD.md, "What limits reading"; 300 steps, one run): at 1e-3 without warm-up, the
learning rate every demo recipe gave its language model, the demo decoder never left ln 20; at 3e-4 with 100
warm-up steps it reached the bag-of-context level by step 250, as plain transformers at 1e-3 did by step 100. The
plain pre-norm transformer learned exact recall between steps 250 and 300; the post-norm ones had not by step 300,
nor (demo at 3e-4 and 1e-4, plain post-norm at 1e-3) by step 1,000. With six queries a document (third session,
400 steps, under load): plain post-norm at 1e-3 broke out to 0.773 / 67.8% between steps 350 and 400; the demo
decoder at 3e-4 and at 1e-3 (100 warm-up steps) reached the bag-of-context level (1.224 / 46.4%, 1.270 / 44.3%) and
not yet recall. A larger initialisation (initializer_range 0.06 instead of 0.02) only shortened the first 150 steps.

Fourth session (six queries, 600-1,000 steps, under load; runs/bench/recall_q6_*.txt): the demo decoder at 3e-4
stayed at the bag-of-context level to step 1,000 (1.070 / 45.7%), and so did every variant at 3e-4: RoPE theta 1e4
instead of 1e7 (1.110 / 46.2% at 700), one dense expert instead of 4 top-2 (1.250 / 46.2% at 400), DeepNorm alphas
of 1 instead of 1.68 (1.119 / 46.2% at 600); four softmax layers learned slower (1.423 / 39.6% at 700). What broke
it out is the initialisation and the learning rate together: `demo,initializer_range=0.06@1e-3/100` reached the
bag-of-context level by step 200 and exact recall between steps 300 and 400 (0.026 / 99.3%; 100.0% at 500), like
the plain transformers. Each alone had not (0.06 at 3e-4; 0.02 at 1e-3 with warm-up: 1.270 / 44.3% at 400).

Sixth session (2026-12-07; six queries, two-digit values, `demo,initializer_range=0.06@1e-3/100`, the loss per
digit, the accuracy per whole value; runs/bench/recall_digits2_*.txt): values written as the demo tokenizer writes
"Yak 15" (key, SPACE, digit, digit: `--value-digits 2`) stayed at the bag-of-context level of whole values (six
queries, each value one of those not yet asked: 40.8% on average) from step 450 to step 800 (0.577 / 41.7%);
without the SPACE (`--no-space`: key, digit, digit) the same decoder broke out at step 250 (0.211 / 83.0%) and
reached 0.039 / 97.4% at step 400. A constant token between a key and its value is what blocks the look-up: the
first digit's previous token is the same for every entry. Hence the tokenizer's `--digits attached` mode
(training/data/tokenizer.py), which writes "Yak 15" as ĠYak Ġ1 5.
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import torch
from torch import nn

from minimax_vl.config import MiniMaxVL01Config
from text_backbone.model import MiniMaxText01ForCausalLM
from training.stages import parse_override_value

KEY_START, VALUE_START, PAIRS, SEP = 100, 600, 6, 5
# Multi-token values (`--value-digits D`): SPACE d1 .. dD, as the isolated-digits tokenizer wrote "Ġ 1 5".
SPACE, DIGIT_START = 6, 900
VOCAB = 1024


def recall_batch(generator: torch.Generator, n: int = 64, symbols: int = 20, queries: int = 1,
                 value_digits: int = 0, space: bool = True) -> torch.Tensor:
    """[n, PAIRS * (1 + width) + 1 + queries * (1 + width)] token ids, width = 1 for single-token values (the
    default), else value_digits plus one for the SPACE: the pairs, SEP, then `queries` distinct keys asked again,
    each followed by its value (the tokens trained; `value_positions` says where they are).

    With `value_digits` D > 0 a value is SPACE (unless `space` is False) and D digit tokens of a random number below
    10**D; values may repeat and share digits, as the numbers of a chart do, so only the whole value after the key
    asked is right."""
    if not 1 <= queries <= PAIRS:
        raise ValueError(f"queries must be between 1 and {PAIRS}, got {queries}")
    keys = torch.stack([torch.randperm(symbols, generator=generator)[:PAIRS] for _ in range(n)]) + KEY_START
    if value_digits:
        numbers = torch.randint(0, 10 ** value_digits, (n, PAIRS), generator=generator)
        powers = 10 ** torch.arange(value_digits - 1, -1, -1)
        digits = numbers[..., None] // powers % 10 + DIGIT_START  # [n, PAIRS, D], most significant first
        values = torch.cat([torch.full((n, PAIRS, 1), SPACE), digits], -1) if space else digits  # [n, PAIRS, (1 +) D]
    else:
        values = torch.randint(VALUE_START, VALUE_START + symbols, (n, PAIRS, 1), generator=generator)
    asked = torch.stack([torch.randperm(PAIRS, generator=generator)[:queries] for _ in range(n)])  # [n, queries]
    pairs = torch.cat([keys[..., None], values], -1).flatten(1)  # [n, PAIRS * (1 + width)]: k1 v1 k2 v2 ...
    asked_values = values.gather(1, asked[..., None].expand(-1, -1, values.shape[-1]))  # [n, queries, width]
    recalled = torch.cat([keys.gather(1, asked)[..., None], asked_values], -1).flatten(1)
    return torch.cat([pairs, torch.full((n, 1), SEP), recalled], 1)


def value_positions(queries: int, value_digits: int = 0, space: bool = True) -> torch.Tensor:
    """[queries, tokens a value trains] positions in a `recall_batch` row: each recalled value's token, or its
    digits (the SPACE before them is fixed, so not a look-up)."""
    spaced = bool(value_digits) and space
    width = 1 + max(1, value_digits) + spaced  # a key and its value
    first = PAIRS * width + 1 + torch.arange(queries)[:, None] * width + 1 + spaced  # each asked value's first digit
    return first + torch.arange(max(1, value_digits))


class PlainDecoder(nn.Module):
    def __init__(self, width: int = 256, layers: int = 2, pre_norm: bool = True) -> None:
        super().__init__()
        self.embed, self.position = nn.Embedding(VOCAB, width), nn.Embedding(64, width)
        layer = nn.TransformerEncoderLayer(width, 4, 4 * width, 0.0, batch_first=True, norm_first=pre_norm)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(width, VOCAB)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        length = ids.shape[1]
        x = self.embed(ids) + self.position(torch.arange(length))
        mask = nn.Transformer.generate_square_subsequent_mask(length)
        return self.head(self.layers(x, mask=mask, is_causal=True))


class DemoDecoder(nn.Module):
    def __init__(self, all_softmax: bool = False, overrides: dict[str, str] | None = None) -> None:
        super().__init__()
        config = MiniMaxVL01Config.from_preset("demo").text_config
        fields = {"vocab_size": VOCAB}
        if all_softmax:
            fields["attn_type_list"] = [1] * config.num_hidden_layers
        for key, value in (overrides or {}).items():
            if not hasattr(config, key):
                raise SystemExit(f"the text config has no field {key!r} (a model is NAME[,field=value...]@LR/WARMUP)")
            fields[key] = parse_override_value(value)  # as `--set` parses a stage override: YAML, 1e-5 a number
        try:  # `replace` re-runs the config's validation: an unsupported value (postnorm=false) must not pass silently
            config = dataclasses.replace(config, **fields)
        except ValueError as error:
            raise SystemExit(str(error)) from None
        self.model = MiniMaxText01ForCausalLM(config)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids).logits


def parse_spec(spec: str) -> tuple[str, float, int]:
    """"demo@3e-4/100" -> ("demo", 3e-4, 100); the learning rate defaults to 1e-3, the warm-up to none."""
    name, _, rest = spec.partition("@")
    lr, _, warmup = rest.partition("/")
    return name, float(lr or 1e-3), int(warmup or 0)


def build(spec: str) -> nn.Module:
    """"demo" or, with text-config fields changed, "demo,initializer_range=0.06"."""
    name, *fields = spec.split(",")
    overrides = dict(field.split("=", 1) for field in fields)
    if overrides and not name.startswith("demo"):
        raise SystemExit(f"config fields apply to the demo decoders only, not {name!r}")
    return {"demo": lambda: DemoDecoder(overrides=overrides),
            "demo-softmax": lambda: DemoDecoder(all_softmax=True, overrides=overrides),
            "plain-pre-norm": lambda: PlainDecoder(pre_norm=True),
            "plain-post-norm": lambda: PlainDecoder(pre_norm=False)}[name]()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--symbols", type=int, default=20, help="distinct keys and distinct values (default 20)")
    parser.add_argument("--models", nargs="+", default=["demo@1e-3/0", "demo@3e-4/100", "plain-pre-norm@1e-3/0",
                                                        "plain-post-norm@1e-3/0"])
    parser.add_argument("--queries", type=int, default=1,
                        help="keys asked again after SEP, each value trained (1 to 6; default 1: one target a "
                             "document)")
    parser.add_argument("--value-digits", type=int, default=0,
                        help="values as a space and this many digit tokens, like the demo tokenizer's numbers "
                             "(default 0: one token a value); the loss is per digit, the accuracy per whole value")
    parser.add_argument("--no-space", action="store_true",
                        help="with --value-digits: the digits follow the key directly, no SPACE token between")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models, optimizers, schedules, seconds = {}, {}, {}, {}
    for spec in args.models:
        name, lr, warmup = parse_spec(spec)
        torch.manual_seed(0)
        models[spec] = build(name)
        optimizers[spec] = torch.optim.AdamW(models[spec].parameters(), lr=lr, weight_decay=0.1)
        schedules[spec] = torch.optim.lr_scheduler.LambdaLR(optimizers[spec], lambda s, w=warmup: min(1.0, (s + 1) / w)
                                                            if w else 1.0)
        seconds[spec] = 0.0
    generator = torch.Generator().manual_seed(0)
    print("step  " + "  ".join(f"{name:>24}" for name in args.models) + "   (loss / accuracy)")
    window = {name: [] for name in args.models}
    for step in range(1, args.steps + 1):
        ids = recall_batch(generator, symbols=args.symbols, queries=args.queries, value_digits=args.value_digits,
                           space=not args.no_space)
        targets = value_positions(args.queries, args.value_digits, space=not args.no_space)  # [queries, tokens]
        for name, model in models.items():
            started = time.perf_counter()
            logits = model(ids)[:, targets - 1]  # [n, queries, tokens a value, vocab]: predictions of the values
            answers = ids[:, targets]
            loss = nn.functional.cross_entropy(logits.flatten(0, -2), answers.flatten())
            optimizers[name].zero_grad(set_to_none=True)
            loss.backward()
            optimizers[name].step()
            schedules[name].step()
            seconds[name] += time.perf_counter() - started
            exact = (logits.argmax(-1) == answers).all(-1)  # a value counts only with every digit right
            window[name].append((loss.item(), exact.float().mean().item()))
        if step % args.every == 0:
            cells = []
            for name in args.models:
                losses, accuracies = zip(*window[name])
                cells.append(f"{sum(losses) / len(losses):>15.3f} / {sum(accuracies) / len(accuracies):>5.1%}")
                window[name] = []
            print(f"{step:>4}  " + "  ".join(cells), flush=True)
    print("seconds per step: " + ", ".join(f"{n} {seconds[n] / args.steps:.3f}" for n in args.models))


if __name__ == "__main__":
    main()
