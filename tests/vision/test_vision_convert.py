"""Released CLIP names <-> VisionTower (timm) names: the manifest, exact round trips, strictness."""

import pytest
import torch

from vision.config import VisionConfig
from vision.convert import (
    VisionCheckpointError,
    is_ignored_released_key,
    released_to_timm,
    released_vision_keys,
    released_vision_shapes,
    timm_to_released,
)
from vision.vit import VisionTower

TINY = VisionConfig.from_preset("tiny")
# The 16 per-layer names of SPEC_NOTES §6.1, written out rather than derived from the code under test.
LAYER_SUFFIXES = [
    "self_attn.q_proj.weight", "self_attn.q_proj.bias", "self_attn.k_proj.weight", "self_attn.k_proj.bias",
    "self_attn.v_proj.weight", "self_attn.v_proj.bias", "self_attn.out_proj.weight", "self_attn.out_proj.bias",
    "layer_norm1.weight", "layer_norm1.bias", "layer_norm2.weight", "layer_norm2.bias",
    "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias",
]
GLOBALS = {
    "vision_model.embeddings.class_embedding": (1024,),
    "vision_model.embeddings.patch_embedding.weight": (1024, 3, 14, 14),
    "vision_model.embeddings.position_embedding.weight": (577, 1024),
    "vision_model.pre_layrnorm.weight": (1024,),
    "vision_model.pre_layrnorm.bias": (1024,),
}


def random_tower(seed: int, config: VisionConfig = TINY) -> VisionTower:
    torch.manual_seed(seed)
    tower = VisionTower(config)
    with torch.no_grad():
        for param in tower.parameters():
            param.normal_()
    return tower


def test_released_manifest_is_exactly_spec_6_1():
    config = VisionConfig.from_preset("vit-303m")
    expected = set(GLOBALS) | {f"vision_model.encoder.layers.{j}.{s}" for j in range(24) for s in LAYER_SUFFIXES}
    keys = released_vision_keys(config)
    assert len(keys) == len(set(keys)) == 5 + 24 * 16 == 389
    assert set(keys) == expected
    assert not any("post_layernorm" in k for k in keys)
    shapes = released_vision_shapes(config)
    assert {k: shapes[k] for k in GLOBALS} == GLOBALS
    layer = "vision_model.encoder.layers.23."
    for suffix in LAYER_SUFFIXES:
        want = {"mlp.fc1.weight": (4096, 1024), "mlp.fc1.bias": (4096,), "mlp.fc2.weight": (1024, 4096)}.get(
            suffix, (1024, 1024) if suffix.endswith("weight") and "norm" not in suffix else (1024,))
        assert shapes[layer + suffix] == want, suffix


def test_round_trips_are_exact():
    tower = random_tower(0)
    timm_state = tower.state_dict()
    released = timm_to_released(timm_state, TINY)
    assert list(released) == released_vision_keys(TINY)
    back = released_to_timm(released, TINY)
    assert set(back) == set(timm_state)
    assert all(torch.equal(back[k], timm_state[k]) for k in timm_state)
    again = timm_to_released(back, TINY)
    assert all(torch.equal(again[k], released[k]) for k in released)


def test_qkv_is_stacked_q_then_k_then_v():
    released = timm_to_released(random_tower(1).state_dict(), TINY)
    fused = released_to_timm(released, TINY)["blocks.1.attn.qkv.weight"]
    q, k, v = (released[f"vision_model.encoder.layers.1.self_attn.{n}_proj.weight"] for n in "qkv")
    assert torch.equal(fused, torch.cat([q, k, v]))


def test_released_qkv_copies_do_not_share_memory():
    # safetensors refuses to save tensors that share storage; q/k/v are thirds of one timm tensor.
    released = timm_to_released(random_tower(2).state_dict(), TINY)
    pointers = [t.untyped_storage().data_ptr() for k, t in released.items() if "_proj." in k and "out_proj" not in k]
    assert len(pointers) == len(set(pointers))


def test_post_layernorm_and_position_ids_are_skipped_never_required():
    released = timm_to_released(random_tower(3).state_dict(), TINY)
    extra = dict(released)
    extra["vision_model.post_layernorm.weight"] = torch.ones(32)
    extra["vision_model.post_layernorm.bias"] = torch.zeros(32)
    extra["vision_model.embeddings.position_ids"] = torch.arange(17)[None]
    with_extra, without = released_to_timm(extra, TINY), released_to_timm(released, TINY)
    assert set(with_extra) == set(without)
    assert is_ignored_released_key("vision_model.post_layernorm.weight")


def test_mismatches_are_reported_together():
    released = timm_to_released(random_tower(4).state_dict(), TINY)
    del released["vision_model.encoder.layers.1.mlp.fc2.bias"]
    released["vision_model.encoder.layers.2.mlp.fc1.weight"] = torch.zeros(1)
    released["vision_model.embeddings.position_embedding.weight"] = torch.zeros(16, 32)
    with pytest.raises(VisionCheckpointError) as error:
        released_to_timm(released, TINY)
    message = str(error.value)
    assert "missing (1): vision_model.encoder.layers.1.mlp.fc2.bias" in message
    assert "unexpected (1): vision_model.encoder.layers.2.mlp.fc1.weight" in message
    assert "position_embedding.weight has shape (16, 32), the config expects (17, 32)" in message


def test_prefixed_names_get_a_hint():
    released = timm_to_released(random_tower(5).state_dict(), TINY)
    with pytest.raises(VisionCheckpointError, match="without the 'vision_tower.' prefix"):
        released_to_timm({f"vision_tower.{k}": v for k, v in released.items()}, TINY)


def test_timm_side_is_strict_too():
    state = random_tower(6).state_dict()
    state["head.weight"] = torch.zeros(2, 32)
    with pytest.raises(VisionCheckpointError, match="unexpected .*head.weight"):
        timm_to_released(state, TINY)
    with pytest.raises(VisionCheckpointError, match="expects"):  # a config that does not match the weights
        timm_to_released(random_tower(6).state_dict(), VisionConfig.from_preset("vit-small-cpu"))
