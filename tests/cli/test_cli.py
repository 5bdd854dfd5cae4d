"""The `minimax-vl` command on the random tiny preset (answers are noise; the plumbing is what is tested)."""
import json

import numpy as np
import pytest
from PIL import Image

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
