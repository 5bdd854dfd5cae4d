"""How models answer one question type from the true transcription, and how their worked steps are marked: the
measurement behind each change of a worked-step form (minimax_vl/data/reading.py, worked_steps).

    .venv/bin/python benchmarks/worked_steps_probe.py runs/read13/stage4/final runs/drill/final
    .venv/bin/python benchmarks/worked_steps_probe.py MODEL --type largest_slice --images 200 --show 5

Each model gets the same `--images` test scenes (the `drill` sample kind's: only scenes with a question of the
type, every question of that type); each question is asked with the scene's true transcription as the model's
own first reply, so what is measured is the reasoning after reading, as in `minimax-vl eval --reasoning-only`.
Prints, per model: accuracy, and for intersections how many scans mark every entry right: "on" exactly on the
asked street, "is" exactly on the asked corner (both forms: "Gym at Elm St on Opal Ave" and the older "Gym at
Elm St and Opal Ave on"), and how many mark the first entry of the scan as the corner.

A drill to test a new form on (200 steps, ~5 minutes on 2 cores; the ninth session's comparison, docs/MODEL_CARD.md):

    .venv/bin/accelerate launch --config_file training/configs/accelerate/cpu_2proc.yaml -m training.train \\
      --stage 2 --output runs/drill --max-steps 200 --init runs/read13/stage4/final --preset demo \\
      --global-batch-size 16 --micro-batch-size 8 --max-length 768 --no-packing --num-threads 1 \\
      --set data.read_first=true --set data.facts=true --set data.worked_steps=true --set data.difficulty=easy \\
      --set data.image_size=192 --set data.font_scale=1.3 \\
      --set data.first_sample=300000 --set 'data.mix=[[drill, 1]]' --set 'data.question_types=[intersection]' \\
      --set 'trainable=[language_model]' --set schedule.kind=wsd --set schedule.warmup_steps=20 \\
      --set 'learning_rates={vision_tower: 0.0, multi_modal_projector: 0.0, image_newline: 0.0, language_model: 1.0e-3}'
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minimax_vl.data.reading import AT_ASKED_CORNER, ON_ASKED_STREET, split_reply  # noqa: E402
from minimax_vl.data.samples import GeneratorConfig, make_sample  # noqa: E402
from minimax_vl.data.scoring import is_correct  # noqa: E402


def scan_entries(reply: str) -> list[str]:
    """The scanned landmarks of an intersection reply ("Gym at Elm St on Opal Ave"), without the head."""
    facts = reply.split("Facts:")[-1].split("\nAnswer")[0].strip()
    return [entry for entry in re.split(r"(?<=[.;]) ", facts) if " at " in entry]


def intersection_marks(question: str, reply: str) -> dict[str, bool]:
    """Whether every "on" and every "is" of one scan is where it belongs, and whether only the first is marked."""
    street, avenue = question.removeprefix("What is at the corner of ").rstrip("?").split(" and ")
    entries = [entry.rstrip(".;") for entry in scan_entries(reply)]
    words = [entry.split(" at ", 1)[1].split() for entry in entries]  # "Elm St on Opal Ave is Gym" as words
    on_street = [" ".join(w[:2]) == street for w in words]
    on_corner = [s and avenue in " ".join(w) for s, w in zip(on_street, words)]
    has_on = [ON_ASKED_STREET in w for w in words]
    has_is = [AT_ASKED_CORNER in w for w in words]
    return {"on right": bool(entries) and has_on == on_street, "is right": bool(entries) and has_is == on_corner,
            "first only": bool(entries) and has_is == [True] + [False] * (len(entries) - 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="model folders (processor files beside the weights)")
    parser.add_argument("--type", default="intersection", help="question type (default intersection)")
    parser.add_argument("--images", type=int, default=100, help="test scenes (default 100)")
    parser.add_argument("--show", type=int, default=2, help="replies printed per model (default 2)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import torch

    from minimax_vl.model import MiniMaxVL01
    from minimax_vl.vqa import reason_from_true_readings

    torch.set_num_threads(args.threads)
    # drill samples draw only the image kinds asked this type (both for "count")
    config = GeneratorConfig(split="test", sample_kinds=(("drill", 1.0),), difficulty="easy", image_size=192,
                             font_scale=1.3, question_types=(args.type,))
    samples = [make_sample(config, index, draw=False) for index in range(args.images)]
    for sample in samples:
        sample.images.append(None)  # the question's image slot (never drawn): questions_of reads one-image samples
    for path in args.models:
        model = MiniMaxVL01.from_pretrained(path).eval()
        records = [r for r in reason_from_true_readings(model, samples, max_new_tokens=128, progress=False)
                   if r.question_type == args.type]
        right = sum(is_correct(r.prediction, r.answer, r.match) for r in records)
        line = (f"{path}: {args.type} from the true transcription {right}/{len(records)} = "
                f"{100 * right / len(records):.1f}%")
        if args.type == "intersection":
            marks = [intersection_marks(r.question, r.reply) for r in records]
            line += "; " + "; ".join(f"{key}: {sum(m[key] for m in marks)}" for key in marks[0])
        print(line, flush=True)
        for record in records[: args.show]:
            print(f"  {record.question} -> {split_reply(record.reply.strip())[0]!r} -> {record.prediction!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
