"""MiniMaxText01Config: presets, validation, both config.json schemas."""
import json

import pytest

from text_backbone.config import MiniMaxText01Config, deepnorm_alpha, hybrid_attn_types


def test_released_preset_matches_spec():
    cfg = MiniMaxText01Config.from_preset("minimax-text-01")
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.head_dim) == (6144, 80, 64, 128)
    assert (cfg.num_key_value_heads, cfg.vocab_size, cfg.intermediate_size) == (8, 200064, 9216)
    assert (cfg.num_local_experts, cfg.num_experts_per_tok, cfg.rotary_dim, cfg.rope_theta) == (32, 2, 64, 1e7)
    assert cfg.softmax_layer_indices == list(range(7, 80, 8))
    assert cfg.layernorm_mlp_alpha == pytest.approx(deepnorm_alpha(80)) == pytest.approx(3.5565588200778455)


def test_round_trip_released_schema(tmp_path):
    cfg = MiniMaxText01Config.from_preset("tiny")
    cfg.save(tmp_path / "config.json")
    raw = json.loads((tmp_path / "config.json").read_text())
    assert raw["attn_type_list"] == hybrid_attn_types(8) and raw["architectures"] == ["MiniMaxText01ForCausalLM"]
    assert MiniMaxText01Config.load(tmp_path) == cfg


def test_reads_transformers_schema():
    raw = {
        "model_type": "minimax", "hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 32, "num_local_experts": 4,
        "num_experts_per_tok": 2, "vocab_size": 100, "max_position_embeddings": 256,
        "layer_types": ["linear_attention", "linear_attention", "linear_attention", "full_attention"],
        "full_attn_alpha_factor": 2.0, "full_attn_beta_factor": 0.5, "linear_attn_alpha_factor": 3.0,
        "linear_attn_beta_factor": 0.25, "mlp_alpha_factor": 1.5, "mlp_beta_factor": 0.75,
        "rope_parameters": {"rope_theta": 5000.0, "rope_type": "default"}, "block_size": 8,
    }
    cfg = MiniMaxText01Config.from_dict(raw)
    assert cfg.attn_type_list == [0, 0, 0, 1]
    assert (cfg.layernorm_full_attention_alpha, cfg.layernorm_full_attention_beta) == (2.0, 0.5)
    assert (cfg.layernorm_linear_attention_alpha, cfg.layernorm_linear_attention_beta) == (3.0, 0.25)
    assert (cfg.layernorm_mlp_alpha, cfg.layernorm_mlp_beta) == (1.5, 0.75)
    assert cfg.rope_theta == 5000.0 and cfg.block_size == 8
    assert cfg.rotary_dim == 16  # no partial-rotary field: transformers rotates the whole head
    raw["rope_parameters"]["partial_rotary_factor"] = 0.5
    assert MiniMaxText01Config.from_dict(raw).rotary_dim == 8


def test_vl_text_config_shared_list_accepted():
    cfg = MiniMaxText01Config.from_dict({**MiniMaxText01Config.from_preset("tiny").to_dict(), "shared_intermediate_size": [0]})
    assert cfg.shared_intermediate_size == 0


@pytest.mark.parametrize(
    "override, message",
    [
        ({"num_attention_heads": 3}, "multiple of num_key_value_heads"),
        ({"attn_type_list": [0, 2, 0, 0, 0, 0, 0, 1]}, "must be 0 (lightning) or 1 (softmax)"),
        ({"attn_type_list": [0, 1]}, "2 entries for 8 layers"),
        ({"rotary_dim": 33}, "rotary_dim must be even"),
        ({"hidden_size": 0}, "hidden_size must be a positive integer"),
        ({"num_experts_per_tok": 9}, "num_experts_per_tok"),
        ({"postnorm": False}, "postnorm=False"),
        ({"shared_intermediate_size": 128}, "shared expert"),
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"expert_capacity_factor": 0.0}, "expert_capacity_factor"),
    ],
)
def test_invalid_values_are_rejected_with_a_clear_message(override, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        MiniMaxText01Config.from_preset("tiny", **override)


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        MiniMaxText01Config.from_preset("huge")
