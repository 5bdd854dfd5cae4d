"""Scoring VQA predictions: relaxed accuracy (the ChartQA rule) and a per-question-type report.

    report = score_predictions([{"prediction": "45%", "answer": "45", "question_type": "value"}, ...])
    write_report(report, "runs/eval")   # prints a table; writes report.json and accuracy.png

Relaxed accuracy: when prediction and answer both read as numbers, the prediction is correct iff
|pred - answer| <= 5 % of |answer| (an answer of 0 needs exactly 0); otherwise the two must match as
text after lowercasing, trimming whitespace and dropping trailing periods. Numbers may carry
thousands separators ("1,000"), a leading currency sign, or a percent sign: "45%" reads as 45, and a
fraction 0.45 is also accepted for an answer written "45%". A record whose "match" is "exact" is
graded by text (or exact numeric) equality instead: years, arithmetic, anything where 5 % is wrong.
"""
from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

from PIL import Image, ImageDraw, ImageFont

RELAXED_TOLERANCE = 0.05
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d*)?")


def normalize_text(text: str) -> str:
    """Lowercase, single spaces, no surrounding whitespace, no trailing periods."""
    return " ".join(str(text).lower().split()).rstrip(".").strip()


def parse_number(text: str) -> tuple[float, bool] | None:
    """(value, had_percent_sign), or None when the text is not a plain number."""
    s = normalize_text(text).replace(" ", "")
    percent = s.endswith("%")
    s = s.rstrip("%").lstrip("$€£")
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    if not _NUMBER.fullmatch(s):
        return None
    return float(s), percent


def _close(prediction: float, answer: float, tolerance: float) -> bool:
    if answer == 0:
        return prediction == 0
    return abs(prediction - answer) <= tolerance * abs(answer)


def relaxed_match(prediction: str, answer: str, tolerance: float = RELAXED_TOLERANCE) -> bool:
    """The ChartQA relaxed-accuracy rule (see the module docstring)."""
    p, a = parse_number(prediction), parse_number(answer)
    if p is not None and a is not None:
        (p_value, _), (a_value, a_percent) = p, a
        if _close(p_value, a_value, tolerance):
            return True
        return a_percent and not p[1] and _close(p_value * 100, a_value, tolerance)  # 0.45 for "45%"
    return normalize_text(prediction) == normalize_text(answer)


def exact_match(prediction: str, answer: str) -> bool:
    """Equal as text after normalisation, or equal as numbers ("3.0" == "3", "1,000" == "1000")."""
    p, a = parse_number(prediction), parse_number(answer)
    if p is not None and a is not None:
        return p[0] == a[0]
    return normalize_text(prediction) == normalize_text(answer)


def is_correct(prediction: str, answer: str, match: str = "relaxed") -> bool:
    if match == "relaxed":
        return relaxed_match(prediction, answer)
    if match == "exact":
        return exact_match(prediction, answer)
    raise ValueError(f"match={match!r}; expected 'relaxed' or 'exact'")


