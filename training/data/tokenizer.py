"""The project's small byte-level BPE tokenizer, trained on generated chart/map/text data.

    python -m training.data.tokenizer --out minimax_vl/assets/tokenizer.json

Byte-level BPE like MiniMax's own (SPEC_NOTES §5.7) but with a ~3k vocabulary, sized for tiny models trained on
this project's synthetic data. Digits are split one per token before the byte-level step, so numbers are
read and written digit by digit. How the character before a number is tokenized is `--digits`:

    attached   (the default and the shipped tokenizer since 2026-12-07) a space or an opening parenthesis joins
               the first digit: "Yak 15" -> ĠYak Ġ1 5, "Shop (3, 2)" -> Shop Ġ(3 , Ġ2 )
    isolated   (before; the tokenizer of demo models trained until then, which carry their own copy)
               ĠYak Ġ 1 5, Shop Ġ( 3 , Ġ 2 )

Why `attached`: looking a number up after its label is the demo model's weakest skill, and a constant token
between the label and the digits (the lone Ġ) is what blocks it. In benchmarks/in_context_recall.py
(--queries 6 --value-digits 2, demo decoder at 0.06 / 1e-3) values written "key Ġ d d" stayed at the
bag-of-context level (41.7% at step 800) while "key d d" reached 83% at step 250.

The chat template's special tokens (`<image>` included) are single
tokens with ids 0..4; their released ids (e.g. `<image>` = 200025) belong to the 200k-token original and
do not apply here. The corpus covers the train AND heldout word lists, so heldout labels are encodable
with ordinary merges. Training is deterministic: the same command writes the same file.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Iterator

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from minimax_vl.chat_template import SPECIAL_TOKENS, render
from minimax_vl.data.samples import SAMPLE_KINDS, GeneratorConfig, make_sample
from minimax_vl.data.vocab import VOCABULARIES

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "minimax_vl" / "assets" / "tokenizer.json"
DEFAULT_VOCAB_SIZE = 3072
DIGITS = "0123456789"


def tokenizer_corpus(samples_per_setting: int = 600) -> Iterator[str]:
    """Rendered conversations of every sample kind, for train and heldout vocabularies at both difficulties,
    plus every label word in three casings (so rare words still get merges)."""
    for vocab in VOCABULARIES.values():
        words = sorted(vocab.label_words())
        # Also in capitals (the "uppercase" text task) and lower case (labels inside sentences).
        yield " ".join(words) + "\n" + " ".join(w.upper() for w in words) + "\n" + " ".join(w.lower() for w in words)
    # Every digit after a space, "(" and " (", so the `attached` mode has a token for each even where the data has
    # no such number (map grids stop at 5): " 0 1 ... 9", " (0 (1 ... (9", "(0(1...(9".
    yield " " + " ".join(DIGITS) + "\n (" + " (".join(DIGITS) + "\n(" + "(".join(DIGITS)
    # drill samples are reasoning samples with fewer question types: nothing new to tokenize (and leaving them out
    # keeps the corpus, and so the shipped tokenizer, what it was before the kind existed).
    mix = tuple((kind, 1.0) for kind in SAMPLE_KINDS if kind != "drill")
    for split in ("train", "heldout"):
        for difficulty in ("easy", "normal"):
            # read_first and facts: the transcription, "Facts:" and "Answer:" of read-then-answer replies too
            config = GeneratorConfig(split=split, difficulty=difficulty, sample_kinds=mix, read_first=True,
                                     facts=True)
            for index in range(samples_per_setting):
                sample = make_sample(config, index, draw=False)
                yield render(sample.messages)
                if sample.rejected:
                    yield sample.rejected


DIGIT_MODES = ("isolated", "attached")
# GPT-2's split (contractions, letters, other symbols, whitespace) with one digit per piece first, each taking a
# space and/or "(" before it along: " (3" is one piece, so a number's first token follows its label directly.
_ATTACHED_DIGITS = r"(?: \(| |\()?\p{N}|'(?:s|t|re|ve|m|ll|d)| ?\p{L}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"


def pre_tokenizer(digits: str = "attached") -> pre_tokenizers.PreTokenizer:
    """How text is cut before BPE merges (see the module docstring for the two `digits` modes)."""
    if digits == "isolated":
        return pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ])
    if digits == "attached":
        return pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(_ATTACHED_DIGITS), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),  # the split above is the regex
        ])
    raise ValueError(f"digits must be one of {DIGIT_MODES}, got {digits!r}")


def train_tokenizer(corpus: Iterator[str], vocab_size: int = DEFAULT_VOCAB_SIZE, digits: str = "attached") -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizer(digits)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=1, special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    return tokenizer


def load_tokenizer(path: str | Path | None = None) -> Tokenizer:
    """The shipped tokenizer (or the one at `path`)."""
    path = Path(path) if path is not None else DEFAULT_PATH
    if not path.exists():
        raise FileNotFoundError(f"no tokenizer at {path}; build it with "
                                "`python -m training.data.tokenizer --out minimax_vl/assets/tokenizer.json`")
    return Tokenizer.from_file(str(path))


def save_tokenizer(tokenizer: Tokenizer, path: str | Path) -> None:
    # Compact JSON keeps the shipped file small; sort_keys is not used because merge order matters.
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(json.loads(tokenizer.to_str()), ensure_ascii=False, separators=(",", ":")) + "\n",
                          encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.data.tokenizer", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", default=str(DEFAULT_PATH), help="where to write tokenizer.json")
    parser.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB_SIZE)
    parser.add_argument("--samples-per-setting", type=int, default=600,
                        help="generated samples per (split, difficulty) in the training corpus")
    parser.add_argument("--digits", choices=DIGIT_MODES, default="attached",
                        help="attached: a number's leading space or '(' joins its first digit (the shipped "
                             "tokenizer); isolated: the space is a token of its own (demo models before 2026-12-07)")
    args = parser.parse_args(argv)
    tokenizer = train_tokenizer(tokenizer_corpus(args.samples_per_setting), args.vocab_size, args.digits)
    save_tokenizer(tokenizer, args.out)
    print(f"wrote {args.out}: vocabulary {tokenizer.get_vocab_size()}, special tokens "
          + ", ".join(f"{t}={tokenizer.token_to_id(t)}" for t in SPECIAL_TOKENS))


if __name__ == "__main__":
    main()
