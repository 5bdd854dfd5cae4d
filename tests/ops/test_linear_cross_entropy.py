"""The labelled-position loss path (`ops.linear_cross_entropy`) against cross-entropy over full logits.

Float64 throughout, so any difference beyond rounding is a real error: tolerances are 1e-10 relative.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from text_backbone.config import MiniMaxText01Config
from text_backbone.model import IGNORE_INDEX, MiniMaxText01ForCausalLM, causal_lm_loss, shifted_targets
from text_backbone.ops.linear_cross_entropy import labelled_log_likelihoods, rows_per_chunk

TOL = dict(rtol=1e-10, atol=1e-10)


def _head(weight):
    head = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False, dtype=weight.dtype)
    head.weight = torch.nn.Parameter(weight)
    return head


def _reference(hidden, weight, targets):
    logits = hidden @ weight.t()
    lp = -F.cross_entropy(logits.flatten(0, 1), targets.clamp_min(0).flatten(), reduction="none")
    return lp.view_as(targets) * (targets != IGNORE_INDEX)


@pytest.mark.parametrize("length", [1, 63, 255, 257, 1000])
@pytest.mark.parametrize("chunk_rows", [1, 7, 4096])
def test_log_likelihoods_and_gradients_equal_full_logits(length, chunk_rows):
    torch.manual_seed(length)
    vocab, width = 97, 16
    hidden = torch.randn(2, length, width, dtype=torch.float64, requires_grad=True)
    head = _head(torch.randn(vocab, width, dtype=torch.float64))
    weight = head.weight
    targets = torch.randint(0, vocab, (2, length))
    targets[torch.rand(2, length) < 0.6] = IGNORE_INDEX  # most positions unlabelled, as in VQA batches
    targets[1, : length // 2] = IGNORE_INDEX  # a left-padded row
    grad_out = torch.randn(2, length, dtype=torch.float64)

    got = labelled_log_likelihoods(hidden, head, targets, chunk_bytes=chunk_rows * 4 * vocab)
    want = _reference(hidden, weight, targets).double()
    torch.testing.assert_close(got.double(), want, **TOL)
    assert (got[targets == IGNORE_INDEX] == 0).all()
    g_got = torch.autograd.grad((got * grad_out).sum(), (hidden, weight))
    g_want = torch.autograd.grad((want * grad_out).sum(), (hidden, weight))
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b, **TOL)


def test_no_labelled_position_gives_zero_and_zero_gradients():
    hidden = torch.randn(1, 5, 8, dtype=torch.float64, requires_grad=True)
    head = _head(torch.randn(11, 8, dtype=torch.float64))
    targets = torch.full((1, 5), IGNORE_INDEX)
    out = labelled_log_likelihoods(hidden, head, targets)
    assert out.abs().sum() == 0
    out.sum().backward()
    assert hidden.grad.abs().sum() == 0
    assert head.weight.grad is None or head.weight.grad.abs().sum() == 0


def test_chunk_size_bounds_logit_memory_at_the_released_vocabulary():
    # 32 MB of fp32 logits per chunk at a 200,064-token vocabulary: 41 rows; backward holds about three such
    # tensors at once (recomputed logits, softmax, its gradient), well under the 256 MB budget.
    rows = rows_per_chunk(200_064)
    assert rows == 41 and 3 * rows * 200_064 * 4 <= 128 * 2**20


def test_the_head_is_called_as_a_module_in_forward_and_in_the_recompute():
    """Sharded training (ZeRO-3) gathers lm_head's weight in its forward hooks: every use must be a module call."""
    calls = []
    head = _head(torch.randn(50, 8, dtype=torch.float64))
    head.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    hidden = torch.randn(1, 30, 8, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 50, (1, 30))
    labelled_log_likelihoods(hidden, head, targets, chunk_bytes=12 * 4 * 50).sum().backward()
    assert calls == [12, 12, 6, 6, 12, 12] or sorted(calls) == sorted([12, 12, 6] * 2)  # 3 chunks, then recomputed


@pytest.mark.parametrize("packed", [False, True])
def test_model_loss_on_labelled_positions_equals_full_logits(packed):
    """Through the whole decoder in float64: loss, per-token log-likelihoods and every parameter gradient."""
    config = MiniMaxText01Config.from_preset("tiny")
    torch.manual_seed(0)
    model = MiniMaxText01ForCausalLM(config).double()
    length = 40
    ids = torch.randint(0, config.vocab_size, (1 if packed else 2, length))
    labels = ids.clone()
    labels[:, :7] = IGNORE_INDEX  # prompt positions
    kwargs = {}
    if packed:
        kwargs["cu_seqlens"] = torch.tensor([0, 13, 29, length], dtype=torch.int32)
    else:
        mask = torch.ones_like(ids)
        mask[1, -9:] = 0  # right padding
        labels[1, -9:] = IGNORE_INDEX
        kwargs["attention_mask"] = mask

    fused = model(ids, labels=labels, return_logits=False, **kwargs)
    assert fused.logits is None
    grads_fused = torch.autograd.grad(fused.loss, list(model.parameters()), allow_unused=True)
    full = model(ids, **kwargs)
    reference = causal_lm_loss(full.logits, labels, kwargs.get("cu_seqlens"))
    reference = reference + config.router_aux_loss_coef * full.aux_loss
    grads_full = torch.autograd.grad(reference, list(model.parameters()), allow_unused=True)

    torch.testing.assert_close(fused.loss, reference, **TOL)
    targets = shifted_targets(labels, kwargs.get("cu_seqlens"))
    want_lp = -F.cross_entropy(full.logits[:, :-1].flatten(0, 1), targets.clamp_min(0).flatten(),
                               reduction="none").view_as(targets) * (targets != IGNORE_INDEX)
    torch.testing.assert_close(fused.target_log_probs, want_lp, **TOL)
    for a, b in zip(grads_fused, grads_full):
        if b is None:
            assert a is None or a.abs().sum() == 0
        else:
            torch.testing.assert_close(a, b, **TOL)
