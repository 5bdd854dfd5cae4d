"""transformers-layout <-> released-layout conversion, checked against a tiny transformers MiniMaxForCausalLM."""
import pytest
import torch
import torch.nn.functional as F
import transformers

from text_backbone.convert import (
    RELEASED,
    TRANSFORMERS,
    UnknownLayoutError,
    detect_layout,
    key_map_for,
    load_text_weights,
    released_to_transformers,
    transformers_to_released,
)
from text_backbone.weights_io import Drop, convert_state_dict, load_into_module, save_safetensors

LAYER_TYPES = ["linear_attention", "full_attention", "linear_attention"]
HIDDEN, INTERMEDIATE, EXPERTS, HEADS, KV_HEADS, HEAD_DIM, VOCAB = 16, 24, 3, 2, 1, 8, 64
DERIVED = ["*.self_attn.slope_rate", "*.self_attn.query_decay", "*.self_attn.key_decay", "*.self_attn.diagonal_decay"]


def tiny_transformers_model(seed):
    torch.manual_seed(seed)
    config = transformers.MiniMaxConfig(
        vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTERMEDIATE, num_hidden_layers=len(LAYER_TYPES),
        num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, head_dim=HEAD_DIM, num_local_experts=EXPERTS,
        num_experts_per_tok=2, layer_types=LAYER_TYPES, block_size=16,
    )
    model = transformers.MiniMaxForCausalLM(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():  # transformers leaves some weights at 0/1; make every one distinct
            parameter.normal_(0, 0.3)
    return model


@pytest.fixture(scope="module")
def hf_model():
    return tiny_transformers_model(seed=0)


def released_key_shapes():
    """The released layout (SPEC_NOTES §6.2) for the tiny config, written out independently of the converter."""
    shapes = {"model.embed_tokens.weight": (VOCAB, HIDDEN), "model.norm.weight": (HIDDEN,),
              "lm_head.weight": (VOCAB, HIDDEN)}
    for i, kind in enumerate(LAYER_TYPES):
        p = f"model.layers.{i}."
        shapes[p + "input_layernorm.weight"] = (HIDDEN,)
        shapes[p + "post_attention_layernorm.weight"] = (HIDDEN,)
        shapes[p + "block_sparse_moe.gate.weight"] = (EXPERTS, HIDDEN)
        for e in range(EXPERTS):
            shapes[p + f"block_sparse_moe.experts.{e}.w1.weight"] = (INTERMEDIATE, HIDDEN)
            shapes[p + f"block_sparse_moe.experts.{e}.w3.weight"] = (INTERMEDIATE, HIDDEN)
            shapes[p + f"block_sparse_moe.experts.{e}.w2.weight"] = (HIDDEN, INTERMEDIATE)
        if kind == "full_attention":
            shapes[p + "self_attn.q_proj.weight"] = (HEADS * HEAD_DIM, HIDDEN)
            shapes[p + "self_attn.k_proj.weight"] = (KV_HEADS * HEAD_DIM, HIDDEN)
            shapes[p + "self_attn.v_proj.weight"] = (KV_HEADS * HEAD_DIM, HIDDEN)
            shapes[p + "self_attn.o_proj.weight"] = (HIDDEN, HEADS * HEAD_DIM)
        else:
            shapes[p + "self_attn.qkv_proj.weight"] = (3 * HEADS * HEAD_DIM, HIDDEN)
            shapes[p + "self_attn.output_gate.weight"] = (HEADS * HEAD_DIM, HIDDEN)
            shapes[p + "self_attn.norm.weight"] = (HEADS * HEAD_DIM,)
            shapes[p + "self_attn.out_proj.weight"] = (HIDDEN, HEADS * HEAD_DIM)
    return shapes


def test_transformers_state_dict_converts_to_the_released_layout(hf_model):
    hf_state = hf_model.state_dict()
    released = convert_state_dict(hf_state, transformers_to_released())

    assert {k: tuple(v.shape) for k, v in released.items()} == released_key_shapes()
    for i in range(len(LAYER_TYPES)):
        gate_up = hf_state[f"model.layers.{i}.mlp.experts.gate_up_proj"]
        down = hf_state[f"model.layers.{i}.mlp.experts.down_proj"]
        for e in range(EXPERTS):
            expert = f"model.layers.{i}.block_sparse_moe.experts.{e}"
            assert torch.equal(released[f"{expert}.w1.weight"], gate_up[e, :INTERMEDIATE])
            assert torch.equal(released[f"{expert}.w3.weight"], gate_up[e, INTERMEDIATE:])
            assert torch.equal(released[f"{expert}.w2.weight"], down[e])
        assert torch.equal(released[f"model.layers.{i}.block_sparse_moe.gate.weight"],
                           hf_state[f"model.layers.{i}.mlp.gate.weight"])


def test_unfused_experts_compute_what_transformers_computes(hf_model):
    """w1 is the SiLU (gate) branch, w3 the linear (up) branch, w2 the down projection (SPEC_NOTES §4.1)."""
    released = convert_state_dict(hf_model.state_dict(), transformers_to_released())
    experts = hf_model.model.layers[0].mlp.experts
    x = torch.randn(5, HIDDEN)
    for e in range(EXPERTS):
        w = {n: released[f"model.layers.0.block_sparse_moe.experts.{e}.{n}.weight"] for n in ("w1", "w2", "w3")}
        ours = F.linear(F.silu(F.linear(x, w["w1"])) * F.linear(x, w["w3"]), w["w2"])
        with torch.no_grad():
            theirs = experts(x, torch.full((5, 1), e), torch.ones(5, 1))
        torch.testing.assert_close(ours, theirs)


def test_round_trip_back_to_transformers_is_exact(hf_model):
    hf_state = hf_model.state_dict()
    released = convert_state_dict(hf_state, transformers_to_released())
    back = convert_state_dict(released, released_to_transformers())

    buffers = ("slope_rate", "query_decay", "key_decay", "diagonal_decay")
    derived = {k for k in hf_state if k.rsplit(".", 1)[-1] in buffers}
    assert len(derived) == 4 * LAYER_TYPES.count("linear_attention")
    assert set(back) == set(hf_state) - derived
    for key, tensor in back.items():
        assert torch.equal(tensor, hf_state[key]), key


def test_checkpoints_on_disk_load_in_either_layout_and_give_identical_logits(hf_model, tmp_path, build_module):
    """transformers checkpoint -> our layout (meta module) -> saved -> a fresh transformers model: same logits."""
    save_safetensors(hf_model.state_dict(), tmp_path / "hf", max_shard_size=4000)
    with torch.device("meta"):
        ours = build_module(released_key_shapes())
    report = load_text_weights(ours, tmp_path / "hf")
    assert report.missing == () and len(report.dropped) == 4 * LAYER_TYPES.count("linear_attention")

    save_safetensors(ours, tmp_path / "released", max_shard_size=4000)
    again = build_module(released_key_shapes())
    load_text_weights(again, tmp_path / "released")  # detected as released: identity map
    for key, tensor in ours.state_dict().items():
        assert torch.equal(again.state_dict()[key], tensor), key

    fresh = tiny_transformers_model(seed=1)
    load_into_module(fresh, tmp_path / "released", key_map=released_to_transformers(), allow_missing=DERIVED)
    ids = torch.randint(0, VOCAB, (2, 11))
    with torch.no_grad():
        assert torch.equal(fresh(ids).logits, hf_model(ids).logits)


def test_layout_detection(hf_model):
    hf_keys = list(hf_model.state_dict())
    released_keys = list(released_key_shapes())
    assert detect_layout(hf_keys) == TRANSFORMERS
    assert detect_layout(released_keys) == RELEASED
    assert detect_layout(["language_model." + k for k in released_keys]) == RELEASED  # VL prefix
    assert detect_layout(["model.language_model." + k[len("model."):] for k in hf_keys if k.startswith("model.")]) \
        == TRANSFORMERS
    # The released map renames nothing; it only drops the decay buffers transformers' save_pretrained keeps.
    assert all(isinstance(rule, Drop) for rule in key_map_for(RELEASED).rules)
    assert key_map_for(TRANSFORMERS) == transformers_to_released()


@pytest.mark.parametrize("keys, message", [
    (["encoder.weight", "decoder.bias", "layers.0.fc.weight"], "not a MiniMax-Text-01 checkpoint"),
    # Mixtral shares the released expert names but has no lightning attention.
    (["model.layers.0.block_sparse_moe.experts.0.w1.weight", "model.layers.0.self_attn.q_proj.weight"],
     "not a MiniMax-Text-01 checkpoint"),
    (["model.layers.0.self_attn.qkv_proj.weight", "model.layers.0.block_sparse_moe.gate.weight",
      "model.layers.1.mlp.experts.gate_up_proj"], "match both"),
    (["model.layers.0.self_attn.qkv_proj.weight", "model.layers.0.feed_forward.w1.weight"], "match neither"),
])
def test_layout_detection_rejects_other_checkpoints(keys, message):
    with pytest.raises(UnknownLayoutError, match=message):
        detect_layout(keys)


def test_random_dict_is_rejected():
    generator = torch.Generator().manual_seed(0)
    keys = [f"block{int(i)}.weight" for i in torch.randint(0, 1000, (20,), generator=generator)]
    with pytest.raises(UnknownLayoutError):
        detect_layout(keys)


def test_vl_prefixes_map_the_language_model(hf_model):
    """The VL model reuses the rules with its own prefixes (transformers VL -> released VL)."""
    hf_state = {"model.language_model." + k[len("model."):]: v for k, v in hf_model.state_dict().items()
                if k.startswith("model.layers.")}
    rules = transformers_to_released(source_prefix="model.language_model.", target_prefix="language_model.model.")
    released = convert_state_dict(hf_state, rules)
    expected = {"language_model." + k for k in released_key_shapes() if k.startswith("model.layers.")}
    assert set(released) == expected
