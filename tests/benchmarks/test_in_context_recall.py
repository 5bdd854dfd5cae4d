"""benchmarks/in_context_recall.py: the recall documents are what its docstring says, and every model it compares
trains on them (a few steps, loss finite, the prediction read at the right position)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "in_context_recall.py"


@pytest.fixture(scope="module")
def recall(load_benchmark):
    return load_benchmark("in_context_recall")


def test_the_last_token_is_the_value_of_the_key_asked_again(recall):
    ids = recall.recall_batch(torch.Generator().manual_seed(1), n=32)
    assert ids.shape == (32, 2 * recall.PAIRS + 3)
    for row in ids.tolist():
        pairs = dict(zip(row[0:2 * recall.PAIRS:2], row[1:2 * recall.PAIRS:2]))
        assert len(pairs) == recall.PAIRS  # distinct keys: the answer is unambiguous
        assert row[-3] == recall.SEP and row[-1] == pairs[row[-2]]
        assert all(0 <= k - recall.KEY_START < 20 for k in pairs)
        assert all(0 <= v - recall.VALUE_START < 20 for v in pairs.values())


def test_several_queries_ask_distinct_keys_each_followed_by_its_value(recall):
    ids = recall.recall_batch(torch.Generator().manual_seed(2), n=16, queries=4)
    positions = recall.value_positions(4)
    assert ids.shape == (16, 2 * recall.PAIRS + 1 + 8) and positions.flatten().tolist() == [14, 16, 18, 20]
    for row in ids.tolist():
        pairs = dict(zip(row[0:2 * recall.PAIRS:2], row[1:2 * recall.PAIRS:2]))
        asked = [row[p - 1] for p in positions.flatten()]
        assert row[2 * recall.PAIRS] == recall.SEP and len(set(asked)) == 4
        assert [row[p] for p in positions.flatten()] == [pairs[key] for key in asked]


def test_multi_token_values_are_a_space_and_digits_trained_digit_by_digit(recall):
    """`--value-digits 2`: "key SPACE d d", as the demo tokenizer writes "Yak 15"; the trained positions are the
    asked value's digits, which spell the number stored after that key."""
    ids = recall.recall_batch(torch.Generator().manual_seed(3), n=64, queries=3, value_digits=2)
    positions = recall.value_positions(3, value_digits=2)
    assert ids.shape == (64, 4 * recall.PAIRS + 1 + 3 * 4) and positions.shape == (3, 2)
    first_digits = set()
    for row in ids.tolist():
        pairs = {row[i]: row[i + 1:i + 4] for i in range(0, 4 * recall.PAIRS, 4)}
        assert len(pairs) == recall.PAIRS and row[4 * recall.PAIRS] == recall.SEP
        assert all(v[0] == recall.SPACE and all(0 <= d - recall.DIGIT_START < 10 for d in v[1:])
                   for v in pairs.values())
        for query in positions.tolist():
            key = row[query[0] - 2]
            assert row[query[0] - 1] == recall.SPACE and [row[p] for p in query] == pairs[key][1:]
        first_digits.update(v[1] for v in pairs.values())
    assert len(first_digits) == 10  # numbers below 100 share digits: copying a digit is not enough
    bare = recall.recall_batch(torch.Generator().manual_seed(3), n=8, queries=3, value_digits=2, space=False)
    bare_positions = recall.value_positions(3, value_digits=2, space=False)
    assert bare.shape == (8, 3 * recall.PAIRS + 1 + 3 * 3) and recall.SPACE not in bare.tolist()[0]
    for row in bare.tolist():
        pairs = {row[i]: row[i + 1:i + 3] for i in range(0, 3 * recall.PAIRS, 3)}
        assert [[row[p] for p in query] for query in bare_positions.tolist()] == [
            pairs[row[query[0] - 1]] for query in bare_positions.tolist()]


def test_model_specs_carry_learning_rate_and_warmup(recall):
    assert recall.parse_spec("demo@3e-4/100") == ("demo", 3e-4, 100)
    assert recall.parse_spec("plain-pre-norm") == ("plain-pre-norm", 1e-3, 0)
    assert recall.parse_spec("demo,initializer_range=0.06@1e-3/10") == ("demo,initializer_range=0.06", 1e-3, 10)
    decoder = recall.build("demo,initializer_range=0.06")
    assert decoder.model.config.initializer_range == 0.06
    assert 0.05 < decoder.model.model.embed_tokens.weight.std().item() < 0.07


def test_a_config_override_the_model_does_not_support_is_refused(recall):
    """Setting a field the model would ignore must fail, or a comparison silently repeats the unchanged decoder
    (postnorm=false once ran as the post-norm decoder, step for step)."""
    with pytest.raises(SystemExit, match="postnorm=False is not supported"):
        recall.build("demo,postnorm=false")
    with pytest.raises(SystemExit, match="num_experts_per_tok"):
        recall.build("demo,num_experts_per_tok=5")
    dense = recall.build("demo,num_local_experts=1,num_experts_per_tok=1")
    assert dense.model.config.num_local_experts == 1 and dense.model.config.vocab_size == recall.VOCAB


def test_the_script_runs_every_model_side_by_side():
    result = subprocess.run([sys.executable, str(SCRIPT), "--steps", "2", "--every", "1"], capture_output=True,
                            text=True, timeout=300, check=True)
    lines = result.stdout.splitlines()
    assert all(name in lines[0] for name in ("demo@1e-3/0", "demo@3e-4/100", "plain-pre-norm", "plain-post-norm"))
    assert len([line for line in lines if line.strip().startswith(("1 ", "2 "))]) == 2
    assert "seconds per step" in lines[-1]
    digits = subprocess.run([sys.executable, str(SCRIPT), "--steps", "1", "--every", "1", "--value-digits", "2",
                             "--queries", "6", "--models", "demo"], capture_output=True, text=True, timeout=300,
                            check=True)
    assert digits.stdout.splitlines()[1].startswith("   1 ")
