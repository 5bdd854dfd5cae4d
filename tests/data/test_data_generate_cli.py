"""The dataset CLI: LLaVA JSON + PNGs, readable by the format readers, equal to the streaming samples."""
import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

from minimax_vl.chat_template import render
from minimax_vl.data.formats import read_dataset
from minimax_vl.data.samples import STAGE_MIXES, GeneratorConfig, make_sample
from training.data.generate import main

ROOT = Path(__file__).resolve().parents[2]


def test_cli_writes_a_llava_dataset_matching_the_streaming_samples(tmp_path, capsys):
    main(["--out", str(tmp_path), "--split", "val", "--num-images", "24", "--kinds", "chart,map", "--image-size", "224",
          "--workers", "2", "--stage", "2", "--difficulty", "easy", "--no-progress"])
    assert "wrote 24 records" in capsys.readouterr().out
    records = json.loads((tmp_path / "data.json").read_text())
    assert len(records) == 24
    samples = read_dataset(tmp_path / "data.json", image_root=tmp_path)
    config = GeneratorConfig(split="val", sample_kinds=STAGE_MIXES[2], image_size=224, difficulty="easy")
    for index, (record, sample) in enumerate(zip(records, samples)):
        assert record["meta"]["kind"] in ("chart", "map", "text")
        assert len(record["meta"]["question_types"]) == len(record["conversations"]) // 2
        streamed = make_sample(config, index)
        assert render(sample.messages) == render(streamed.messages)
        if sample.images:
            assert record["conversations"][0]["value"].startswith("<image>\n")
            on_disk = Image.open(sample.images[0])
            assert on_disk.size == streamed.images[0].size and max(on_disk.size) == 224
            assert on_disk.convert("RGB").tobytes() == streamed.images[0].tobytes()
        else:
            assert "image" not in record


def test_cli_help_and_bad_arguments():
    run = subprocess.run([sys.executable, "-m", "training.data.generate", "--help"], cwd=ROOT, capture_output=True,
                         text=True)
    assert run.returncode == 0 and "--num-images" in run.stdout and "--workers" in run.stdout
    run = subprocess.run([sys.executable, "-m", "training.data.generate", "--out", "/tmp/x", "--num-images", "1",
                          "--sample-kinds", "captions"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 2 and "unknown sample kind 'captions'" in run.stderr
