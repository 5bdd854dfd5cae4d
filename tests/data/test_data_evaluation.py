"""Relaxed-accuracy scorer (ChartQA rule) edge cases, and the report writer."""
import json

import pytest
from PIL import Image

from minimax_vl.data.scoring import (
    exact_match,
    format_report_table,
    is_correct,
    parse_number,
    relaxed_match,
    score_predictions,
    write_report,
)

# (prediction, answer, relaxed verdict)
CASES = [
    ("45%", "45", True), ("45", "45%", True), ("45 %", "45%", True), ("0.45", "45%", True), ("0.45", "45", False),
    ("1,000", "1000", True), ("1000", "1,000", True), ("1,040", "1000", True), ("1,060", "1,000", False),
    ("0", "0", True), ("0.0", "0", True), ("0.01", "0", False), ("-0", "0", True),
    ("3.0", "3", True), ("3", "3.0", True), ("3.2", "3", False),  # 3.2 is 6.7 % off
    ("95", "100", True), ("94.9", "100", False), ("105", "100", True), ("-10", "10", False), ("-10.4", "-10", True),
    ("Pear.", "pear", True), ("  Pear \n", "Pear", True), ("pears", "pear", False), ("42.", "42", True),
    ("Yes", "yes", True), ("yes.", "Yes", True), ("no", "Yes", False), ("YES", "yes", True),
    ("north east", "northeast", False), ("Go 2 blocks east.", "go 2 blocks east", True),
    ("$1,200", "1200", True), ("", "0", False), ("1.2.3", "1.2.3", True), ("abc", "12", False),
]


@pytest.mark.parametrize("prediction, answer, verdict", CASES)
def test_relaxed_accuracy_edge_cases(prediction, answer, verdict):
    assert relaxed_match(prediction, answer) is verdict


@pytest.mark.parametrize("prediction, answer, verdict", [
    ("2014", "2014", True), ("2010", "2014", False), ("2014.0", "2014", True), ("1,000", "1000", True),
    ("68", "67", False), ("Pear.", "pear", True),
])
def test_exact_match_for_years_and_arithmetic(prediction, answer, verdict):
    assert exact_match(prediction, answer) is verdict
    assert is_correct(prediction, answer, "exact") is verdict


def test_number_parsing():
    assert parse_number("1,234.5") == (1234.5, False)
    assert parse_number("12%") == (12.0, True)
    assert parse_number("1,23") is None  # not a thousands grouping
    assert parse_number("nan") is None and parse_number("1e5") is None


RECORDS = [
    {"prediction": "45", "answer": "45%", "question_type": "value"},
    {"prediction": "50", "answer": "45", "question_type": "value"},
    {"prediction": "Pear", "answer": "pear", "question_type": "largest"},
    {"prediction": "2010", "answer": "2014", "question_type": "largest", "match": "exact"},
    {"prediction": "north", "answer": "north", "question_type": "direction", "id": "m-1"},
]


def test_score_predictions_per_type_and_overall():
    report = score_predictions(RECORDS)
    assert report["overall"] == {"correct": 3, "total": 5, "accuracy": 0.6}
    assert report["per_type"]["value"] == {"correct": 1, "total": 2, "accuracy": 0.5}
    assert report["per_type"]["largest"]["correct"] == 1
    assert report["per_type"]["direction"]["accuracy"] == 1.0
    assert [r["correct"] for r in report["records"]] == [True, False, True, False, True]
    assert report["records"][4]["id"] == "m-1"


def test_bad_records_are_rejected():
    with pytest.raises(ValueError, match=r"record 0 lacks \['question_type'\]"):
        score_predictions([{"prediction": "1", "answer": "1"}])
    with pytest.raises(ValueError, match="match='fuzzy'"):
        score_predictions([{"prediction": "1", "answer": "1", "question_type": "x", "match": "fuzzy"}])
    with pytest.raises(ValueError, match="no records"):
        score_predictions([])


def test_write_report(tmp_path, capsys):
    report = score_predictions(RECORDS)
    paths = write_report(report, tmp_path / "eval")
    table = capsys.readouterr().out
    assert "overall" in table and "60.0%" in table and "direction" in table
    assert table.strip() == format_report_table(report)
    assert json.loads(paths["json"].read_text())["overall"]["accuracy"] == 0.6
    chart = Image.open(paths["chart"])
    assert chart.format == "PNG" and chart.width > 300
    # The overall bar (red, last row) is drawn 60 % of the way across the bar area.
    pixels = chart.convert("RGB")
    assert any(pixels.getpixel((x, chart.height - 40)) == (214, 39, 40) for x in range(chart.width))
