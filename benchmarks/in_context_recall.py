"""How fast can a decoder learn to look a value up in its context? (associative recall, the skill that both
reading a label out of the image tokens and answering from a transcription need)

    .venv/bin/python benchmarks/in_context_recall.py                      # demo decoder vs plain transformers
    .venv/bin/python benchmarks/in_context_recall.py --steps 1000 --models demo plain-pre-norm

Each document is `k1 v1 k2 v2 ... k6 v6 SEP kq vq`: six random keys (of 400) with random values (of 400), then one
of the keys again; only the value after it is trained. Guessing among all values costs ln 400 = 5.99 nats;
a model that knows the answer is one of the six values in its context but not which reaches ln 6 = 1.79; recall
reaches 0. All models see the same batches (64 documents, AdamW 1e-3, weight decay 0.1) on one thread.

Models:
  demo             the `demo` preset's decoder as it is (4 layers, lightning/softmax/lightning/softmax,
                   DeepNorm post-norm, 4 experts top-2, RoPE theta 1e7 on 32 of 64 channels)
  demo-softmax     the same with four softmax layers
  plain-pre-norm   torch's TransformerEncoder, causal, 2 layers, width 256, learned positions, pre-norm
  plain-post-norm  the same, post-norm
Prints loss and accuracy every `--every` steps, side by side (one run: ratios hold on a noisy machine).
"""
from __future__ import annotations

import argparse
import copy
import time

import torch
from torch import nn

from minimax_vl.config import MiniMaxVL01Config
from text_backbone.model import MiniMaxText01ForCausalLM

KEYS, VALUES, PAIRS, SEP = range(100, 500), range(600, 1000), 6, 5
VOCAB = 1024


def recall_batch(generator: torch.Generator, n: int = 64) -> torch.Tensor:
    """[n, 2 * PAIRS + 3] token ids; the last one is the value to recall."""
    keys = torch.stack([torch.randperm(len(KEYS), generator=generator)[:PAIRS] for _ in range(n)]) + KEYS.start
    values = torch.randint(VALUES.start, VALUES.stop, (n, PAIRS), generator=generator)
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


def build(name: str) -> nn.Module:
    return {"demo": lambda: DemoDecoder(), "demo-softmax": lambda: DemoDecoder(all_softmax=True),
            "plain-pre-norm": lambda: PlainDecoder(pre_norm=True),
            "plain-post-norm": lambda: PlainDecoder(pre_norm=False)}[name]()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--models", nargs="+", default=["demo", "demo-softmax", "plain-pre-norm", "plain-post-norm"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models, optimizers, seconds = {}, {}, {}
    for name in args.models:
        torch.manual_seed(0)
        models[name] = build(name)
        optimizers[name] = torch.optim.AdamW(models[name].parameters(), lr=args.lr, weight_decay=0.1)
        seconds[name] = 0.0
    generator = torch.Generator().manual_seed(0)
    print("step  " + "  ".join(f"{name:>24}" for name in args.models) + "   (loss / accuracy)")
    window = {name: [] for name in args.models}
    for step in range(1, args.steps + 1):
        ids = recall_batch(generator)
        for name, model in models.items():
            started = time.perf_counter()
            logits = model(ids)[:, -2]  # the prediction of the last token, the recalled value
            loss = nn.functional.cross_entropy(logits, ids[:, -1])
            optimizers[name].zero_grad(set_to_none=True)
            loss.backward()
            optimizers[name].step()
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
