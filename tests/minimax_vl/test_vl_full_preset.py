"""The released configuration, built on the meta device: parameter counts and the checkpoint manifest.

Expected values are derived here from SPEC_NOTES §5.1, §5.2, §1.1 and §6.1 (the architecture and the naming rules),
not read back from the model, so a wrong layer, width or name in the model fails the comparison.
"""
import pytest
import torch

from minimax_vl.config import MiniMaxVL01Config
from minimax_vl.model import MiniMaxVL01, parameter_counts
from minimax_vl.weights import released_state_dict

# SPEC_NOTES §1.1 / §5.1 sizes of the released model.
HIDDEN, LAYERS, HEADS, KV_HEADS, HEAD_DIM, VOCAB = 6144, 80, 64, 8, 128, 200064
EXPERTS, EXPERT_FFN = 32, 9216
VIT_WIDTH, VIT_LAYERS, VIT_MLP, PATCH, POSITIONS = 1024, 24, 4096, 14, 577


@pytest.fixture(scope="module")
def released_on_meta():
    config = MiniMaxVL01Config.from_preset("minimax-vl-01")
    with torch.device("meta"):
        model = MiniMaxVL01(config)
    return model


def _is_softmax_layer(i: int) -> bool:
    return (i + 1) % 8 == 0  # SPEC_NOTES §1.1: one softmax layer after every seven lightning layers


def expected_manifest() -> dict[str, tuple[int, ...]]:
    """SPEC_NOTES §6.1: 13 globals + 103 tensors per text layer + 16 per ViT layer, shapes from the architecture."""
    inner = HEADS * HEAD_DIM  # 8192: attention width != hidden size
    names = {
        "language_model.model.embed_tokens.weight": (VOCAB, HIDDEN),
        "language_model.model.norm.weight": (HIDDEN,),
        "language_model.lm_head.weight": (VOCAB, HIDDEN),
        "vision_tower.vision_model.embeddings.class_embedding": (VIT_WIDTH,),
        "vision_tower.vision_model.embeddings.patch_embedding.weight": (VIT_WIDTH, 3, PATCH, PATCH),
        "vision_tower.vision_model.embeddings.position_embedding.weight": (POSITIONS, VIT_WIDTH),
        "vision_tower.vision_model.pre_layrnorm.weight": (VIT_WIDTH,),
        "vision_tower.vision_model.pre_layrnorm.bias": (VIT_WIDTH,),
        "multi_modal_projector.linear_1.weight": (HIDDEN, VIT_WIDTH),
        "multi_modal_projector.linear_1.bias": (HIDDEN,),
        "multi_modal_projector.linear_2.weight": (HIDDEN, HIDDEN),
        "multi_modal_projector.linear_2.bias": (HIDDEN,),
        "image_newline": (HIDDEN,),
    }
    assert len(names) == 13
    for i in range(LAYERS):
        p = f"language_model.model.layers.{i}."
        layer = {
            "input_layernorm.weight": (HIDDEN,),
            "post_attention_layernorm.weight": (HIDDEN,),
            "block_sparse_moe.gate.weight": (EXPERTS, HIDDEN),
        }
        for e in range(EXPERTS):
            layer[f"block_sparse_moe.experts.{e}.w1.weight"] = (EXPERT_FFN, HIDDEN)
            layer[f"block_sparse_moe.experts.{e}.w3.weight"] = (EXPERT_FFN, HIDDEN)
            layer[f"block_sparse_moe.experts.{e}.w2.weight"] = (HIDDEN, EXPERT_FFN)
        if _is_softmax_layer(i):
            layer.update({
                "self_attn.q_proj.weight": (inner, HIDDEN),
                "self_attn.k_proj.weight": (KV_HEADS * HEAD_DIM, HIDDEN),
                "self_attn.v_proj.weight": (KV_HEADS * HEAD_DIM, HIDDEN),
                "self_attn.o_proj.weight": (HIDDEN, inner),
            })
        else:
            layer.update({
                "self_attn.qkv_proj.weight": (3 * inner, HIDDEN),
                "self_attn.output_gate.weight": (inner, HIDDEN),
                "self_attn.norm.weight": (inner,),
                "self_attn.out_proj.weight": (HIDDEN, inner),
            })
        assert len(layer) == 103
        names.update({p + k: v for k, v in layer.items()})
    for j in range(VIT_LAYERS):
        p = f"vision_tower.vision_model.encoder.layers.{j}."
        layer = {}
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            layer[f"self_attn.{proj}.weight"] = (VIT_WIDTH, VIT_WIDTH)
            layer[f"self_attn.{proj}.bias"] = (VIT_WIDTH,)
        for norm in ("layer_norm1", "layer_norm2"):
            layer[f"{norm}.weight"] = (VIT_WIDTH,)
            layer[f"{norm}.bias"] = (VIT_WIDTH,)
        layer.update({"mlp.fc1.weight": (VIT_MLP, VIT_WIDTH), "mlp.fc1.bias": (VIT_MLP,),
                      "mlp.fc2.weight": (VIT_WIDTH, VIT_MLP), "mlp.fc2.bias": (VIT_WIDTH,)})
        assert len(layer) == 16
        names.update({p + k: v for k, v in layer.items()})
    return names


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def test_parameter_counts(released_on_meta):
    counts = parameter_counts(released_on_meta)
    assert counts["vision_tower"] == 303_505_408  # SPEC_NOTES §5.1: 303.5 M without post-LN
    assert counts["multi_modal_projector"] == 44_052_480  # SPEC_NOTES §5.2: ≈44.1 M
    assert counts["image_newline"] == HIDDEN
    # 456.09 B (SPEC_NOTES §1.1), exactly the sum of the manifest's text tensors.
    text = sum(_numel(s) for k, s in expected_manifest().items() if k.startswith("language_model."))
    assert counts["language_model"] == text
    assert round(counts["language_model"] / 1e9, 2) == 456.09
    assert counts["total"] == 303_505_408 + 44_052_480 + HIDDEN + text
    # Built on meta: nothing was allocated.
    assert all(p.device.type == "meta" for p in released_on_meta.parameters())


