"""VisionTower == transformers' CLIPVisionModel on converted weights; the real size on the meta device."""
import pytest
import torch

from vision.config import VisionConfig
from vision.convert import released_to_timm, timm_to_released
from vision.vit import VisionTower, feature_block_index

transformers = pytest.importorskip("transformers")  # a test dependency (pyproject [test]); skip only if absent

# Awkward sizes on purpose: 3x3 patches, 3 heads of width 16, an MLP width that is not 4x.
AWKWARD = VisionConfig(image_size=42, patch_size=14, hidden_size=48, num_hidden_layers=3,
                       num_attention_heads=3, intermediate_size=80)
# Same math in a different order (one fused qkv matmul vs three, timm vs transformers attention calls):
# float32 rounding (~1e-7 relative) over 3 residual blocks of O(1) activations stays well under 1e-5.
TOLERANCE = dict(rtol=1e-5, atol=1e-5)


def make_clip(config: VisionConfig, seed: int = 0):
    """A random transformers CLIP ViT whose every parameter (norms included) is non-trivial."""
    torch.manual_seed(seed)
    hf_config = transformers.CLIPVisionConfig(
        image_size=config.image_size, patch_size=config.patch_size, hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers, num_attention_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size, hidden_act=config.hidden_act,
        layer_norm_eps=config.layer_norm_eps,
    )
    clip = transformers.CLIPVisionModel(hf_config).eval()
    with torch.no_grad():
        for name, param in clip.named_parameters():
            is_norm_weight = ("layer_norm" in name or "layrnorm" in name or "layernorm" in name) and "weight" in name
            param.copy_(1.0 + 0.2 * torch.randn_like(param) if is_norm_weight else 0.2 * torch.randn_like(param))
    return clip


def released_names(clip) -> dict:
    """CLIP's state dict under the released names (transformers 5 drops the `vision_model.` module level)."""
    return {k if k.startswith("vision_model.") else f"vision_model.{k}": v for k, v in clip.state_dict().items()}


def tower_from(clip, config: VisionConfig, **kwargs) -> VisionTower:
    tower = VisionTower(config, **kwargs).eval()
    tower.load_released_state_dict(released_names(clip))
    return tower


@pytest.fixture(scope="module")
def clip_and_states():
    clip = make_clip(AWKWARD)
    pixels = torch.randn(5, 3, 42, 42)
    with torch.no_grad():
        states = clip(pixel_values=pixels, output_hidden_states=True).hidden_states
    assert len(states) == AWKWARD.num_hidden_layers + 1
    return clip, pixels, states


@pytest.mark.parametrize("layer", [-1, -2, -3, 1, 3])
def test_matches_clip_hidden_states_without_cls(clip_and_states, layer):
    clip, pixels, states = clip_and_states
    tower = tower_from(clip, AWKWARD, vision_feature_layer=layer)
    with torch.no_grad():
        features = tower(pixels)
    assert features.shape == (5, 9, 48)
    torch.testing.assert_close(features, states[layer][:, 1:], **TOLERANCE)


def test_full_strategy_keeps_cls_first(clip_and_states):
    clip, pixels, states = clip_and_states
    tower = tower_from(clip, AWKWARD, vision_feature_select_strategy="full")
    with torch.no_grad():
        features = tower(pixels)
    assert features.shape == (5, 10, 48) and tower.num_features_per_tile == 10
    torch.testing.assert_close(features, states[-1], **TOLERANCE)


def test_post_layernorm_is_not_applied(clip_and_states):
    clip, pixels, states = clip_and_states
    assert "post_layernorm.weight" in clip.state_dict()  # CLIP has it; the converter must skip it
    tower = tower_from(clip, AWKWARD)
    with torch.no_grad():
        features = tower(pixels)
        clip_core = getattr(clip, "vision_model", clip)  # transformers 4 nests it, 5 does not
        post_normed = clip_core.post_layernorm(states[-1][:, 1:])
    assert not torch.allclose(features, post_normed, atol=1e-2)
    assert not {"norm.weight", "fc_norm.weight"} & set(tower.state_dict())  # no final norm anywhere


