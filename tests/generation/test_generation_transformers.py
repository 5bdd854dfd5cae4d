"""Our engine against transformers' `generate` on the same tiny `MiniMaxForCausalLM` weights.

The weights go through the production converter (`text_backbone.convert.transformers_to_released`).
Where transformers' math departs from the released model we configure around it and say so:
- transformers 5.24 rotates the whole head (no partial-rotary field): `from_dict` of its config gives
  `rotary_dim = head_dim`, so both models rotate every channel here.
- its decay factor is 1 - l/(L-1+1e-5) + 1e-5 instead of the released 1 - l/(L-1) + 1e-5 (SPEC_NOTES §2.3); we copy
  its `slope_rate` into our `slope` buffers so the comparison is about generation, not a 1e-7 formula change.
- its lightning output norm has eps 1e-6 (RMSNorm's default), which is also our `lightning_norm_eps` default.
- left-padded batches: transformers 5.24's `MiniMaxCache.get_seq_length()` reads layer 0, a lightning layer, and
  returns 0, so in decode steps the softmax layers get a mask built for ONE key, broadcast over all of them:
  a new token then attends to the left pads. Its padded-batch output therefore differs from the same prompt
  alone (a transformers bug, not the released model's behaviour), so padded rows are compared with
  transformers run on each prompt alone.
"""
import pytest
import torch

transformers = pytest.importorskip("transformers", reason="transformers is in the test extra; `make test` installs it")

from text_backbone.config import MiniMaxText01Config, deepnorm_alpha  # noqa: E402
from text_backbone.convert import transformers_to_released  # noqa: E402
from text_backbone.generation import Generator  # noqa: E402
from text_backbone.model import MiniMaxText01ForCausalLM  # noqa: E402
from text_backbone.weights_io import convert_state_dict  # noqa: E402

VOCAB = 1024


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    previous = torch.get_num_threads()  # shared machine: tiny matmuls are much faster on one thread
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def models():
    """(transformers model, our model) with the same weights: the `tiny` preset's sizes, full rotary."""
    alpha = deepnorm_alpha(8)
    config = transformers.MiniMaxConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=8, num_attention_heads=4,
        num_key_value_heads=2, head_dim=32, num_local_experts=4, num_experts_per_tok=2, max_position_embeddings=4096,
        layer_types=["linear_attention"] * 7 + ["full_attention"], block_size=16,
        full_attn_alpha_factor=alpha, linear_attn_alpha_factor=alpha, mlp_alpha_factor=alpha,
        rope_parameters={"rope_type": "default", "rope_theta": 1e7}, tie_word_embeddings=False,
        bos_token_id=None, eos_token_id=None, pad_token_id=0,
    )
    torch.manual_seed(0)
    theirs = transformers.MiniMaxForCausalLM(config).eval()
    with torch.no_grad():  # std 0.02 gives near-uniform logits and near-ties; larger weights give clear winners
        for param in theirs.parameters():
            if param.dim() >= 2:
                param.mul_(4.0)
    ours = MiniMaxText01ForCausalLM(MiniMaxText01Config.from_dict(config.to_dict())).eval()
    assert ours.config.rotary_dim == ours.config.head_dim == 32 and ours.config.attn_type_list == [0] * 7 + [1]
    ours.load_state_dict(convert_state_dict(theirs.state_dict(), transformers_to_released()), strict=True)
    for layer, their_layer in zip(ours.model.layers, theirs.model.layers):
        if layer.is_lightning:
            layer.self_attn.slope.copy_(their_layer.self_attn.slope_rate.view(-1))
    return theirs, ours


def their_generate(model, ids, mask=None, **settings):
    out = model.generate(ids, attention_mask=torch.ones_like(ids) if mask is None else mask, do_sample=False,
                         output_scores=True, return_dict_in_generate=True, **settings)
    return out.sequences[:, ids.shape[1]:].tolist(), torch.stack(out.scores, dim=1)  # [B, N, V]


def random_ids(*shape, seed):
    return torch.randint(1, VOCAB, shape, generator=torch.Generator().manual_seed(seed))


# Scores are fp32 logits of size ~3 through 8 post-norm layers; the two implementations differ only in
# summation order (measured max difference ~2e-6), so 1e-4 is loose for rounding yet far below the gaps
# between competing tokens that would change a greedy choice.
SCORES = dict(rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("chunk_size", [2048, 10])  # one-shot prefill, and chunks that cut lightning blocks
def test_greedy_equals_transformers_generate(models, chunk_size):
    theirs, ours = models
    ids = random_ids(2, 37, seed=1)  # two lightning blocks of 16 and a ragged one
    expected_tokens, expected_scores = their_generate(theirs, ids, max_new_tokens=24)
    out = Generator(ours).generate(ids, max_new_tokens=24, prefill_chunk_size=chunk_size, return_logits=True)
    assert out.tokens == expected_tokens
    assert expected_scores.abs().max() > 1.0  # the comparison is not between two near-zero tensors
    torch.testing.assert_close(torch.stack(out.logits), expected_scores, **SCORES)


def test_repetition_penalty_and_min_new_tokens_equal_transformers(models):
    theirs, ours = models
    ids = random_ids(1, 20, seed=2)
    free, _ = their_generate(theirs, ids, max_new_tokens=12)
    eos = free[0][1]  # transformers would stop at the second token; min_new_tokens holds it off
    settings = dict(max_new_tokens=12, repetition_penalty=1.3, min_new_tokens=5, eos_token_id=[eos])
    expected, expected_scores = their_generate(theirs, ids, **settings)
    out = Generator(ours).generate(ids, return_logits=True, **settings)
    assert out.tokens == expected
    # transformers writes -inf for banned tokens; compare the finite entries and the -inf pattern.
    got = torch.stack(out.logits)
    assert torch.equal(torch.isinf(got), torch.isinf(expected_scores))
    finite = torch.isfinite(expected_scores)
    torch.testing.assert_close(got[finite], expected_scores[finite], **SCORES)


def test_left_padded_batch_equals_transformers_per_prompt(models):
    theirs, ours = models
    prompts = [random_ids(1, n, seed=n) for n in (11, 30, 19)]
    width = max(p.shape[1] for p in prompts)
    ids = torch.zeros(3, width, dtype=torch.long)
    mask = torch.zeros(3, width, dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, width - p.shape[1]:], mask[row, width - p.shape[1]:] = p[0], 1
    out = Generator(ours).generate(ids, attention_mask=mask, max_new_tokens=16, prefill_chunk_size=8)
    for row, p in enumerate(prompts):
        expected, _ = their_generate(theirs, p, max_new_tokens=16)
        assert out.tokens[row] == expected[0]
