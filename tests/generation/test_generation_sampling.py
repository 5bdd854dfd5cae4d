"""Choosing tokens: greedy, temperature, top-k, top-p, seeds, repetition penalty, min/max new tokens, eos.

Distribution tests draw many samples from one row repeated over the batch and compare frequencies with the
intended probabilities. With n = 20000 draws a frequency has standard deviation <= sqrt(0.25 / n) = 0.0035,
so the 0.02 tolerance is ~6 sigma: a correct sampler essentially never fails, a wrong filter is far outside.
"""
import pytest
import torch

from text_backbone.config import MiniMaxText01Config
from text_backbone.generation import GenerationConfig, Generator, apply_repetition_penalty, sample
from text_backbone.model import MiniMaxText01ForCausalLM

N = 20000
FREQ_TOL = 0.02


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    previous = torch.get_num_threads()  # shared machine: tiny matmuls are much faster on one thread
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def frequencies(logits_row, config, seed=0):
    logits = logits_row.expand(N, -1)
    draws = sample(logits, config, torch.Generator().manual_seed(seed))
    return torch.bincount(draws, minlength=logits_row.shape[-1]).float() / N


LOGITS = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))


def test_greedy_is_argmax():
    logits = torch.randn(5, 50)
    assert torch.equal(sample(logits, GenerationConfig()), logits.argmax(-1))


def test_plain_sampling_follows_the_softmax():
    freq = frequencies(LOGITS, GenerationConfig(do_sample=True))
    torch.testing.assert_close(freq, LOGITS.softmax(-1)[0], rtol=0, atol=FREQ_TOL)


def test_temperature_flattens_or_sharpens():
    for temperature in (0.5, 2.0):
        freq = frequencies(LOGITS, GenerationConfig(do_sample=True, temperature=temperature))
        torch.testing.assert_close(freq, (LOGITS / temperature).softmax(-1)[0], rtol=0, atol=FREQ_TOL)


def test_top_k_keeps_the_k_best_renormalised():
    freq = frequencies(LOGITS, GenerationConfig(do_sample=True, top_k=2))
    torch.testing.assert_close(freq, torch.tensor([0.625, 0.375, 0.0, 0.0]), rtol=0, atol=FREQ_TOL)
    assert freq[2:].sum() == 0  # filtered tokens are never drawn
    one = sample(torch.randn(64, 30), GenerationConfig(do_sample=True, top_k=1), torch.Generator().manual_seed(0))
    assert one.shape == (64,)


def test_top_k_one_is_greedy_whatever_the_seed():
    logits = torch.randn(64, 30)
    config = GenerationConfig(do_sample=True, top_k=1)
    for seed in range(3):
        assert torch.equal(sample(logits, config, torch.Generator().manual_seed(seed)), logits.argmax(-1))


@pytest.mark.parametrize("top_p, kept", [(0.5, 1), (0.8, 2), (0.81, 3), (1.0, 4)])
def test_top_p_keeps_the_smallest_head_reaching_p(top_p, kept):
    # Probabilities 0.5, 0.3, 0.15, 0.05: the head {0} has mass 0.5, {0,1} 0.8, {0,1,2} 0.95.
    freq = frequencies(LOGITS, GenerationConfig(do_sample=True, top_p=top_p))
    probs = LOGITS.softmax(-1)[0].clone()
    probs[kept:] = 0
    torch.testing.assert_close(freq, probs / probs.sum(), rtol=0, atol=FREQ_TOL)
    assert freq[kept:].sum() == 0


def test_top_p_ignores_the_vocabulary_order():
    permutation = torch.tensor([2, 0, 3, 1])
    freq = frequencies(LOGITS[:, permutation], GenerationConfig(do_sample=True, top_p=0.8))
    expected = torch.tensor([0.625, 0.375, 0.0, 0.0])[permutation]
    torch.testing.assert_close(freq, expected, rtol=0, atol=FREQ_TOL)


def test_repetition_penalty_moves_seen_logits_down():
    logits = torch.tensor([[2.0, -2.0, 3.0, -1.0]])
    seen = torch.tensor([[True, True, False, False]])
    assert apply_repetition_penalty(logits, seen, 2.0).tolist() == [[1.0, -4.0, 3.0, -1.0]]


