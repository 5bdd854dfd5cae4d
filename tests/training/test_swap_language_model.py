"""training/recipes/swap_language_model.py: the vision side of one model, the language model of another."""
from __future__ import annotations

import pytest
import torch
import yaml
from safetensors.torch import save_file

from minimax_vl.model import MiniMaxVL01
from training.recipes.swap_language_model import LANGUAGE_PREFIX, swap_language_model


def test_the_output_takes_each_side_from_its_source_including_a_trainer_checkpoint(tmp_path):
    MiniMaxVL01.from_preset("tiny", seed=0).save_pretrained(tmp_path / "vision")
    # The language source is a trainer checkpoint whose stage started from a third model folder.
    MiniMaxVL01.from_preset("tiny", seed=1).save_pretrained(tmp_path / "run" / "stage1" / "final")
    checkpoint = tmp_path / "run" / "stage2" / "checkpoints" / "step_000005"
    checkpoint.mkdir(parents=True)
    (tmp_path / "run" / "stage2" / "stage.yaml").write_text(yaml.safe_dump({"stage": 2, "init": "stage1/final"}))
    language = {k: v + 0.25 for k, v in MiniMaxVL01.from_preset("tiny", seed=2).state_dict().items()}
    save_file({k: v.contiguous() for k, v in language.items()}, str(checkpoint / "model.safetensors"))

    swap_language_model(tmp_path / "vision", checkpoint, tmp_path / "out")
    vision = MiniMaxVL01.from_pretrained(tmp_path / "vision", dtype=torch.float32).state_dict()
    out = MiniMaxVL01.from_pretrained(tmp_path / "out", dtype=torch.float32)
    assert out.processor is not None and not (tmp_path / ".tmp-out").exists()
    swapped = 0
    for name, value in out.state_dict().items():
        expected = language[name] if name.startswith(LANGUAGE_PREFIX) else vision[name]
        torch.testing.assert_close(value, expected, rtol=0, atol=0)
        swapped += name.startswith(LANGUAGE_PREFIX)
    assert 0 < swapped < len(vision)


def test_models_with_different_language_architectures_are_refused(tmp_path):
    MiniMaxVL01.from_preset("tiny", seed=0).save_pretrained(tmp_path / "vision")
    other = MiniMaxVL01.from_preset("tiny", seed=0)
    other.config.text_config.rope_theta = 1234.0
    other.save_pretrained(tmp_path / "language")
    with pytest.raises(SystemExit, match="differ in architecture"):
        swap_language_model(tmp_path / "vision", tmp_path / "language", tmp_path / "out")


def test_a_language_model_drawn_at_another_initializer_range_fits_and_its_config_is_kept(tmp_path):
    # initializer_range says how fresh weights were drawn and changes no computation: such a donor is accepted.
    MiniMaxVL01.from_preset("tiny", seed=0).save_pretrained(tmp_path / "vision")
    donor = MiniMaxVL01.from_preset("tiny", seed=1)
    donor.config.text_config.initializer_range = 0.06
    donor.save_pretrained(tmp_path / "language")
    swap_language_model(tmp_path / "vision", tmp_path / "language", tmp_path / "out")
    out = MiniMaxVL01.from_pretrained(tmp_path / "out", dtype=torch.float32)
    assert out.config.text_config.initializer_range == 0.06
    donated = donor.state_dict()
    name = next(k for k in donated if k.startswith(LANGUAGE_PREFIX))
    torch.testing.assert_close(out.state_dict()[name], donated[name], rtol=0, atol=0)


def test_a_language_model_with_another_tokenizer_needs_new_tokenizer_and_brings_its_tokenizer(tmp_path):
    from minimax_vl.processor import MiniMaxVL01Processor
    from minimax_vl.tokenizer import MiniMaxTokenizer
    from training.data.tokenizer import tokenizer_corpus, train_tokenizer

    MiniMaxVL01.from_preset("tiny", seed=0).save_pretrained(tmp_path / "vision")
    isolated = MiniMaxTokenizer(train_tokenizer(tokenizer_corpus(samples_per_setting=5), vocab_size=600,
                                                digits="isolated"))
    donor = MiniMaxVL01.from_preset("tiny", seed=1)
    donor.processor = MiniMaxVL01Processor(donor.processor.image_processor, isolated)
    donor.save_pretrained(tmp_path / "language")
    with pytest.raises(SystemExit, match="different tokenizers.*--new-tokenizer"):
        swap_language_model(tmp_path / "vision", tmp_path / "language", tmp_path / "out")
    swap_language_model(tmp_path / "vision", tmp_path / "language", tmp_path / "out", new_tokenizer=True)
    out = MiniMaxVL01.from_pretrained(tmp_path / "out", dtype=torch.float32)
    assert out.processor.tokenizer.backend.to_str() == isolated.backend.to_str()
    assert out.processor.tokenizer.encode("Yak 15") == isolated.encode("Yak 15")
    vision = MiniMaxVL01.from_pretrained(tmp_path / "vision", dtype=torch.float32)
    assert out.processor.image_processor == vision.processor.image_processor
