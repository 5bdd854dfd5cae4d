"""benchmarks/memory_plan.py: exact parameter counts on the meta device, and the per-GPU arithmetic.

    .venv/bin/python -m pytest -q tests/training/test_memory_plan.py
"""
from __future__ import annotations

import pytest
import torch

from minimax_vl.model import MiniMaxVL01, parameter_counts


@pytest.fixture(scope="module")
def memory_plan(load_benchmark):
    return load_benchmark("memory_plan")


def test_parameter_plan_counts_the_model(memory_plan):
    params = memory_plan.parameter_plan("tiny")
    model = MiniMaxVL01.from_preset("tiny")
    assert params["total"] == parameter_counts(model)["total"]
    layers = model.language_model.model.layers
    assert params["largest_decoder_layer"] == max(sum(p.numel() for p in layer.parameters()) for layer in layers)
    assert params["root_unit"] + params["decoder_layers"] * params["lightning_layer"] <= params["total"]


def test_the_released_preset_builds_on_meta_and_states_shard_evenly(memory_plan):
    params = memory_plan.parameter_plan("minimax-vl-01")
    assert 456e9 < params["total"] < 457e9  # MiniMax-VL-01: 456B text model + 0.3B ViT + projector
    acts = {"lightning": 254_000, "softmax": 174_000, "vit_block": 17_400}  # measured by the script (DISTRIBUTED.md)
    rows = memory_plan.plan(params, acts, [8, 64, 256], tokens=8192, image_tokens=5770)
    for row in rows:  # 16 bytes per parameter split evenly over the GPUs
        assert row["states_gib"] * row["gpus"] * 2**30 == pytest.approx(16 * params["total"])
        assert row["total_ckpt_gib"] <= row["total_gib"]
    assert torch.empty(0).device.type == "cpu"  # building on meta left the default device alone
