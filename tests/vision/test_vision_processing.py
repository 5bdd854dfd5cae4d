"""ImageProcessor: tiles, thumbnail, padding and normalisation, against a plain PIL + torchvision reference."""
import random

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from vision.anyres import default_grid_pinpoints, pack_image_features, select_best_resolution
from vision.config import VisionConfig
from vision.image_processing import CLIP_MEAN, CLIP_STD, ImageProcessor, normalize, resize_and_pad

TO_TENSOR = transforms.Compose([transforms.ToTensor(), transforms.Normalize(CLIP_MEAN, CLIP_STD)])
BLACK = torch.tensor([-m / s for m, s in zip(CLIP_MEAN, CLIP_STD)])  # a padding pixel after normalisation


def reference_tiles(image: Image.Image, tile: int, pinpoints) -> torch.Tensor:
    """SPEC_NOTES §5.3 step by step with PIL crops and torchvision transforms (float math as released)."""
    width, height = image.size
    target_h, target_w = select_best_resolution((height, width), pinpoints)
    canvas = Image.new("RGB", (target_w, target_h), (0, 0, 0))
    if width / height > target_w / target_h:
        new_h = max(1, int(target_w * height / width))
        canvas.paste(image.resize((target_w, new_h), Image.BICUBIC), (0, (target_h - new_h) // 2))
    else:
        new_w = max(1, int(target_h * width / height))
        canvas.paste(image.resize((new_w, target_h), Image.BICUBIC), ((target_w - new_w) // 2, 0))
    crops = [canvas.crop((x, y, x + tile, y + tile))
             for y in range(0, target_h, tile) for x in range(0, target_w, tile)]  # row-major
    return torch.stack([TO_TENSOR(im) for im in [image.resize((tile, tile), Image.BICUBIC)] + crops])


def noise(height: int, width: int, seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_normalize_equals_torchvision():
    pixels = np.random.default_rng(0).integers(0, 256, (2, 3, 5, 7), dtype=np.uint8)
    expected = torch.stack([TO_TENSOR(Image.fromarray(p.transpose(1, 2, 0))) for p in pixels])
    assert torch.equal(normalize(pixels, CLIP_MEAN, CLIP_STD), expected)


@pytest.mark.parametrize("size", [(37, 91), (91, 37), (28, 28), (5, 300), (250, 260), (1, 1)])
def test_tiles_equal_the_plain_reference(size):
    processor = ImageProcessor(tile_size=28, patch_size=14)
    image = noise(*size, seed=size[0])
    tiles, image_size = processor.preprocess(image)
    assert image_size == size
    assert torch.equal(tiles, reference_tiles(image, 28, processor.grid_pinpoints))


def test_released_settings_on_a_480x640_photo():
    processor = ImageProcessor()
    image = noise(480, 640, seed=1)
    tiles, _ = processor.preprocess(image)
    assert tiles.shape == (5, 3, 336, 336)  # thumbnail + 2x2 crops of a 672x672 canvas
    assert torch.equal(tiles, reference_tiles(image, 336, processor.grid_pinpoints))
    # 640 -> 672 wide, 480 -> 504 high, pasted 84 rows down: rows 0-83 and 588-671 are padding.
    black = BLACK.view(3, 1, 1)
    for top_tile in (1, 2):
        torch.testing.assert_close(tiles[top_tile, :, :84], black.expand(3, 84, 336), rtol=0, atol=1e-6)
        assert not torch.allclose(tiles[top_tile, :, 84:], black.expand(3, 252, 336))
    for bottom_tile in (3, 4):
        torch.testing.assert_close(tiles[bottom_tile, :, 252:], black.expand(3, 84, 336), rtol=0, atol=1e-6)


def test_tiles_are_row_major_and_the_thumbnail_comes_first():
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]  # TL, TR, BL, BR
    image = Image.new("RGB", (56, 56))
    for i, colour in enumerate(colours):
        image.paste(colour, ((i % 2) * 28, (i // 2) * 28, (i % 2) * 28 + 28, (i // 2) * 28 + 28))
    tiles, _ = ImageProcessor(tile_size=28, patch_size=14).preprocess(image)
    assert tiles.shape[0] == 5
    for tile, colour in zip(tiles[1:], colours):
        assert torch.equal(tile, TO_TENSOR(Image.new("RGB", (28, 28), colour)))
    assert torch.equal(tiles[0], TO_TENSOR(image.resize((28, 28), Image.BICUBIC)))


def test_thumbnail_does_not_keep_the_aspect_ratio():
    image = noise(20, 80, seed=3)
    tiles, _ = ImageProcessor(tile_size=28, patch_size=14).preprocess(image)
    assert torch.equal(tiles[0], TO_TENSOR(image.resize((28, 28), Image.BICUBIC)))  # squashed, no padding


def test_resize_and_pad_centres_the_image():
    canvas = np.asarray(resize_and_pad(Image.new("RGB", (84, 28), (255, 255, 255)), (56, 56)))
    # 84x28 into 56x56: 56 wide, 56*28 // 84 = 18 high, pasted (56 - 18) // 2 = 19 rows down.
    assert (canvas[:19] == 0).all() and (canvas[19:37] == 255).all() and (canvas[37:] == 0).all()
    canvas = np.asarray(resize_and_pad(Image.new("RGB", (1, 10000), (255, 255, 255)), (56, 56)))
    assert (canvas[:, 27] == 255).all() and (canvas[:, :27] == 0).all()  # kept 1 px wide, never 0


def test_processor_tiles_are_what_packing_consumes():
    tile, patch = 28, 14
    processor = ImageProcessor(tile_size=tile, patch_size=patch)
    rng = random.Random(0)
    sizes = [(rng.randint(1, 200), rng.randint(1, 200)) for _ in range(30)] + [(3, 190), (190, 3)]
    out = processor([np.zeros((h, w, 3), np.uint8) for h, w in sizes])
    assert out["image_sizes"] == [list(s) for s in sizes]
    for tiles, (h, w), count in zip(out["pixel_values"], out["image_sizes"], out["num_image_tokens"]):
        assert tiles.shape == (processor.num_tiles(h, w), 3, tile, tile)
        packed = pack_image_features(torch.zeros(tiles.shape[0], 4, 5), (h, w), processor.grid_pinpoints,
                                     tile, patch, torch.zeros(5))
        assert packed.shape[0] == count == processor.num_image_tokens(h, w)


def test_fixed_mode_is_one_squashed_tile():
    processor = ImageProcessor(mode="fixed")
    image = noise(480, 640, seed=4)
    out = processor(image)
    assert out["pixel_values"][0].shape == (1, 3, 336, 336)
    assert out["num_image_tokens"] == [576] and out["image_sizes"] == [[480, 640]]
    assert torch.equal(out["pixel_values"][0][0], TO_TENSOR(image.resize((336, 336), Image.BICUBIC)))


def test_small_presets_tile_at_their_own_size():
    config = VisionConfig.from_preset("vit-small-cpu")
    processor = ImageProcessor.for_vision_config(config)
    assert (processor.tile_size, processor.patch_size) == (160, 16)
    assert list(processor.grid_pinpoints) == default_grid_pinpoints(160)
    assert processor.num_image_tokens(160, 160) == 100 + 10 * 11
    assert processor([noise(300, 500, seed=5)])["pixel_values"][0].shape[1:] == (3, 160, 160)


def test_dict_round_trip_and_released_field_names():
    processor = ImageProcessor(mode="fixed", tile_size=56, patch_size=14)
    data = processor.to_dict()
    assert data["process_image_mode"] == "resize" and data["size"] == [56, 56]
    assert ImageProcessor.from_dict(data) == processor
    released = {  # shaped like the released preprocessor_config.json, plus keys we do not use
        "process_image_mode": "anyres", "size": [336, 336], "patch_size": 14,
        "image_grid_pinpoints": [[336 * r, 336 * c] for r in range(1, 7) for c in range(1, 7) if r * c <= 18],
        "image_mean": list(CLIP_MEAN), "image_std": list(CLIP_STD),
        "image_processor_type": "ImageProcessor", "auto_map": {"AutoImageProcessor": "x.ImageProcessor"},
    }
    assert ImageProcessor.from_dict(released) == ImageProcessor()
    assert ImageProcessor.from_dict({"size": {"height": 224, "width": 224}, "patch_size": 16}).tile_size == 224


@pytest.mark.parametrize("fields, message", [
    ({"process_image_mode": "dynamic_res"}, "not supported"),
    ({"size": [336, 224]}, "only square tiles"),
    ({"size": 300}, "multiple of patch_size"),
    ({"image_grid_pinpoints": [[336, 400]]}, "not a multiple of the tile size"),
    ({"image_std": [0.2, 0.0, 0.2]}, "must be positive"),
])
def test_bad_settings_are_rejected(fields, message):
    with pytest.raises(ValueError, match=message):
        ImageProcessor.from_dict(fields)
