"""Sharded runs need every process to run the same modules (training.distributed.before_prepare): a text-only
batch then still runs the vision tower, without changing any output or any gradient but the vision tower's (zeros).

    .venv/bin/python -m pytest -q tests/training/test_same_units.py
"""
from __future__ import annotations

import torch

from minimax_vl.model import MiniMaxVL01


def test_text_only_batch_runs_the_vision_tower_with_zero_weight():
    model = MiniMaxVL01.from_preset("tiny", seed=0).train()
    input_ids = torch.randint(0, 1000, (1, 24), generator=torch.Generator().manual_seed(0))

    def run():
        model.zero_grad(set_to_none=True)
        out = model(input_ids, labels=input_ids)
        out.loss.backward()
        return out.logits.detach(), {n: p.grad for n, p in model.named_parameters()}

    logits, grads = run()
    assert all(grads[n] is None for n in grads if n.startswith(("vision_tower.", "multi_modal_projector.")))
    model.run_vision_without_images = True
    calls = []
    hook = model.vision_tower.register_forward_pre_hook(lambda *_: calls.append(1))
    logits_all, grads_all = run()
    hook.remove()
    assert calls == [1]
    assert torch.equal(logits_all, logits)  # adding 0.0 * (a finite number) changes no bit
    for name, grad in grads_all.items():
        if name.startswith(("vision_tower.", "multi_modal_projector.", "image_newline")):
            assert grad is not None and not grad.any(), name  # present (so collectives match), and zero
        elif grads[name] is not None:
            assert torch.equal(grad, grads[name]), name
