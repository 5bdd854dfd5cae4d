"""Every subcommand turns the project's own errors into one line on stderr and a non-zero exit; --debug shows
the traceback instead."""
import json

import numpy as np
import pytest
from PIL import Image

from minimax_vl.cli import main
from vision.image_io import ImageLoadError


@pytest.fixture
def image_path(tmp_path):
    path = tmp_path / "image.png"
    Image.fromarray((np.random.default_rng(0).random((40, 60, 3)) * 255).astype("uint8")).save(path)
    return path


@pytest.fixture
def truncated_png(image_path, tmp_path):
    data = image_path.read_bytes()
    path = tmp_path / "truncated.png"
    path.write_bytes(data[: len(data) // 2])
    return path


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("[minimax-vl] using")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_truncated_image_is_one_line_and_exit_1(truncated_png, capsys):
    assert main(["ask", str(truncated_png), "How many?", "--max-new-tokens", "2"]) == 1
    line = _one_error_line(capsys)
    assert line.startswith("minimax-vl ask: error:") and "truncated or corrupt" in line


def test_missing_image(tmp_path, capsys):
    assert main(["ask", str(tmp_path / "nope.png"), "How many?"]) == 1
    assert "no such image file" in _one_error_line(capsys)


def test_chat_with_a_bad_image(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    monkeypatch.setattr("builtins.input", lambda prompt="": "")
    assert main(["chat", str(bad)]) == 1
    assert "is not a readable image" in _one_error_line(capsys)


@pytest.mark.parametrize("command", ["ask", "chat", "eval", "serve"])
def test_bad_model_folder(command, tmp_path, image_path, capsys):
    folder = tmp_path / "not_a_model"
    folder.mkdir()
    args = {"ask": ["ask", str(image_path), "q"], "chat": ["chat", str(image_path)],
            "eval": ["eval", "--generate", "1"], "serve": ["serve"]}[command]
    code = main(args + ["--model", str(folder)])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    if "needs Gradio" not in err:  # serve without the demo extra stops earlier, also with one line
        assert f"cannot load the model from {folder}" in err and "config.json" in err


def test_model_folder_with_broken_config(tmp_path, image_path, capsys):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"text_config": ')
    assert main(["ask", str(image_path), "q", "--model", str(folder)]) == 1
    assert "not valid JSON" in _one_error_line(capsys)


def test_info_with_a_bad_model_folder(tmp_path, capsys):
    assert main(["info", "--model", str(tmp_path / "nowhere")]) == 1
    assert "no config.json" in _one_error_line(capsys)


@pytest.mark.parametrize("content, message", [
    ('{"id": 1, ', "not valid JSON"),
    ('[{"id": 1}]', "neither 'conversations'"),
])
def test_bad_data_file(tmp_path, capsys, content, message):
    data = tmp_path / "data.json"
    data.write_text(content)
    assert main(["eval", "--data", str(data)]) == 1
    assert message in _one_error_line(capsys)


def test_missing_data_file(tmp_path, capsys):
    assert main(["eval", "--data", str(tmp_path / "missing.json")]) == 1
    assert "no such data file" in _one_error_line(capsys)


def test_data_without_questions(tmp_path, capsys):
    data = tmp_path / "data.json"
    data.write_text(json.dumps([{"id": "a", "conversations": [{"from": "human", "value": "hi"},
                                                              {"from": "gpt", "value": "hello"}]}]))
    assert main(["eval", "--data", str(data)]) == 1
    assert "no single-image question/answer turns" in _one_error_line(capsys)


@pytest.mark.parametrize("args", [
    ["ask", "x.png", "q", "--max-new-tokens", "0"],
    ["ask", "x.png", "q", "--temperature", "-1"],
    ["ask", "x.png", "q", "--top-p", "0"],
    ["chat", "x.png", "--max-new-tokens", "many"],
    ["eval", "--generate", "0"],
    ["eval", "--split", "nonsense"],
    ["eval", "--image-size", "-5"],
    ["info", "--preset", "nonsense"],
    ["serve", "--port", "70000"],
    ["ask", "x.png"],
    ["frobnicate"],
])
def test_bad_flags_exit_2_with_a_usage_message(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback(truncated_png, where):
    args = ["ask", str(truncated_png), "q"]
    args = ["--debug", *args] if where == "before" else [*args, "--debug"]
    with pytest.raises(ImageLoadError, match="truncated or corrupt"):
        main(args)


def test_the_installed_command_exits_1_with_one_line(truncated_png):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "minimax_vl", "ask", str(truncated_png), "How many?"],
                            capture_output=True, text=True)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if not line.startswith("[minimax-vl] using")]
    assert len(lines) == 1 and "truncated or corrupt" in lines[0], result.stderr
