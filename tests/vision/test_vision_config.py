"""VisionConfig: presets, validation, and the released `clip_vision_model` schema."""
import dataclasses

import pytest

from vision.config import PRESETS, VisionConfig


def test_released_preset_matches_spec_5_1():
    config = VisionConfig.from_preset("vit-303m")
    assert (config.image_size, config.patch_size) == (336, 14)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (1024, 24, 16)
    assert (config.intermediate_size, config.hidden_act, config.layer_norm_eps) == (4096, "gelu", 1e-5)
    assert (config.grid_size, config.num_patches, config.num_positions, config.head_dim) == (24, 576, 577, 64)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_valid_and_round_trips(name):
    config = VisionConfig.from_preset(name)
    assert config.image_size % config.patch_size == 0
    assert VisionConfig.from_dict(config.to_dict()) == config


def test_small_presets_are_small():
    assert VisionConfig.from_preset("tiny").num_patches == 16
    for name in ("vit-small-cpu", "vit-medium-cpu"):
        config = VisionConfig.from_preset(name)
        assert 192 <= config.hidden_size <= 256 and 4 <= config.num_hidden_layers <= 6


def test_reads_a_released_vision_config_block():
    # The released config.json's vision_config carries CLIP and transformers fields the tower does not use.
    released = {
        "model_type": "clip_vision_model", "hidden_size": 1024, "intermediate_size": 4096,
        "projection_dim": 6144, "num_hidden_layers": 24, "num_attention_heads": 16, "num_channels": 3,
        "image_size": 336, "patch_size": 14, "hidden_act": "gelu", "layer_norm_eps": 1e-05,
        "attention_dropout": 0.0, "initializer_range": 0.02, "initializer_factor": 1.0,
        "architectures": ["CLIPVisionModel"], "torch_dtype": "bfloat16",
    }
    assert VisionConfig.from_dict(released) == VisionConfig.from_preset("vit-303m")


def test_to_dict_is_the_clip_schema():
    data = VisionConfig.from_preset("tiny").to_dict()
    assert data["model_type"] == "clip_vision_model"
    assert {"image_size", "patch_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
            "intermediate_size", "hidden_act", "layer_norm_eps", "num_channels"} <= set(data)


@pytest.mark.parametrize("changes, message", [
    ({"image_size": 50}, "multiple of patch_size"),
    ({"hidden_size": 33}, "divisible by num_attention_heads"),
    ({"hidden_act": "relu"}, "not supported"),
    ({"num_hidden_layers": 0}, "positive integer"),
    ({"patch_size": 14.0}, "positive integer"),
    ({"layer_norm_eps": 0.0}, "layer_norm_eps"),
    ({"attention_dropout": 1.0}, "attention_dropout"),
])
def test_invalid_configs_name_the_problem(changes, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(VisionConfig.from_preset("tiny"), **changes)


def test_rejects_other_model_types_and_unknown_presets():
    with pytest.raises(ValueError, match="siglip_vision_model"):
        VisionConfig.from_dict({"model_type": "siglip_vision_model"})
    with pytest.raises(KeyError, match="available"):
        VisionConfig.from_preset("vit-huge")


def test_config_is_immutable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        VisionConfig().image_size = 224
