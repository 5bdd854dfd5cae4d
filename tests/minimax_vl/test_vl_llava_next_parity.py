"""Acceptance: a tiny transformers LLaVA-NeXT with a MiniMax text model gives our logits (SPEC_NOTES §5).

MiniMax-VL-01 is LLaVA-NeXT's design (CLIP ViT -> 2-layer GELU MLP -> anyres packing with `image_newline`)
around MiniMax-Text-01, so transformers' `LlavaNextForConditionalGeneration` with a `CLIPVisionModel`
(exact GELU) and a `MiniMaxModel` is an independent implementation of the same network. We convert its
weights with `minimax_vl.convert_llava_next`, feed both models the same tiles (from our processor) and the
same ids, and compare fp32 logits.

Where transformers departs from the released model we configure around it, as in
tests/text_backbone/test_transformers_parity.py:
- transformers 5.24's MiniMax rotates the whole head, so the converted config has rotary_dim = head_dim;
- its base lightning slopes skip ALiBi's interleaving for non-power-of-two head counts: 4 heads here;
- its slope layer factor 1 - l/(L-1+1e-5) differs from the released 1 - l/(L-1) by ~1e-6 relative (SPEC_NOTES §10.4),
  far below the tolerance.
- LLaVA-NeXT unpads with `int(round(h * (Wc / w), 7))`, the released model with the integer floor
  `h * Wc // w` (SPEC_NOTES §5.4). These agree unless the exact quotient lies within 5e-8 below an integer, which
  needs a side of over 2e7 px; the parity images are ordinary sizes, and the last test pins our floor on a
  size where the two differ.
"""
import pytest
import torch

transformers = pytest.importorskip("transformers", reason="transformers is in the test extra; `make test` installs it")

from transformers.models.llava_next.modeling_llava_next import (  # noqa: E402
    get_anyres_image_grid_shape,
    unpad_image,
)

from minimax_vl.convert_llava_next import (  # noqa: E402
    LlavaNextConversionError,
    config_from_llava_next,
    from_llava_next,
)
from minimax_vl.processor import MiniMaxVL01Processor  # noqa: E402
from vision.anyres import default_grid_pinpoints, num_image_tokens, pack_image_features  # noqa: E402

TILE, PATCH = 56, 14
PINPOINTS = [list(p) for p in default_grid_pinpoints(TILE, max_tiles=6, max_tiles_per_side=3)]  # the tiny grid
# (height, width) sizes: 1x1 .. 3x2 tile grids, wide and tall, exact and padded fits.
PARITY_SIZES = [(100, 150), (60, 200), (130, 90), (56, 56), (170, 40)]


