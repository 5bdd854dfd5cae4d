"""training/recipes/fresh_model.py: a fresh model folder whose language model is drawn at a chosen scale."""
from __future__ import annotations

import pytest
import torch

from minimax_vl.model import MiniMaxVL01
from training.recipes.fresh_model import main


def test_the_language_model_is_drawn_at_the_asked_scale_and_the_folder_loads(tmp_path):
    assert main(["--output", str(tmp_path / "wide"), "--preset", "tiny", "--initializer-range", "0.06"]) == 0
    assert main(["--output", str(tmp_path / "plain"), "--preset", "tiny"]) == 0
    wide = MiniMaxVL01.from_pretrained(tmp_path / "wide", dtype=torch.float32)
    plain = MiniMaxVL01.from_pretrained(tmp_path / "plain", dtype=torch.float32)
    assert wide.config.text_config.initializer_range == 0.06 and wide.processor is not None
    ratio = (wide.language_model.model.embed_tokens.weight.std() /
             plain.language_model.model.embed_tokens.weight.std()).item()
    assert ratio == pytest.approx(0.06 / plain.config.text_config.initializer_range, rel=0.05)
    assert not (tmp_path / ".tmp-wide").exists()


def test_a_scale_that_is_not_positive_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="must be positive"):
        main(["--output", str(tmp_path / "bad"), "--preset", "tiny", "--initializer-range", "0"])


def test_a_given_tokenizer_ships_with_the_model_and_one_too_large_is_refused(tmp_path):
    from minimax_vl.tokenizer import MiniMaxTokenizer
    from training.data.tokenizer import save_tokenizer, tokenizer_corpus, train_tokenizer

    corpus = list(tokenizer_corpus(samples_per_setting=3))
    save_tokenizer(train_tokenizer(iter(corpus), vocab_size=700, digits="isolated"), tmp_path / "small.json")
    assert main(["--output", str(tmp_path / "model"), "--preset", "tiny", "--tokenizer",
                 str(tmp_path / "small.json")]) == 0
    model = MiniMaxVL01.from_pretrained(tmp_path / "model", dtype=torch.float32)
    assert model.processor.tokenizer.encode("Yak 15") == MiniMaxTokenizer.from_file(tmp_path / "small.json").encode(
        "Yak 15")
    vocabulary = model.config.text_config.vocab_size
    save_tokenizer(train_tokenizer(iter(corpus), vocab_size=vocabulary + 200), tmp_path / "large.json")
    if MiniMaxTokenizer.from_file(tmp_path / "large.json").vocab_size > vocabulary:
        with pytest.raises(SystemExit, match="smaller --vocab-size"):
            main(["--output", str(tmp_path / "big"), "--preset", "tiny", "--tokenizer", str(tmp_path / "large.json")])
