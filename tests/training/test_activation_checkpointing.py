"""Activation checkpointing (per decoder layer and per ViT block) changes memory, not results.

    .venv/bin/python -m pytest -q tests/training/test_activation_checkpointing.py

In float64 on the tiny preset, with an anyres image and a text loss: the same loss and the same gradient for
every parameter, each layer and block run twice (forward, then recomputed in backward), and far fewer bytes kept
for the backward. The stage field and the CLI flag switch it on for the trained model only (not a DPO reference).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from timm.models.vision_transformer import Block

from minimax_vl.model import MiniMaxVL01
from text_backbone.model import DecoderLayer
from training.loop import RunOptions, Trainer
from training.stages import load_stage
from training.train import build_parser, stage_overrides

MESSAGES = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which bar is the tallest?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "The third one, labelled C."}]}]


@pytest.fixture(scope="module")
def model_and_inputs():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: more threads only add synchronisation on a shared machine
    model = MiniMaxVL01.from_preset("tiny", seed=0).double().train()
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 200, 3), dtype=np.uint8))
    inputs = model.processor(images=[image], text=model.processor.apply_chat_template(MESSAGES))
    inputs["pixel_values"] = [p.double() for p in inputs["pixel_values"]]
    yield model, {**inputs, "labels": inputs["input_ids"].clone()}
    torch.set_num_threads(threads)


def _run(model, inputs) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, int], int]:
    """(loss, gradients, forward calls per module class, bytes saved for backward outside checkpointed regions)."""
    model.zero_grad(set_to_none=True)
    calls = {"DecoderLayer": 0, "Block": 0}
    # Pre-hooks: a recomputation stops as soon as it has what backward needs, before the module returns.
    hooks = [m.register_forward_pre_hook(lambda m, _: calls.__setitem__(type(m).__name__, calls[type(m).__name__] + 1))
             for m in model.modules() if isinstance(m, (DecoderLayer, Block))]
    saved = []

    def pack(tensor):
        saved.append(tensor.untyped_storage().nbytes())
        return tensor

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = model(**inputs).loss
        loss.backward()
    finally:
        for hook in hooks:
            hook.remove()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads, calls, sum(saved)


def test_checkpointing_gives_the_same_loss_and_gradients(model_and_inputs):
    model, inputs = model_and_inputs
    loss, grads, calls, kept = _run(model, inputs)
    model.set_activation_checkpointing(True)
    try:
        loss_ac, grads_ac, calls_ac, kept_ac = _run(model, inputs)
    finally:
        model.set_activation_checkpointing(False)

    layers, blocks = len(model.language_model.model.layers), len(model.vision_tower.blocks)
    assert calls == {"DecoderLayer": layers, "Block": blocks}
    assert calls_ac == {"DecoderLayer": 2 * layers, "Block": 2 * blocks}  # recomputed in backward
    assert kept_ac < kept / 3, (kept_ac, kept)  # only layer inputs (and the ends of the model) are kept
    assert grads.keys() == grads_ac.keys()
    assert any(n.startswith("vision_tower.blocks.") for n in grads)  # the image reached the loss
    # The recomputation runs the same float64 operations on the same inputs, so only the order in which
    # gradient contributions are summed could differ: equal to rounding (1e-12 relative, float64 eps 2.2e-16).
    torch.testing.assert_close(loss_ac, loss, rtol=1e-12, atol=0)
    for name, grad in grads.items():
        torch.testing.assert_close(grads_ac[name], grad, rtol=1e-12, atol=1e-15, msg=name)


def test_no_recomputation_without_a_backward(model_and_inputs):
    model, inputs = model_and_inputs
    model.set_activation_checkpointing(True)
    try:
        with torch.no_grad():
            plain = model(**inputs).logits
        model.eval()
        calls = []
        hook = model.language_model.model.layers[0].register_forward_pre_hook(lambda *_: calls.append(1))
        model(**inputs)
        hook.remove()
        assert len(calls) == 1  # eval mode: the layer is not wrapped, so it runs once and keeps nothing extra
        with torch.no_grad():
            torch.testing.assert_close(model(**inputs).logits, plain, rtol=0, atol=0)
    finally:
        model.set_activation_checkpointing(False)
        model.train()


def test_stage_field_and_flag_switch_it_on_for_the_policy_only(tmp_path):
    args = build_parser().parse_args(["--stage", "4", "--output", "x", "--activation-checkpointing"])
    assert "activation_checkpointing=true" in stage_overrides(args)
    assert load_stage(2).activation_checkpointing is False  # the shipped stages keep activations
    stage = load_stage(4, [*stage_overrides(args), "data.num_samples=8", "eval.samples=2", "global_batch_size=2",
                           "micro_batch_size=2", "max_length=128", "data.image_size=128", "max_steps=1"])
    assert stage.activation_checkpointing is True
    trainer = Trainer(stage, RunOptions(output_dir=tmp_path / "run", init="preset", progress=False))
    policy = trainer.accelerator.unwrap_model(trainer.model)
    assert policy.language_model.model.activation_checkpointing and policy.vision_tower.grad_checkpointing
    assert not trainer.reference.language_model.model.activation_checkpointing
    assert not trainer.reference.vision_tower.grad_checkpointing
