"""The demo model shipped in the package: present, small, in the released layout, and it answers questions.

The model reads first: its reply transcribes the image, then gives "Answer: ...", so the test lets it write a
whole reply. The accuracy floor sits above what the previous shipped model scored on the same fixed sample and a
few questions below what this one scores (see the comment at the assert), so it fails when the shipped weights are
missing, truncated, mis-loaded, replaced by an untrained model (~0) or by the previous model.
"""
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import minimax_vl
from minimax_vl.answers import MAX_REPLY_TOKENS
from minimax_vl.data.samples import make_sample
from minimax_vl.data.scoring import score_predictions
from minimax_vl.demos.data import demo_generator_config
from minimax_vl.model import MiniMaxVL01
from minimax_vl.vqa import answer_records, questions_of

DEMO = Path(minimax_vl.DEMO_MODEL)


@pytest.fixture(scope="module")
def demo_model():
    return MiniMaxVL01.from_pretrained(DEMO)


def test_demo_model_is_shipped_small_and_in_the_released_layout():
    files = sorted(p.name for p in DEMO.iterdir())
    for name in ("config.json", "tokenizer.json", "preprocessor_config.json", "model.safetensors"):
        assert name in files, f"{name} missing from {DEMO}: export it with training.recipes.export_demo"
    assert (DEMO / "model.safetensors").stat().st_size <= 25 * 2**20
    with safe_open(str(DEMO / "model.safetensors"), framework="pt") as f:
        keys = list(f.keys())
        dtypes = {f.get_slice(k).get_dtype() for k in keys}
    assert dtypes == {"F16"}
    assert any(k.startswith("vision_tower.vision_model.encoder.layers.") for k in keys)  # CLIP names, not timm's
    assert any(k.startswith("language_model.model.layers.") for k in keys)
    config = json.loads((DEMO / "config.json").read_text())
    assert config["model_type"] == "minimax_vl_01"
    assert set(config["text_config"]["attn_type_list"]) == {0, 1}  # hybrid: lightning and softmax layers


def test_demo_model_loads_in_float32_and_answers_above_an_untrained_model(demo_model):
    assert {p.dtype for p in demo_model.parameters()} == {torch.float32}
    config = demo_generator_config("test")
    records = [r for i in range(60) for r in questions_of(make_sample(config, i))]
    with torch.inference_mode():
        answered = list(answer_records(demo_model, records, max_new_tokens=MAX_REPLY_TOKENS, progress=False))
    report = score_predictions([r.as_score_record() for r in answered])
    assert report["overall"]["total"] == 142
    # Measured on this sample (60 images, 142 questions): 93.7% (133/142) for this model (ninth session, read14),
    # 90.1% (128/142) for the previous shipped model (read13). The sample had 30 images (72 questions) until then,
    # where read14 and read13 both scored 65/72; before them: read12 63/72, then 55/72, 51/72, 43/72, 32/72, and
    # 20/72 for the first model (which answered directly), 0 for an untrained one. The floor, 131/142, is above the
    # previous model and leaves 2 questions for another CPU's rounding.
    assert report["overall"]["accuracy"] >= 131 / 142, report["per_type"]


def test_demo_model_is_what_the_demos_load_by_default():
    from minimax_vl.demos.run import load_demo_model

    model, what = load_demo_model(None)
    assert "shipped demo model" in what and str(DEMO) in what
    assert model.config.vision_config.image_size == 96
