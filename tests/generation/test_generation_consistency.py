"""Generation by consistency: every cached path equals one full forward over the same tokens.

Incremental decode vs teacher forcing, chunked vs one-shot prefill, a padded batch row vs the row alone,
prefix reuse vs recomputation, crop-and-regenerate vs the first run, select_rows vs the full batch.
The `tiny` preset has block_size 16 and 8 layers (7 lightning + 1 softmax).
"""
import pytest
import torch

from text_backbone.config import LIGHTNING, MiniMaxText01Config
from text_backbone.generation import Generator, decode_one_token, prefill
from text_backbone.model import MiniMaxText01ForCausalLM

VOCAB = 1024


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # The test machine is shared: tiny matmuls on 2 contended threads are ~50x slower than on one.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_model(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return MiniMaxText01ForCausalLM(MiniMaxText01Config.from_preset("tiny")).eval().to(dtype)


def random_ids(*shape, seed=1):
    return torch.randint(0, VOCAB, shape, generator=torch.Generator().manual_seed(seed))


# fp32 end to end through 8 post-norm layers with alpha ~2: the cached and uncached paths sum in different
# orders (chunked vs token recurrence, split softmax), so they agree to rounding, well inside 1e-5.
FP32 = dict(rtol=1e-5, atol=1e-5)
# float64: the same comparisons are exact up to ~1e-13; 1e-10 leaves room for the longer chains.
FP64 = dict(rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------- teacher forcing
@pytest.mark.parametrize("split", [1, 5, 16, 17, 23, 39])  # 16 = a lightning block boundary, 17/23 inside one
def test_incremental_decode_reproduces_full_forward_logits(split):
    model = tiny_model()
    ids = random_ids(2, 40)
    with torch.no_grad():
        full = model(ids).logits  # [2, 40, V]
    cache = model.new_cache()
    logits = prefill(model, ids[:, :split], cache=cache, chunk_size=7)  # several prefill chunks, one ragged
    torch.testing.assert_close(logits, full[:, split - 1], **FP32)
    for t in range(split, 40):
        logits = decode_one_token(model, ids[:, t], cache)
        torch.testing.assert_close(logits, full[:, t], **FP32, msg=lambda m: f"step at position {t}: {m}")
    assert cache.seq_len == 40


def test_decode_uses_constant_size_lightning_states():
    model = tiny_model()
    cache = model.new_cache()
    prefill(model, random_ids(2, 21), cache=cache)
    shapes = [tuple(s.shape) for s, t in zip(cache.lightning_states, model.config.attn_type_list) if t == LIGHTNING]
    for t in range(21, 30):
        decode_one_token(model, random_ids(2, seed=t), cache)
    assert [tuple(s.shape) for s in cache.lightning_states if s is not None] == shapes == [(2, 4, 32, 32)] * 7
    assert all(s.dtype == torch.float32 for s in cache.lightning_states if s is not None)


# ---------------------------------------------------------------- chunked prefill
def _prefill_cache(model, ids, chunk_size, mask=None):
    cache = model.new_cache()
    logits = prefill(model, ids, attention_mask=mask, cache=cache, chunk_size=chunk_size)
    return cache, logits


@pytest.mark.parametrize("chunk_size", [1, 7, 16, 33])
def test_chunked_prefill_equals_one_shot(chunk_size):
    model = tiny_model(dtype=torch.float64)
    ids = random_ids(2, 50)
    ref_cache, ref_logits = _prefill_cache(model, ids, chunk_size=50)
    cache, logits = _prefill_cache(model, ids, chunk_size=chunk_size)
    torch.testing.assert_close(logits, ref_logits, **FP64)
    for layer, (a, b) in enumerate(zip(cache.lightning_states, ref_cache.lightning_states)):
        if model.config.attn_type_list[layer] == LIGHTNING:
            assert a.abs().max() > 0  # a real state, not two empty ones
            torch.testing.assert_close(a, b, **FP64)
    softmax_layer = model.config.softmax_layer_indices[0]
    for buffers, ref_buffers in ((cache._keys, ref_cache._keys), (cache._values, ref_cache._values)):
        torch.testing.assert_close(buffers[softmax_layer][:, :, :50], ref_buffers[softmax_layer][:, :, :50], **FP64)


def test_chunked_prefill_bounds_activation_memory_by_the_chunk():
    """Each forward sees at most chunk_size tokens (recorded at the embedding), never the whole prompt."""
    model = tiny_model()
    seen_lengths = []
    hook = model.model.embed_tokens.register_forward_hook(lambda m, i, o: seen_lengths.append(o.shape[1]))
    try:
        prefill(model, random_ids(1, 45), cache=model.new_cache(), chunk_size=16)
    finally:
        hook.remove()
    assert seen_lengths == [16, 16, 13]


def test_prefill_with_inputs_embeds_equals_ids():
    model = tiny_model(dtype=torch.float64)
    ids = random_ids(2, 19)
    _, by_ids = _prefill_cache(model, ids, chunk_size=8)
    cache = model.new_cache()
    by_embeds = prefill(model, inputs_embeds=model.model.embed_tokens(ids).detach(), cache=cache, chunk_size=8)
    torch.testing.assert_close(by_embeds, by_ids, **FP64)


# ---------------------------------------------------------------- batching with left padding
def left_padded(rows):
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.as_tensor(r)
        mask[i, width - len(r):] = 1
    return ids, mask


@pytest.mark.parametrize("chunk_size", [64, 8])  # 8: some prefill chunks are nothing but padding for a row
def test_left_padded_batch_row_equals_prompt_alone(chunk_size):
    model = tiny_model()
    prompts = [random_ids(n, seed=n).tolist() for n in (9, 30, 17)]
    ids, mask = left_padded(prompts)
    engine = Generator(model)
    batch = engine.generate(ids, attention_mask=mask, max_new_tokens=12, prefill_chunk_size=chunk_size,
                            return_logits=True)
    for row, prompt in enumerate(prompts):
        alone = engine.generate(torch.tensor([prompt]), max_new_tokens=12, return_logits=True)
        assert batch.tokens[row] == alone.tokens[0]
        torch.testing.assert_close(batch.logits[row], alone.logits[0], **FP32)


def test_padding_never_touches_lightning_states():
    """Garbage token ids under the pads must not change anything."""
    model = tiny_model(dtype=torch.float64)
    ids, mask = left_padded([random_ids(5).tolist(), random_ids(20).tolist()])
    cache_a, logits_a = _prefill_cache(model, ids, chunk_size=6, mask=mask)
    other = ids.masked_fill(mask == 0, 777)
    cache_b, logits_b = _prefill_cache(model, other, chunk_size=6, mask=mask)
    torch.testing.assert_close(logits_a, logits_b, **FP64)
    for a, b in zip(cache_a.lightning_states, cache_b.lightning_states):
        if a is not None:
            torch.testing.assert_close(a, b, **FP64)


def test_finished_rows_are_dropped_and_others_continue_unchanged():
    model = tiny_model()
    engine = Generator(model)
    ids = random_ids(3, 12)
    free = engine.generate(ids, max_new_tokens=8)
    stop_token = free.tokens[1][2]  # row 1 ends at its third token; rows 0 and 2 must not notice
    assert stop_token not in free.tokens[0] + free.tokens[2] + free.tokens[1][:2]  # preconditions
    stopped = engine.generate(ids, max_new_tokens=8, eos_token_id=[stop_token])
    assert stopped.tokens[1] == free.tokens[1][:3] and stopped.finish_reasons[1] == "eos"
    assert stopped.tokens[0] == free.tokens[0] and stopped.tokens[2] == free.tokens[2]
    assert stopped.finish_reasons[0] == stopped.finish_reasons[2] == "length"


# ---------------------------------------------------------------- prefix reuse
def test_prefix_reuse_equals_recomputation():
    model = tiny_model()
    engine = Generator(model)
    prefix_ids = random_ids(1, 37)
    questions = [random_ids(1, 5, seed=2), random_ids(1, 11, seed=3)]
    prefix = engine.prefill(prefix_ids, chunk_size=16)
    length_before, logits_before = prefix.length, prefix.last_logits.clone()
    for question in questions:
        reused = engine.generate(prefix, question, max_new_tokens=10, return_logits=True)
        scratch = engine.generate(torch.cat([prefix_ids, question], dim=1), max_new_tokens=10, return_logits=True)
        assert reused.tokens == scratch.tokens
        torch.testing.assert_close(reused.logits[0], scratch.logits[0], **FP32)
    # The prefix itself is untouched: same length, same logits, and generating from it again gives the same.
    assert prefix.length == length_before
    assert torch.equal(prefix.last_logits, logits_before)
    again = engine.generate(prefix, questions[0], max_new_tokens=10)
    assert again.tokens == engine.generate(prefix, questions[0], max_new_tokens=10).tokens


def test_one_prefix_serves_a_padded_batch_of_questions():
    """A one-row prefix fans out; the questions differ in length, so pads sit between prefix and question."""
    model = tiny_model()
    engine = Generator(model)
    prefix_ids = random_ids(1, 20)
    questions = [random_ids(4, seed=5).tolist(), random_ids(13, seed=6).tolist()]
    q_ids, q_mask = left_padded(questions)
    batch = engine.generate(engine.prefill(prefix_ids), q_ids, attention_mask=q_mask, max_new_tokens=9)
    for row, question in enumerate(questions):
        alone = engine.generate(torch.cat([prefix_ids, torch.tensor([question])], dim=1), max_new_tokens=9)
        assert batch.tokens[row] == alone.tokens[0]


def test_prefix_from_embeddings_continues_with_ids():
    """The VL model's path: an embedding prefix (images) and a token continuation (the question)."""
    model = tiny_model()
    engine = Generator(model)
    prefix_ids, question = random_ids(1, 25), random_ids(1, 6, seed=4)
    embeds = model.model.embed_tokens(prefix_ids).detach()
    from_embeds = engine.generate(engine.prefill(inputs_embeds=embeds), question, max_new_tokens=8)
    from_ids = engine.generate(torch.cat([prefix_ids, question], dim=1), max_new_tokens=8)
    assert from_embeds.tokens == from_ids.tokens


# ---------------------------------------------------------------- rollback and rows
def _greedy_steps(model, cache, logits, steps):
    tokens, all_logits = [], []
    for _ in range(steps):
        token = logits.argmax(-1)
        tokens.append(token)
        logits = decode_one_token(model, token, cache)
        all_logits.append(logits)
    return torch.stack(tokens, 1), torch.stack(all_logits, 1)


def test_crop_then_regenerate_equals_the_original():
    model = tiny_model()
    cache = model.new_cache()
    logits = prefill(model, random_ids(2, 26), cache=cache, chunk_size=10)
    snap = cache.snapshot()
    tokens_a, logits_a = _greedy_steps(model, cache, logits, 12)
    assert cache.seq_len == 38
    cache.crop(snap)
    assert cache.seq_len == 26
    tokens_b, logits_b = _greedy_steps(model, cache, logits, 12)
    assert torch.equal(tokens_a, tokens_b)
    # Same ops on the same values in the same order: bit-identical, not merely close.
    assert torch.equal(logits_a, logits_b)


def test_crop_then_a_different_continuation_equals_a_fresh_run():
    model = tiny_model()
    prompt, first, second = random_ids(1, 20), random_ids(1, 9, seed=7), random_ids(1, 4, seed=8)
    cache = model.new_cache()
    prefill(model, prompt, cache=cache)
    snap = cache.snapshot()
    prefill(model, first, cache=cache)  # wander off
    cache.crop(snap)
    logits = prefill(model, second, cache=cache)
    fresh = model.new_cache()
    expected = prefill(model, torch.cat([prompt, second], dim=1), cache=fresh)
    torch.testing.assert_close(logits, expected, **FP32)


def test_select_rows_keeps_the_right_rows():
    model = tiny_model()
    ids = random_ids(3, 15)
    cache = model.new_cache()
    logits = prefill(model, ids, cache=cache)
    full_cache = cache.copy()
    tokens_all, logits_all = _greedy_steps(model, full_cache, logits, 6)
    cache.select_rows([2, 0])
    tokens_sel, logits_sel = _greedy_steps(model, cache, logits[[2, 0]], 6)
    assert torch.equal(tokens_sel, tokens_all[[2, 0]])
    torch.testing.assert_close(logits_sel, logits_all[[2, 0]], **FP32)


def test_copy_is_independent():
    model = tiny_model()
    cache = model.new_cache()
    logits = prefill(model, random_ids(1, 18), cache=cache)
    twin = cache.copy()
    _, first = _greedy_steps(model, cache, logits, 5)
    _, second = _greedy_steps(model, twin, logits, 5)  # the original moved on; the copy did not see it
    assert torch.equal(first, second)