def score_predictions(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Grades records {"prediction", "answer", "question_type", optional "match" ("relaxed"), optional "id",
    optional "reading" and "reply" (kept as they are)}.

    Returns a JSON-ready report: {"overall": {"correct", "total", "accuracy"}, "per_type": {type: {...}},
    "per_kind": {kind: {...}} (the part of the type before "/", e.g. "chart" for "chart/value"),
    "records": [{"id", "question_type", "prediction", "answer", "match", "correct"[, "reading"][, "reply"]}, ...]}.
    """
    graded = []
    for i, record in enumerate(records):
        missing = [k for k in ("prediction", "answer", "question_type") if k not in record]
        if missing:
            raise ValueError(f"record {i} lacks {missing}; each record needs 'prediction', 'answer' and 'question_type'")
        match = record.get("match", "relaxed")
        graded.append({"id": record.get("id", i), "question_type": record["question_type"],
                       "prediction": record["prediction"], "answer": record["answer"], "match": match,
                       "correct": is_correct(str(record["prediction"]), str(record["answer"]), match)})
        for optional in ("reading", "reply"):
            if record.get(optional) is not None:
                graded[-1][optional] = record[optional]
    if not graded:
        raise ValueError("no records to score")
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    kinds: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for g in graded:
        counts[g["question_type"]][0] += g["correct"]
        counts[g["question_type"]][1] += 1
        kind = g["question_type"].split("/")[0]
        kinds[kind][0] += g["correct"]
        kinds[kind][1] += 1

    def summary(correct: int, total: int) -> dict[str, Any]:
        return {"correct": correct, "total": total, "accuracy": correct / total}

    return {
        "overall": summary(sum(g["correct"] for g in graded), len(graded)),
        "per_type": {t: summary(*counts[t]) for t in sorted(counts)},
        "per_kind": {k: summary(*kinds[k]) for k in sorted(kinds)},
        "records": graded,
    }


def format_report_table(report: dict[str, Any]) -> str:
    kinds = report.get("per_kind", {})
    per_kind = [(f"all {k}", s) for k, s in kinds.items()] if len(kinds) > 1 else []
    rows = [(t, s) for t, s in report["per_type"].items()] + per_kind + [("overall", report["overall"])]
    width = max(len("question type"), *(len(t) for t, _ in rows))
    lines = [f"{'question type':<{width}}  {'accuracy':>8}  {'correct':>7}  {'total':>6}",
             f"{'-' * width}  {'-' * 8}  {'-' * 7}  {'-' * 6}"]
    for i, (name, s) in enumerate(rows):
        if i == len(rows) - 1:
            lines.append(lines[1])
        lines.append(f"{name:<{width}}  {100 * s['accuracy']:>7.1f}%  {s['correct']:>7}  {s['total']:>6}")
    return "\n".join(lines)


def draw_report_chart(report: dict[str, Any]) -> Image.Image:
    """Horizontal bars of accuracy per question type, overall last, drawn with Pillow alone."""
    rows = list(report["per_type"].items()) + [("overall", report["overall"])]
    font = ImageFont.load_default(size=14)
    bold = ImageFont.load_default(size=16)
    name_width = max(int(font.getlength(name)) for name, _ in rows) + 16
    bar_area, row_height, top = 360, 26, 40
    width, height = name_width + bar_area + 70, top + row_height * len(rows) + 30
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((width // 2, 12), "Accuracy by question type", font=bold, fill="#111111", anchor="mt")
    for tick in range(0, 101, 25):
        x = name_width + bar_area * tick / 100
        draw.line([(x, top - 4), (x, height - 24)], fill="#dddddd")
        draw.text((x, height - 20), f"{tick}%", font=font, fill="#555555", anchor="mt")
    for i, (name, s) in enumerate(rows):
        y = top + i * row_height
        colour = "#d62728" if name == "overall" else "#1f77b4"
        draw.text((name_width - 8, y + row_height / 2), name, font=font, fill="#111111", anchor="rm")
        draw.rectangle([name_width, y + 4, name_width + bar_area * s["accuracy"], y + row_height - 4], fill=colour)
        draw.text((name_width + bar_area * s["accuracy"] + 6, y + row_height / 2), f"{100 * s['accuracy']:.1f}%",
                  font=font, fill="#111111", anchor="lm")
    return image


def write_report(report: dict[str, Any], out_dir: str | Path, *, print_table: bool = True) -> dict[str, Path]:
    """Writes report.json and accuracy.png into out_dir (created if needed); prints the table."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "chart": out_dir / "accuracy.png"}
    paths["json"].write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    draw_report_chart(report).save(paths["chart"])
    if print_table:
        print(format_report_table(report))
        if "reading" in report:
            print(format_reading_line(report["reading"]))
        if "reasoning" in report:
            kinds = "; ".join(f"{k} {100 * v['accuracy']:.1f}%" for k, v in report["reasoning"]["per_kind"].items())
            print(f"reasoning from the true transcription (no image): "
                  f"{100 * report['reasoning']['overall']['accuracy']:.1f}%; {kinds}")
    return paths


def format_reading_line(reading: dict[str, Any]) -> str:
    """One line per image kind for the reading probe (`minimax_vl.vqa.reading_report`)."""
    parts = [f"{kind} {100 * s['accuracy']:.1f}% ({s['correct']}/{s['fields']} fields, {s['perfect_images']}/"
             f"{s['images']} images perfect)" for kind, s in reading["by_kind"].items()]
    overall = reading["overall"]
    return f"reading probe: {100 * overall['accuracy']:.1f}% of fields exact; " + "; ".join(parts)