# ---------------------------------------------------------------- through the model
def tiny_engine(seed=0):
    torch.manual_seed(seed)
    model = MiniMaxText01ForCausalLM(MiniMaxText01Config.from_preset("tiny")).eval()
    return model, Generator(model)


def prompt(length=14, batch=1, seed=1):
    return torch.randint(0, 1024, (batch, length), generator=torch.Generator().manual_seed(seed))


def reference_greedy(model, ids, steps, *, penalty=1.0, banned_until=0, banned=()):
    """Greedy decoding the slow, obvious way: a full forward for every token, rules applied by hand."""
    tokens = ids[0].tolist()
    out = []
    for step in range(steps):
        with torch.no_grad():
            logits = model(torch.tensor([tokens])).logits[0, -1].clone()
        for token in set(tokens):
            logits[token] = logits[token] / penalty if logits[token] > 0 else logits[token] * penalty
        if step < banned_until:
            logits[list(banned)] = float("-inf")
        token = int(logits.argmax())
        tokens.append(token)
        out.append(token)
    return out


def test_greedy_generation_equals_the_full_forward_reference():
    model, engine = tiny_engine()
    ids = prompt()
    assert engine.generate(ids, max_new_tokens=10).tokens[0] == reference_greedy(model, ids, 10)


def test_repetition_penalty_matches_reference_and_changes_the_output():
    model, engine = tiny_engine()
    ids = prompt(length=6)
    # A small random model repeats itself; without penalty its greedy output has repeats.
    plain = engine.generate(ids, max_new_tokens=24).tokens[0]
    penalised = engine.generate(ids, max_new_tokens=24, repetition_penalty=1.8).tokens[0]
    assert penalised == reference_greedy(model, ids, 24, penalty=1.8)
    assert penalised != plain


def test_min_new_tokens_forbids_eos_until_reached():
    model, engine = tiny_engine()
    ids = prompt()
    first = engine.generate(ids, max_new_tokens=1).tokens[0][0]
    eos_now = engine.generate(ids, max_new_tokens=10, eos_token_id=first)
    assert eos_now.tokens[0] == [first] and eos_now.finish_reasons == ["eos"]
    held = engine.generate(ids, max_new_tokens=10, eos_token_id=first, min_new_tokens=4)
    expected = reference_greedy(model, ids, 10, banned_until=4, banned=[first])
    if first in expected[4:]:  # generation ends at the first allowed eos
        expected = expected[: expected.index(first, 4) + 1]
    assert held.tokens[0] == expected
    assert first not in held.tokens[0][:4]


def test_max_new_tokens_and_zero():
    _, engine = tiny_engine()
    out = engine.generate(prompt(batch=2), max_new_tokens=7)
    assert [len(t) for t in out.tokens] == [7, 7] and out.finish_reasons == ["length", "length"]
    none = engine.generate(prompt(), max_new_tokens=0)
    assert none.tokens == [[]] and none.finish_reasons == ["length"]


def test_seeded_sampling_is_reproducible_and_seed_dependent():
    _, engine = tiny_engine()
    ids = prompt(batch=2)
    settings = dict(max_new_tokens=16, do_sample=True, temperature=1.5)
    a = engine.generate(ids, seed=3, **settings).tokens
    b = engine.generate(ids, seed=3, **settings).tokens
    c = engine.generate(ids, seed=4, **settings).tokens
    d = engine.generate(ids, generator=torch.Generator().manual_seed(3), **settings).tokens
    assert a == b == d
    assert a != c  # 32 draws at temperature 1.5 from a near-flat 1024-way distribution


def test_sequences_pad_finished_rows():
    _, engine = tiny_engine()
    ids = prompt(batch=2)
    free = engine.generate(ids, max_new_tokens=6)
    stop = free.tokens[0][1]
    assert stop not in free.tokens[1] and stop != free.tokens[0][0]  # preconditions: only row 0 stops, at step 2
    out = engine.generate(ids, max_new_tokens=6, eos_token_id=[stop])
    seq = out.sequences(pad_token_id=-1)
    assert seq.shape == (2, 6)
    assert seq[0].tolist() == free.tokens[0][:2] + [-1] * 4 and seq[1].tolist() == free.tokens[1]
