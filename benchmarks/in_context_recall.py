"""How fast can a decoder learn to look a value up in its context? (associative recall, the skill that both
reading a label out of the image tokens and answering from a transcription need)

    .venv/bin/python benchmarks/in_context_recall.py                  # demo decoder at two learning rates vs plain
    .venv/bin/python benchmarks/in_context_recall.py --steps 1000 --models demo@3e-4/100 plain-pre-norm@1e-3/0

Each document is `k1 v1 k2 v2 ... k6 v6 SEP kq vq`: six distinct random keys (of `--symbols`, default 20) with
random values (of as many), then one of the keys again; only the value after it is trained. Guessing among all
values costs ln 20 = 3.00 nats; a model that has learnt that the answer is one of the six values in its context,
but not which, reaches ln 6 = 1.79 ("bag of context"); recall reaches 0. All models see the same batches
(64 documents, AdamW, weight decay 0.1) on one thread. A model is given as NAME@LR/WARMUP (linear warm-up steps).

Models:
  demo             the `demo` preset's decoder as it is (4 layers, lightning/softmax/lightning/softmax,
                   DeepNorm post-norm, 4 experts top-2, RoPE theta 1e7 on 32 of 64 channels)
  demo-softmax     the same with four softmax layers
  plain-pre-norm   torch's TransformerEncoder, causal, 2 layers, width 256, learned positions, pre-norm
  plain-post-norm  the same, post-norm
Prints loss and accuracy every `--every` steps, side by side (one run: ratios hold on a noisy machine).

Measured 2026-12-06 (docs/MODEL_CARD.md, "What limits reading"; 300 steps, one run): at 1e-3 without warm-up, the
learning rate every demo recipe gave its language model, the demo decoder never left ln 20; at 3e-4 with 100
warm-up steps it reached the bag-of-context level by step 250, as plain transformers at 1e-3 did by step 100. The
plain pre-norm transformer learned exact recall between steps 250 and 300; the post-norm ones had not by step 300,
nor (demo at 3e-4 and 1e-4, plain post-norm at 1e-3) by step 1,000.
"""
from __future__ import annotations

import argparse
import copy
import time

import torch
from torch import nn

from minimax_vl.config import MiniMaxVL01Config
from text_backbone.model import MiniMaxText01ForCausalLM

KEY_START, VALUE_START, PAIRS, SEP = 100, 600, 6, 5
VOCAB = 1024


def recall_batch(generator: torch.Generator, n: int = 64, symbols: int = 20) -> torch.Tensor:
    """[n, 2 * PAIRS + 3] token ids; the last one is the value to recall."""
    keys = torch.stack([torch.randperm(symbols, generator=generator)[:PAIRS] for _ in range(n)]) + KEY_START
    values = torch.randint(VALUE_START, VALUE_START + symbols, (n, PAIRS), generator=generator)
    asked = torch.randint(0, PAIRS, (n,), generator=generator)
    rows = torch.arange(n)
    pairs = torch.stack([keys, values], -1).flatten(1)  # [n, 2 * PAIRS]: k1 v1 k2 v2 ...
    return torch.cat([pairs, torch.full((n, 1), SEP), keys[rows, asked, None], values[rows, asked, None]], 1)


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
    def __init__(self, all_softmax: bool = False) -> None:
        super().__init__()
        config = copy.deepcopy(MiniMaxVL01Config.from_preset("demo").text_config)
        config.vocab_size = VOCAB
        if all_softmax:
            config.attn_type_list = [1] * config.num_hidden_layers
        self.model = MiniMaxText01ForCausalLM(config)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids).logits


def parse_spec(spec: str) -> tuple[str, float, int]:
    """"demo@3e-4/100" -> ("demo", 3e-4, 100); the learning rate defaults to 1e-3, the warm-up to none."""
    name, _, rest = spec.partition("@")
    lr, _, warmup = rest.partition("/")
    return name, float(lr or 1e-3), int(warmup or 0)


def build(name: str) -> nn.Module:
    return {"demo": lambda: DemoDecoder(), "demo-softmax": lambda: DemoDecoder(all_softmax=True),
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
        ids = recall_batch(generator, symbols=args.symbols)
        for name, model in models.items():
            started = time.perf_counter()
            logits = model(ids)[:, -2]  # the prediction of the last token, the recalled value
            loss = nn.functional.cross_entropy(logits, ids[:, -1])
            optimizers[name].zero_grad(set_to_none=True)
            loss.backward()
            optimizers[name].step()
            schedules[name].step()
            seconds[name] += time.perf_counter() - started
            window[name].append((loss.item(), (logits.argmax(-1) == ids[:, -1]).float().mean().item()))
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
