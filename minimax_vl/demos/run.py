"""`make demo`: fresh charts and maps, questions, the model's answers, a running score and an HTML report.

    .venv/bin/python -m minimax_vl.demos.run                     # default: 6 new images, report in outputs/demo/
    .venv/bin/python -m minimax_vl.demos.run --seed 7            # the same 6 images on every run
    .venv/bin/python -m minimax_vl.demos.run --model DIR --images 20 --out outputs/demo

Images come from the package's own generators with seeds from the test split, never seen in training. Each run
draws a new stretch of the split and prints its --seed, so a run worth showing again can be repeated.
Without --model it uses the demo model shipped in the package when there is one, and otherwise a randomly
initialised `tiny` model, saying so: the pipeline then runs end to end but its answers are noise.
"""
from __future__ import annotations

import argparse
import base64
import html
import io
import random
import secrets
import sys
import time
from pathlib import Path

import torch

from minimax_vl.answers import MAX_REPLY_TOKENS
from minimax_vl.data.samples import make_sample
from minimax_vl.data.scoring import draw_report_chart, format_report_table, score_predictions
from minimax_vl.demos.data import DEMO_INDEX_SPAN, DEMO_START_INDEX, demo_generator_config
from minimax_vl.model import MiniMaxVL01
from minimax_vl.vqa import answer_records, questions_of


def load_demo_model(path: str | None) -> tuple[MiniMaxVL01, str]:
    if path:
        return MiniMaxVL01.from_pretrained(path), f"model from {path}"
    import minimax_vl

    shipped = getattr(minimax_vl, "DEMO_MODEL", None)
    if shipped is not None and Path(shipped, "config.json").exists():
        return MiniMaxVL01.from_pretrained(shipped), f"the shipped demo model ({shipped})"
    return MiniMaxVL01.from_preset("tiny"), ("a RANDOMLY INITIALISED tiny model: no trained demo model ships yet, so "
                                             "the answers below are noise; the point is the pipeline running end to end")


def demo_start_index(seed: int) -> int:
    """The first test-split sample a demo run with this seed shows: a pure function of the seed, in
    [DEMO_START_INDEX, DEMO_START_INDEX + DEMO_INDEX_SPAN), so demos never show the images evaluation scores."""
    return DEMO_START_INDEX + random.Random(f"demo:{seed}").randrange(DEMO_INDEX_SPAN)


def _image_html(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return f'<img src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}" width="320">'


def write_html(path: Path, title: str, what: str, by_sample: dict, report: dict) -> None:
    chart = io.BytesIO()
    draw_report_chart(report).save(chart, format="PNG")
    rows = []
    for records in by_sample.values():
        answers = "".join(
            f"<tr><td>{html.escape(r.question)}</td><td>{html.escape(r.prediction or '')}</td>"
            f"<td>{html.escape(r.answer)}</td><td>{'✔' if ok else '✘'}</td></tr>"
            for r, ok in records
        )
        # What the model read before its first answer: the same image gives (nearly) the same transcription
        # for every question, so one per image shows what it saw.
        reading = next((r.reading for r, _ in records if r.reading), None)
        seen = (f"<p class='reading'><b>What the model read:</b> {html.escape(reading)}</p>" if reading else "")
        rows.append(f"<div class='sample'>{_image_html(records[0][0].image)}<div>{seen}<table><tr><th>question</th>"
                    f"<th>model</th><th>correct</th><th></th></tr>{answers}</table></div></div>")
    overall = report["overall"]
    path.write_text(
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em} .sample{display:flex;gap:1em;margin:1em 0}"
        " td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left}"
        " .reading{max-width:46em;font-family:monospace;background:#f6f6f6;padding:6px}</style>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(what)}</p>"
        f"<p><b>{overall['correct']} / {overall['total']} correct ({100 * overall['accuracy']:.1f}%)</b></p>"
        f"<img src='data:image/png;base64,{base64.b64encode(chart.getvalue()).decode()}'>"
        + "".join(rows)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="checkpoint folder (default: the shipped demo model, else a random tiny one)")
    parser.add_argument("--images", type=int, default=6, help="how many generated images to ask about (default 6)")
    parser.add_argument("--seed", type=int, default=None,
                        help="pick the images from this seed, the same on every run (default: a new seed each run)")
    parser.add_argument("--start", type=int, default=None,
                        help="first test-split sample index, instead of one picked from the seed")
    parser.add_argument("--out", default="outputs/demo", help="folder for report.html (default outputs/demo)")
    parser.add_argument("--max-new-tokens", type=int, default=MAX_REPLY_TOKENS,
                        help=f"reply length cap, transcription included (default {MAX_REPLY_TOKENS})")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    if args.start is None:
        seed = secrets.randbelow(1_000_000) if args.seed is None else args.seed
        first, origin = demo_start_index(seed), f"seed {seed}; `--seed {seed}` shows the same images again"
    else:
        first, origin = args.start, f"--start {args.start}"
    model, what = load_demo_model(args.model)
    print(f"Using {what}.")
    print(f"Test-split images {first} to {first + args.images - 1} ({origin}).\n")
    config = demo_generator_config("test")
    by_sample, flat = {}, []
    start = time.perf_counter()
    for index in range(first, first + args.images):
        sample = make_sample(config, index)
        records = questions_of(sample)
        shown_reading = False
        for record in answer_records(model, records, max_new_tokens=args.max_new_tokens, progress=False):
            if record.reading and not shown_reading:
                print(f"[{sample.meta['kind']}] the model read: {record.reading}")
                shown_reading = True
            ok = score_predictions([record.as_score_record()])["overall"]["correct"] == 1
            flat.append(record)
            by_sample.setdefault(sample.id, []).append((record, ok))
            score = sum(o for rs in by_sample.values() for _, o in rs)
            print(f"[{sample.meta['kind']}] Q: {record.question}\n    model: {record.prediction!r}   "
                  f"correct: {record.answer!r}   {'✔' if ok else '✘'}   running score {score}/{len(flat)}")
    report = score_predictions([r.as_score_record() for r in flat])
    print("\n" + format_report_table(report))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_html(out / "report.html", "minimax-vl demo: chart and map questions", f"Model: {what}.", by_sample, report)
    print(f"\n{len(flat)} questions in {time.perf_counter() - start:.1f} s; report: {out / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
