"""The processor's placeholder count equals the number of features the model packs, for every image.

The processor decides how many `<image>` ids an image becomes from its size alone (SPEC_NOTES §5.5); the model
packs the ViT features of the tiles it was given (SPEC_NOTES §5.4). If the two ever disagree, `masked_scatter`
would shift every later image and text embedding, so this is checked on many sizes, in both image modes,
with several images per prompt and across a batch.
"""
import numpy as np
import pytest
import torch

_rng = np.random.default_rng(20250115)
# 30 log-uniform sizes (1 .. ~1500 px per side) plus the edge cases: 1x1, very wide, very tall, exact tiles.
RANDOM_SIZES = [tuple(int(v) for v in np.exp(_rng.uniform(0, np.log(1500), 2))) for _ in range(30)]
EDGE_SIZES = [(1, 1), (1, 3000), (3000, 1), (2, 1200), (1100, 3), (56, 56), (56, 168), (168, 112), (57, 55),
              (700, 1000)]
SIZES = RANDOM_SIZES + EDGE_SIZES


def _count_image_tokens(input_ids: torch.Tensor, image_token_id: int) -> list[int]:
    return (input_ids == image_token_id).sum(dim=1).tolist()


@pytest.fixture(scope="module")
def images(make_image):
    return [make_image(h, w, seed=i) for i, (h, w) in enumerate(SIZES)]


@pytest.mark.parametrize("mode", ["anyres", "fixed"])
def test_placeholders_equal_packed_features(tiny_model, images, mode):
    processor, image_id = tiny_model.processor, tiny_model.config.image_token_index
    image_mode = None if mode == "anyres" else "fixed"  # anyres is the config default: exercise the default path
    # One prompt per image: the processor's count for that image alone.
    per_image = []
    for image in images:
        inputs = processor(images=[image], text="Look: <image> what is it?", image_mode=image_mode)
        [count] = _count_image_tokens(inputs["input_ids"], image_id)
        per_image.append(count)
    # All images in one prompt: the same counts, in order, and one feature block per image.
    inputs = processor(images=images, text="".join(f"{i}:<image>\n" for i in range(len(images))),
                       image_mode=image_mode)
    assert _count_image_tokens(inputs["input_ids"], image_id) == [sum(per_image)]
    with torch.no_grad():
        features = tiny_model.encode_images(inputs["pixel_values"], inputs["image_sizes"], mode=image_mode)
    assert [f.shape[0] for f in features] == per_image
    assert [list(s) for s in inputs["image_sizes"]] == [[h, w] for h, w in SIZES]
    grid = tiny_model.config.vision_config.grid_size  # 4 patches per side of a 56-px tile
    if mode == "fixed":
        assert per_image == [grid**2] * len(SIZES)  # one tile, no newline (SPEC_NOTES §5.3 "resize")
        assert all(p.shape[0] == 1 for p in inputs["pixel_values"])
    else:
        # A few counts by hand (tile 56, g = 4, SPEC_NOTES §5.5: N = g^2 + H_f (W_f + 1)):
        by_size = dict(zip(SIZES, per_image))
        assert by_size[(56, 56)] == 16 + 4 * 5  # 1x1 grid, nothing to unpad
        assert by_size[(1, 1)] == 16 + 4 * 5  # upscaled into the 56x56 grid
        assert by_size[(56, 168)] == 16 + 4 * 13  # 1x3 grid, exact fit
        assert by_size[(168, 112)] == 16 + 12 * 9  # 3x2 grid, exact fit
        # So wide that no feature row survives the floor unpadding (SPEC_NOTES §5.4): the thumbnail only.
        assert by_size[(1, 3000)] == by_size[(2, 1200)] == 16
        # So tall that no column survives; every one of the 4 rows of the 1x1 grid keeps its newline.
        assert by_size[(3000, 1)] == by_size[(1100, 3)] == 16 + 4 * 1
        assert all(p.shape[0] > 1 for p in inputs["pixel_values"])  # thumbnail + at least one crop


def test_forward_in_both_modes(tiny_model, images):
    processor = tiny_model.processor
    chosen = [images[SIZES.index(s)] for s in [(700, 1000), (1, 1), (3000, 1)]]
    for mode in ("anyres", "fixed"):
        inputs = processor(images=chosen, text="a <image> b <image> c <image> d", image_mode=mode)
        with torch.no_grad():
            out = tiny_model(inputs["input_ids"], inputs["pixel_values"], inputs["image_sizes"], image_mode=mode)
        assert out.logits.shape[:2] == inputs["input_ids"].shape
        assert torch.isfinite(out.logits).all()


def test_batch_of_two_prompts_with_different_images(tiny_model, images, make_image):
    """Images are consumed in prompt order across the batch; each row equals that prompt run alone."""
    processor, image_id = tiny_model.processor, tiny_model.config.image_token_index
    a, b, c = (images[SIZES.index(s)] for s in [(700, 1000), (57, 55), (168, 112)])
    prompts = ["first <image> one image", "second: <image> and <image>, two images"]
    batch = processor(images=[a, b, c], text=prompts)
    counts = _count_image_tokens(batch["input_ids"], image_id)
    alone = [processor(images=[a], text=prompts[0]), processor(images=[b, c], text=prompts[1])]
    assert counts == [int((x["input_ids"] == image_id).sum()) for x in alone]
    assert counts[0] != counts[1]  # different lengths, so row 0 is left padded
    with torch.no_grad():
        out = tiny_model(batch["input_ids"], batch["pixel_values"], batch["image_sizes"],
                         attention_mask=batch["attention_mask"])
        for row, single in enumerate(alone):
            expected = tiny_model(single["input_ids"], single["pixel_values"], single["image_sizes"]).logits[0]
            got = out.logits[row][batch["attention_mask"][row].bool()]
            assert got.shape == expected.shape
            # fp32, different batch shapes: only summation order differs (max |logit| is O(1), errors ~1e-6).
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
        # The tolerance is meaningful: another image of the same size moves these logits far more than 1e-4.
        other = processor(images=[make_image(700, 1000, seed=99)], text=prompts[0])
        changed = tiny_model(other["input_ids"], other["pixel_values"], other["image_sizes"]).logits[0]
    assert (changed - out.logits[0][batch["attention_mask"][0].bool()]).abs().max() > 1e-2


def test_mismatched_image_token_count_is_a_clear_error(tiny_model, images):
    processor, image_id = tiny_model.processor, tiny_model.config.image_token_index
    inputs = processor(images=[images[0], images[1]], text="<image> and <image>")
    ids = inputs["input_ids"]
    positions = (ids[0] == image_id).nonzero().flatten()
    fewer = torch.cat([ids[:, : positions[3]], ids[:, positions[3] + 1:]], dim=1)  # one image token removed
    more = torch.cat([ids[:, :1], torch.tensor([[image_id]]), ids[:, 1:]], dim=1)  # one image token added
    for bad, n in ((fewer, len(positions) - 1), (more, len(positions) + 1)):
        with pytest.raises(ValueError, match=rf"the prompt has {n} image tokens but the images give "
                                             rf"{len(positions)} features"):
            with torch.no_grad():
                tiny_model(bad, inputs["pixel_values"], inputs["image_sizes"])
    with pytest.raises(ValueError, match="image tokens but no pixel_values"):
        tiny_model(ids)
    with pytest.raises(ValueError, match="<image> placeholders"):
        processor(images=[images[0]], text="<image> and <image>")
