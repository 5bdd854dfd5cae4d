"""A freshly initialised model folder to train from, with text-config fields changed where a recipe needs it.

    .venv/bin/python -m training.recipes.fresh_model --output runs/fresh_demo06 --initializer-range 0.06 --seed 1
    LR=1e-3 WARMUP=100 MAX_QUESTIONS=8 STEPS=600 INIT=runs/fresh_demo06 OUT=runs/reason06 \\
        bash training/recipes/reasoning_text.sh

Why a wider start for the language model: in benchmarks/in_context_recall.py the demo decoder learned exact
in-context look-up only with initializer_range 0.06 and lr 1e-3 together, and on reasoning documents such a
decoder reached 56.7% on the reasoning check in 600 steps (48 minutes) where the preset's 0.02 at 3e-4 had 53.2%
after 1,000 (98 minutes; same 100 test images; docs/MODEL_CARD.md). The field only says how fresh weights are
drawn: the math is the preset's, and training.recipes.swap_language_model accepts such a language model beside
any vision side of the same preset. The preset keeps 0.02 (the released model's value); this script is how a
recipe asks for another.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from minimax_vl.config import MiniMaxVL01Config
from minimax_vl.model import MiniMaxVL01
from minimax_vl.processor import MiniMaxVL01Processor
from minimax_vl.tokenizer import MiniMaxTokenizer
from text_backbone.weights_io import replace_folder, temporary_folder


def fresh_model(preset: str, initializer_range: float | None, seed: int,
                tokenizer: MiniMaxTokenizer | None = None) -> MiniMaxVL01:
    config = MiniMaxVL01Config.from_preset(preset)
    if tokenizer is not None and tokenizer.vocab_size > config.text_config.vocab_size:
        raise SystemExit(f"the tokenizer has {tokenizer.vocab_size} tokens but the '{preset}' preset's embedding has "
                         f"{config.text_config.vocab_size} rows; train it with a smaller --vocab-size")
    if initializer_range is not None:
        if not initializer_range > 0:
            raise SystemExit(f"--initializer-range must be positive, got {initializer_range}")
        config.text_config = dataclasses.replace(config.text_config, initializer_range=initializer_range)
    torch.manual_seed(seed)
    return MiniMaxVL01(config, processor=MiniMaxVL01Processor.for_config(config, tokenizer))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, required=True, help="the model folder to write")
    parser.add_argument("--preset", default="demo", help="architecture preset (default: demo)")
    parser.add_argument("--initializer-range", type=float, default=None,
                        help="std of the language model's fresh weights (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tokenizer", type=Path, default=None,
                        help="a tokenizer.json (or its folder) to ship with the model instead of the package's, e.g. "
                             "one from `python -m training.data.tokenizer --digits isolated --out DIR/tokenizer.json`")
    args = parser.parse_args(argv)
    tokenizer = MiniMaxTokenizer.from_file(args.tokenizer) if args.tokenizer else None
    model = fresh_model(args.preset, args.initializer_range, args.seed, tokenizer)
    temp = temporary_folder(args.output)
    model.save_pretrained(temp)
    replace_folder(temp, args.output)
    print(f"wrote {args.output}: fresh '{args.preset}' model, language model drawn at "
          f"initializer_range {model.config.text_config.initializer_range}, seed {args.seed}, tokenizer "
          f"{args.tokenizer or 'the package default'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