def test_vit_and_projector_counts_from_formula():
    """The two vision-side numbers above, re-derived from the layer sizes (SPEC_NOTES §5.1, §5.2)."""
    manifest = expected_manifest()
    vit = sum(_numel(s) for k, s in manifest.items() if k.startswith("vision_tower."))
    projector = sum(_numel(s) for k, s in manifest.items() if k.startswith("multi_modal_projector."))
    assert vit == 303_505_408
    assert projector == 44_052_480


def test_released_state_dict_is_the_spec_manifest(released_on_meta):
    state = released_state_dict(released_on_meta)
    expected = expected_manifest()
    assert len(expected) == 13 + 80 * 103 + 24 * 16 == 8637
    missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    assert not missing and not extra, f"missing {missing[:5]}, unexpected {extra[:5]}"
    assert len(state) == 8637
    wrong = {k: (tuple(state[k].shape), v) for k, v in expected.items() if tuple(state[k].shape) != v}
    assert not wrong, f"shape mismatches (got, expected): {dict(list(wrong.items())[:5])}"
    # A handful spelled out, as SPEC_NOTES §6.1 lists them.
    assert tuple(state["language_model.model.layers.7.self_attn.k_proj.weight"].shape) == (1024, 6144)
    assert tuple(state["language_model.model.layers.0.self_attn.qkv_proj.weight"].shape) == (24576, 6144)
    assert tuple(state["language_model.model.layers.79.block_sparse_moe.experts.31.w2.weight"].shape) == (6144, 9216)
    assert tuple(state["vision_tower.vision_model.embeddings.position_embedding.weight"].shape) == (577, 1024)
    assert tuple(state["vision_tower.vision_model.encoder.layers.23.self_attn.q_proj.weight"].shape) == (1024, 1024)
    assert not any("post_layernorm" in k or "coefficient" in k or "shared_mlp" in k for k in state)
