"""Checkpoint I/O with the real text model: meta-device loading and the converter's names match the model's."""
import torch
import transformers

from text_backbone.config import MiniMaxText01Config
from text_backbone.convert import RELEASED, TRANSFORMERS, detect_layout, load_text_weights, transformers_to_released
from text_backbone.model import MiniMaxText01ForCausalLM
from text_backbone.weights_io import convert_state_dict, save_safetensors


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return MiniMaxText01ForCausalLM(MiniMaxText01Config.from_preset("tiny")).eval()


def test_sharded_save_then_meta_load_gives_identical_logits(tmp_path):
    source = tiny_model()
    save_safetensors(source, tmp_path, max_shard_size="200KB")
    with torch.device("meta"):
        loaded = MiniMaxText01ForCausalLM(source.config)

    report = load_text_weights(loaded, tmp_path, dtype=torch.float32)

    assert report.missing == () and len(report.loaded) == len(source.state_dict())
    assert not any(t.is_meta for t in [*loaded.parameters(), *loaded.buffers()])  # derived buffers recomputed
    ids = torch.randint(0, source.config.vocab_size, (2, 37))
    with torch.no_grad():
        assert torch.equal(loaded.eval()(ids).logits, source(ids).logits)


def test_bfloat16_load_keeps_derived_buffers_in_float32(tmp_path):
    save_safetensors(tiny_model(), tmp_path)
    with torch.device("meta"):
        model = MiniMaxText01ForCausalLM(MiniMaxText01Config.from_preset("tiny"))
    load_text_weights(model, tmp_path, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert {b.dtype for b in model.buffers() if b.is_floating_point()} == {torch.float32}


def test_transformers_names_convert_to_exactly_the_model_names():
    config = MiniMaxText01Config.from_preset("tiny")
    hf_config = transformers.MiniMaxConfig(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers, num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads, head_dim=config.head_dim,
        num_local_experts=config.num_local_experts, block_size=16,
        layer_types=["full_attention" if (i + 1) % 8 == 0 else "linear_attention"
                     for i in range(config.num_hidden_layers)],
    )
    hf_state = transformers.MiniMaxForCausalLM(hf_config).state_dict()
    ours = tiny_model().state_dict()

    converted = convert_state_dict(hf_state, transformers_to_released())

    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in ours.items()}
    assert detect_layout(hf_state) == TRANSFORMERS and detect_layout(ours) == RELEASED