def test_quick_gelu_variant_matches_clip():
    config = VisionConfig(image_size=28, patch_size=14, hidden_size=32, num_hidden_layers=2,
                          num_attention_heads=2, intermediate_size=64, hidden_act="quick_gelu")
    clip = make_clip(config, seed=1)
    pixels = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        expected = clip(pixel_values=pixels, output_hidden_states=True).hidden_states[-1][:, 1:]
        torch.testing.assert_close(tower_from(clip, config)(pixels), expected, **TOLERANCE)


def test_gradients_reach_every_used_parameter():
    tower = VisionTower(VisionConfig.from_preset("tiny"), vision_feature_layer=-1)
    tower(torch.randn(2, 3, 56, 56)).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in tower.parameters())


def test_layer_minus_two_skips_the_last_block():
    tower = VisionTower(VisionConfig.from_preset("tiny"), vision_feature_layer=-2)
    tower(torch.randn(1, 3, 56, 56)).sum().backward()
    assert all(p.grad is None for p in tower.blocks[-1].parameters())


def test_feature_layer_indexing():
    assert feature_block_index(-1, 24) == 23 and feature_block_index(-2, 24) == 22
    assert feature_block_index(24, 24) == 23 and feature_block_index(1, 24) == 0
    for bad in (0, -25, 25):
        with pytest.raises(ValueError, match="does not select an encoder layer"):
            feature_block_index(bad, 24)


def test_bad_inputs_get_clear_errors():
    tower = VisionTower(VisionConfig.from_preset("tiny"))
    with pytest.raises(ValueError, match=r"\[N, 3, 56, 56\]"):
        tower(torch.randn(1, 3, 64, 64))
    with pytest.raises(TypeError, match="floating-point"):
        tower(torch.zeros(1, 3, 56, 56, dtype=torch.uint8))
    with pytest.raises(ValueError, match="select_strategy"):
        VisionTower(VisionConfig.from_preset("tiny"), vision_feature_select_strategy="cls")


def test_released_size_builds_on_meta_with_303_5m_parameters():
    config = VisionConfig.from_preset("vit-303m")
    tower = VisionTower(config, device="meta")
    assert all(p.device.type == "meta" for p in tower.parameters())
    c, layers, mlp, positions, patch = 1024, 24, 4096, 577, 14
    embeddings = c * 3 * patch * patch + c + positions * c + 2 * c  # patch conv (no bias), CLS, positions, pre-LN
    per_layer = 4 * (c * c + c) + 2 * (2 * c) + (mlp * c + mlp) + (c * mlp + c)  # q,k,v,out; 2 LNs; fc1; fc2
    expected = embeddings + layers * per_layer
    count = sum(p.numel() for p in tower.parameters())
    assert count == expected == 303_505_408
    assert round(count / 1e6, 1) == 303.5
    assert tower.patch_embed.proj.bias is None
    # The meta tower accepts the released names (shapes and all) without allocating anything.
    released = timm_to_released(tower.state_dict(), config)
    assert set(released_to_timm(released, config)) == set(tower.state_dict())


def test_meta_build_then_assign_load_equals_a_normal_build():
    config = VisionConfig.from_preset("tiny")
    torch.manual_seed(0)
    reference = VisionTower(config).eval()
    released = {k: v.clone() for k, v in timm_to_released(reference.state_dict(), config).items()}
    tower = VisionTower(config, device="meta")
    tower.load_released_state_dict(released, assign=True)  # how a big-checkpoint loader fills a meta model
    tower.eval()
    assert all(p.device.type == "cpu" for p in tower.parameters())
    pixels = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        assert torch.equal(tower(pixels), reference(pixels))