def _tiny_llava_next(image_token_index, seed=0):
    text = transformers.MiniMaxConfig(
        vocab_size=4096, hidden_size=64, intermediate_size=48, num_hidden_layers=8, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, num_local_experts=4, num_experts_per_tok=2, max_position_embeddings=1024,
        layer_types=["linear_attention"] * 7 + ["full_attention"], block_size=16,  # prompts are ~100-500 tokens
        full_attn_alpha_factor=1.7, full_attn_beta_factor=0.6, linear_attn_alpha_factor=2.2,
        linear_attn_beta_factor=0.8, mlp_alpha_factor=1.9, mlp_beta_factor=0.7,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, tie_word_embeddings=False,
    )
    vision = transformers.CLIPVisionConfig(
        image_size=TILE, patch_size=PATCH, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=128, hidden_act="gelu", layer_norm_eps=1e-5,
    )
    config = transformers.LlavaNextConfig(
        vision_config=vision, text_config=text, image_token_index=image_token_index, vision_feature_layer=-1,
        vision_feature_select_strategy="default", projector_hidden_act="gelu", image_grid_pinpoints=PINPOINTS,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = transformers.LlavaNextForConditionalGeneration(config).eval()
    with torch.no_grad():  # non-trivial norms and larger activations, so every term matters
        for name, param in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                param.copy_(1.0 + 0.2 * torch.randn_like(param))
            elif "norm" in name and name.endswith("bias"):
                param.copy_(0.1 * torch.randn_like(param))
            elif param.dim() >= 2 and ".language_model." in name:
                param.mul_(4.0)
            elif param.dim() >= 1 and "bias" in name:
                param.copy_(0.05 * torch.randn_like(param))
    return model


@pytest.fixture(scope="module")
def models():
    from minimax_vl.tokenizer import shipped_tokenizer

    theirs = _tiny_llava_next(shipped_tokenizer().image_token_id)
    ours = from_llava_next(theirs)
    ours.processor = MiniMaxVL01Processor.for_config(ours.config)
    return theirs, ours


def _their_inputs(pixel_values, image_sizes):
    """Our per-image tiles -> LLaVA-NeXT's [num_images, max_tiles, 3, t, t] (zero padded) and sizes [N, 2]."""
    most = max(p.shape[0] for p in pixel_values)
    stacked = torch.zeros(len(pixel_values), most, *pixel_values[0].shape[1:])
    for i, tiles in enumerate(pixel_values):
        stacked[i, : tiles.shape[0]] = tiles
    return stacked, torch.tensor(image_sizes, dtype=torch.long)


def test_converted_config(models):
    theirs, ours = models
    config = ours.config
    assert config.text_config.rotary_dim == config.text_config.head_dim == 16
    assert config.text_config.attn_type_list == [0] * 7 + [1]
    assert config.text_config.block_size == 16
    assert config.text_config.layernorm_linear_attention_alpha == 2.2
    assert config.text_config.layernorm_mlp_beta == 0.7
    assert config.vision_config.hidden_act == "gelu" and config.vision_config.image_size == TILE
    assert config.vision_feature_layer == -1 and config.vision_feature_select_strategy == "default"
    assert config.image_grid_pinpoints == PINPOINTS
    assert config.image_token_index == theirs.config.image_token_id


@pytest.mark.parametrize("batch", ["one prompt, five images", "two prompts"])
def test_logits_match_llava_next(models, batch, make_image):
    theirs, ours = models
    image_id = ours.config.image_token_index
    if batch == "two prompts":
        # Two rows of equal length (same sizes, different pixels), so no padding is involved.
        images = [make_image(100, 150, seed=10), make_image(100, 150, seed=11)]
        texts = ["Describe <image> briefly."] * 2
    else:
        images = [make_image(h, w, seed=i) for i, (h, w) in enumerate(PARITY_SIZES)]
        texts = ["Compare " + ", ".join("<image>" for _ in images) + " and tell me which is widest."]
    inputs = ours.processor(images=images, text=texts)
    ids = inputs["input_ids"]
    assert ids.shape[1] > 4 * ours.config.text_config.block_size  # several lightning blocks and a ragged one
    assert inputs["attention_mask"].all()
    pixel_values, image_sizes = _their_inputs(inputs["pixel_values"], inputs["image_sizes"])

    with torch.no_grad():
        their_features = theirs.model.get_image_features(pixel_values, image_sizes).pooler_output
        our_features = ours.encode_images(inputs["pixel_values"], inputs["image_sizes"])
        # Same per-image token counts (the unpad rounding agrees on these sizes) as our processor's placeholders.
        assert [f.shape[0] for f in their_features] == [f.shape[0] for f in our_features]
        assert int((ids == image_id).sum()) == sum(f.shape[0] for f in our_features)
        for theirs_f, ours_f in zip(their_features, our_features):
            torch.testing.assert_close(ours_f, theirs_f, rtol=1e-5, atol=1e-5)  # fp32, a 2-layer ViT + MLP

        expected = theirs(input_ids=ids, pixel_values=pixel_values, image_sizes=image_sizes).logits.float()
        got = ours(ids, inputs["pixel_values"], inputs["image_sizes"]).logits
    assert expected.abs().max() > 0.1  # the comparison is not between two near-zero tensors
    # fp32 throughout; 8 layers of different but equivalent arithmetic (chunked lightning attention, MoE
    # gathers) leave ~1e-6 differences, so 1e-4 is strict while allowing summation order.
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_images_matter_to_the_comparison(models, make_image):
    """Changing one image changes both models' logits far beyond the tolerance, so parity is not vacuous."""
    _, ours = models
    a = ours.processor(images=[make_image(100, 150, seed=10)], text="Describe <image> briefly.")
    b = ours.processor(images=[make_image(100, 150, seed=12)], text="Describe <image> briefly.")
    with torch.no_grad():
        delta = ours(a["input_ids"], a["pixel_values"], a["image_sizes"]).logits - ours(
            b["input_ids"], b["pixel_values"], b["image_sizes"]).logits
    assert delta.abs().max() > 1e-2


def _released_token_count(height, width, pinpoints, tile, patch):
    """SPEC_NOTES §5.4-5.5 written out: best grid, then the released floor unpad `h * Wc // w`."""
    best_h, best_w = max(  # most effective pixels, then least waste, first candidate on exact ties
        pinpoints, key=lambda p: (_effective(height, width, p), -(p[0] * p[1] - _effective(height, width, p))))
    g = tile // patch
    grid_h, grid_w = best_h // tile * g, best_w // tile * g
    if width * grid_h > grid_w * height:  # wider than the grid
        new_h = height * grid_w // width
        pad = (grid_h - new_h) // 2
        rows, cols = grid_h - 2 * pad, grid_w
    else:
        new_w = width * grid_h // height
        pad = (grid_w - new_w) // 2
        rows, cols = grid_h, grid_w - 2 * pad
    return g * g + rows * (cols + 1)


def released_count(h, w, pinpoints):
    return _released_token_count(h, w, pinpoints, 336, 14)


def _effective(height, width, pinpoint):
    cand_h, cand_w = pinpoint
    scale = min(cand_w / width, cand_h / height)
    return min(int(width * scale) * int(height * scale), width * height)


def _llava_next_token_count(height, width, pinpoints, tile, patch):
    """LLaVA-NeXT's count for one image: its grid shape and its unpad, on a feature map of the right size."""
    rows, cols = get_anyres_image_grid_shape((height, width), pinpoints, tile)
    g = tile // patch
    kept = unpad_image(torch.empty(0, rows * g, cols * g), (height, width)).shape[1:]
    return g * g + kept[0] * (kept[1] + 1)


def test_unpad_uses_the_released_floor_where_llava_next_rounds():
    """A 1,000,000 x 144,000,001 image (h x w) on the released grid: the best grid is 1x6 tiles (24 x 144
    features), and the rows kept are h * 144 / w = 1 - 6.9e-9. The released floor keeps 0 rows; LLaVA-NeXT's
    round(., 7) makes it 1, pads (24 - 1) // 2 = 11 rows per side and keeps 2. Only arithmetic: no pixels."""
    height, width = 1_000_000, 144 * 1_000_000 + 1
    pinpoints = [list(p) for p in default_grid_pinpoints(336)]
    ours = num_image_tokens(height, width, tile_size=336, patch_size=14, grid_pinpoints=pinpoints)
    released = _released_token_count(height, width, pinpoints, 336, 14)
    llava_next = _llava_next_token_count(height, width, pinpoints, 336, 14)
    assert ours == released == 576  # thumbnail only
    assert llava_next == 576 + 2 * (144 + 1)
    # The model's packing floors the same way (features of 1 thumbnail + 1x6 tiles, 2 channels).
    packed = pack_image_features(torch.randn(7, 576, 2), (height, width), pinpoints, 336, 14, torch.zeros(2))
    assert packed.shape == (576, 2)
    # On ordinary sizes the two agree (the parity sizes above among them).
    for h, w in PARITY_SIZES + [(336, 336), (480, 640), (1000, 1000), (768, 1024), (1080, 1920), (2000, 1000)]:
        assert _llava_next_token_count(h, w, pinpoints, 336, 14) == released_count(h, w, pinpoints) \
            == num_image_tokens(h, w, tile_size=336, patch_size=14, grid_pinpoints=pinpoints)


def test_spec_token_examples():
    """SPEC_NOTES §5.5's table (28-entry released grid), from the released formula and from our processor math."""
    pinpoints = [list(p) for p in default_grid_pinpoints(336)]
    table = {(336, 336): 1176, (480, 640): 2340, (1000, 1000): 5832, (768, 1024): 7560, (1080, 1920): 9864,
             (2000, 1000): 11088, (3000, 3000): 9888}
    for (h, w), tokens in table.items():
        assert released_count(h, w, pinpoints) == tokens
        assert num_image_tokens(h, w, tile_size=336, patch_size=14, grid_pinpoints=pinpoints) == tokens


def test_conversion_errors_are_clear(models):
    theirs, _ = models
    state = dict(theirs.state_dict())
    state["model.unexpected.weight"] = torch.zeros(3)
    with pytest.raises(LlavaNextConversionError, match=r"unexpected \(1\): model\.unexpected\.weight"):
        from_llava_next(state, theirs.config)
    state = dict(theirs.state_dict())
    del state["lm_head.weight"]
    with pytest.raises(LlavaNextConversionError, match=r"missing \(1\): language_model\.lm_head\.weight"):
        from_llava_next(state, theirs.config)
    raw = theirs.config.to_dict()
    raw["vision_feature_layer"] = [-2, -1]
    with pytest.raises(LlavaNextConversionError, match="several layers"):
        config_from_llava_next(raw)
