"""How exact a model's facts are: each test question that names entries (reading.question_facts) is answered from
its image's true transcription, and the facts the model writes are compared with the true ones.

    .venv/bin/python -m training.recipes.facts_check runs/reason06_facts_true/final --images 100

Prints, per question type: how many questions name entries, how often the written facts are exactly the true
facts, how often the answer is right, and how often it is right when the facts are exact. Separates the look-up
(writing the named key's value) from what is computed over the facts (docs/MODEL_CARD.md, fifth session).
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch

from minimax_vl.answers import FACTS_MARKER, split_reply
from minimax_vl.data.reading import question_facts
from minimax_vl.data.samples import make_sample
from minimax_vl.data.scoring import is_correct
from minimax_vl.demos.data import demo_generator_config
from minimax_vl.model import MiniMaxVL01
from minimax_vl.vqa import reason_from_true_readings


@dataclass
class FactsTally:
    questions: int = 0
    facts_exact: int = 0
    right: int = 0
    right_when_exact: int = 0


def written_facts(reply: str) -> str:
    """The facts a reply states ("" when it states none)."""
    before, _ = split_reply(reply)
    _, marker, facts = (before or "").rpartition(FACTS_MARKER.strip())
    return facts.strip() if marker else ""


def facts_check(model: MiniMaxVL01, images: int, max_new_tokens: int = 64) -> dict[str, FactsTally]:
    """Tallies per "kind/type" over the test split's first `images` images; the replies come from the reasoning
    check (minimax_vl.vqa.reason_from_true_readings), of which only questions that name entries are counted."""
    config = demo_generator_config("test")
    samples = {sample.id: sample for sample in (make_sample(config, i, draw=False) for i in range(images))}
    records = reason_from_true_readings(model, samples.values(), max_new_tokens=max_new_tokens, progress=False)
    tallies: dict[str, FactsTally] = defaultdict(FactsTally)
    for record in records:
        truth = question_facts(samples[record.sample_id].meta["reading_fields"], record.question)
        if not truth:
            continue
        exact = written_facts(record.reply) == truth
        right = is_correct(record.prediction, record.answer, record.match)
        tally = tallies[f"{record.kind}/{record.question_type}"]
        tally.questions += 1
        tally.facts_exact += exact
        tally.right += right
        tally.right_when_exact += exact and right
    return dict(sorted(tallies.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="model folder")
    parser.add_argument("--images", type=int, default=100, help="test images (default 100)")
    args = parser.parse_args(argv)
    model = MiniMaxVL01.from_pretrained(args.model, dtype=torch.float32).eval()
    tallies = facts_check(model, args.images)
    print(f"{'question type':22s} {'questions':>9s} {'facts exact':>12s} {'right':>7s} {'right | exact':>14s}")
    for name, t in tallies.items():
        print(f"{name:22s} {t.questions:9d} {100 * t.facts_exact / t.questions:11.1f}% "
              f"{100 * t.right / t.questions:6.1f}% {t.right_when_exact:6d} of {t.facts_exact:<5d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
