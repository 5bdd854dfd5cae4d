"""The `minimax-vl` command on the random tiny preset (answers are noise; the plumbing is what is tested)."""
import json

import numpy as np
import pytest
from PIL import Image

from minimax_vl.answers import split_reply
from minimax_vl.cli import build_parser, main


@pytest.fixture
def image_path(tmp_path):
    path = tmp_path / "image.png"
    Image.fromarray((np.random.default_rng(0).random((90, 120, 3)) * 255).astype("uint8")).save(path)
    return path


def test_help_lists_every_command():
    text = build_parser().format_help()
    for command in ("ask", "chat", "eval", "info"):
        assert command in text


def test_info_prints_released_parameter_counts(capsys):
    assert main(["info", "--preset", "minimax-vl-01"]) == 0
    out = capsys.readouterr().out
    assert "303,505,408" in out and "44,052,480" in out and "softmax at [7, 15" in out


def test_ask_streams_an_answer(image_path, capsys):
    assert main(["ask", str(image_path), "What is shown?", "--max-new-tokens", "4"]) == 0
    out = capsys.readouterr().out
    assert out.endswith("\n") and len(out.strip()) > 0


def test_ask_with_a_broken_image_says_what_is_wrong(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")

    assert main(["ask", str(bad), "What is shown?", "--max-new-tokens", "2"]) == 1
    assert "is not a readable image" in capsys.readouterr().err


def test_eval_on_generated_data_writes_report(tmp_path):
    out = tmp_path / "eval"
    assert main(["eval", "--generate", "1", "--out", str(out), "--max-new-tokens", "3", "--image-size", "224", "--difficulty", "easy"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["overall"]["total"] >= 1 and (out / "accuracy.png").exists()


def test_eval_reports_the_reading_probe_and_per_kind_accuracy(tmp_path):
    out = tmp_path / "eval"
    assert main(["eval", "--generate", "2", "--out", str(out), "--max-new-tokens", "3"]) == 0
    report = json.loads((out / "report.json").read_text())
    reading = report["reading"]
    assert reading["overall"]["images"] == 2 and reading["overall"]["fields"] > 10
    assert set(reading["by_kind"]) <= {"chart", "map"} and len(reading["records"]) == 2
    assert set(report["per_kind"]) <= {"chart", "map"}
    assert sum(k["total"] for k in report["per_kind"].values()) == report["overall"]["total"]
    assert report["reasoning"]["overall"]["total"] == report["overall"]["total"]
    assert main(["eval", "--generate", "1", "--out", str(out), "--max-new-tokens", "2", "--no-probe",
                 "--no-reasoning"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert "reading" not in report and "reasoning" not in report


def test_eval_reasoning_only_answers_from_the_true_transcription_without_images(tmp_path, monkeypatch, capsys):
    import minimax_vl.vqa as vqa

    def no_images(*args, **kwargs):
        raise AssertionError("--reasoning-only must not answer from images")

    monkeypatch.setattr(vqa, "answer_records", no_images)
    monkeypatch.setattr(vqa, "read_images", no_images)
    out = tmp_path / "eval"
    assert main(["eval", "--generate", "2", "--out", str(out), "--max-new-tokens", "3", "--reasoning-only"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["reasoning_only"] is True and report["overall"]["total"] >= 2 and "reading" not in report
    # Each record keeps the model's whole reply (its facts), so a wrong answer shows where it went wrong.
    assert all(split_reply(r["reply"])[1] == r["prediction"] for r in report["records"])
    assert "reasoning only" in capsys.readouterr().out
    data = tmp_path / "data.json"
    data.write_text("[]")
    assert main(["eval", "--data", str(data), "--reasoning-only"]) == 1
    assert "needs generated images" in capsys.readouterr().err


def test_read_first_replies_are_split_into_reading_and_answer(monkeypatch):
    """A model that reads first: eval grades the short answer and keeps the transcription beside it."""
    import minimax_vl.engine as engine
    from minimax_vl.data.samples import GeneratorConfig, make_sample
    from minimax_vl.model import MiniMaxVL01
    from minimax_vl.vqa import answer_records, questions_of

    sample = make_sample(GeneratorConfig(split="test", difficulty="easy", image_size=192, read_first=True), 0)
    records = questions_of(sample)
    assert records and all("Answer:" not in r.answer for r in records)  # truth is the short answer
    monkeypatch.setattr(engine, "vl_answer_many",
                        lambda model, state, prompts, **kw: [f"Chart: pie.\nAnswer: {r.answer}" for r in records])
    answered = list(answer_records(MiniMaxVL01.from_preset("tiny"), records, progress=False))
    assert [r.prediction for r in answered] == [r.answer for r in records]
    assert all(r.reading == "Chart: pie." for r in answered)
