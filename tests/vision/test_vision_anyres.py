"""Dynamic-resolution geometry and token packing (SPEC_NOTES §5.3-5.5)."""
import random

import pytest
import torch

from vision.anyres import (
    MINIMAX_VL_01_GRID_PINPOINTS,
    anyres_grid_shape,
    default_grid_pinpoints,
    num_image_tokens,
    num_tiles,
    pack_image_features,
    scale_grid_pinpoints,
    select_best_resolution,
    unpad_bounds,
    validate_grid_pinpoints,
)

# SPEC_NOTES §5.5: image h x w -> chosen W x H, crops, tokens (28-entry list).
SPEC_TABLE = [
    ((336, 336), (336, 336), 1, 1176),
    ((480, 640), (672, 672), 4, 2340),
    ((1000, 1000), (1008, 1008), 9, 5832),
    ((768, 1024), (1344, 1008), 12, 7560),
    ((1080, 1920), (2016, 1008), 18, 9864),
    ((2000, 1000), (1008, 2016), 18, 11088),
    ((3000, 3000), (1344, 1344), 16, 9888),
]


@pytest.mark.parametrize("image_size, chosen_wh, crops, tokens", SPEC_TABLE)
def test_spec_token_table(image_size, chosen_wh, crops, tokens):
    height, width = image_size
    chosen_w, chosen_h = chosen_wh
    assert select_best_resolution(image_size, MINIMAX_VL_01_GRID_PINPOINTS) == (chosen_h, chosen_w)
    rows, cols = anyres_grid_shape(image_size, MINIMAX_VL_01_GRID_PINPOINTS, 336)
    assert rows * cols == crops
    assert num_tiles(height, width) == crops + 1
    assert num_image_tokens(height, width) == tokens
    assert num_image_tokens(height, width, grid_pinpoints=MINIMAX_VL_01_GRID_PINPOINTS,
                            tile_size=336, patch_size=14) == tokens


@pytest.mark.parametrize("image_size, chosen_hw, crops, tokens", [
    ((1080, 1920), (1344, 2016), 24, 12466), ((3000, 3000), (2016, 2016), 36, 21456)])
def test_spec_table_with_the_36_entry_grid(image_size, chosen_hw, crops, tokens):
    full_grid = default_grid_pinpoints(336, max_tiles=36)
    assert len(full_grid) == 36
    assert select_best_resolution(image_size, full_grid) == chosen_hw
    assert num_tiles(*image_size, grid_pinpoints=full_grid) == crops + 1
    assert num_image_tokens(*image_size, grid_pinpoints=full_grid) == tokens


def test_released_grid_is_the_28_entry_list():
    grid = MINIMAX_VL_01_GRID_PINPOINTS
    expected = [(336 * r, 336 * c) for r in range(1, 7) for c in range(1, 7) if r * c <= 18]
    assert grid == expected and len(grid) == 28
    assert set(grid) == {(w, h) for h, w in grid}  # symmetric: (h, w) vs (w, h) reading is the same set
    assert max(max(p) for p in grid) == 2016 and (1680, 1680) not in grid and (2016, 1008) in grid


def test_scaling_pinpoints_to_another_tile():
    small = scale_grid_pinpoints(MINIMAX_VL_01_GRID_PINPOINTS, 336, 160)
    assert small == default_grid_pinpoints(160)
    assert scale_grid_pinpoints(small, 160, 336) == MINIMAX_VL_01_GRID_PINPOINTS
    with pytest.raises(ValueError, match="not a multiple of the tile size 336"):
        validate_grid_pinpoints([(336, 500)], 336)
    with pytest.raises(ValueError, match="empty"):
        validate_grid_pinpoints([], 336)


def test_selection_prefers_effective_pixels_then_less_waste_then_order():
    assert select_best_resolution((1000, 1000), [(336, 336), (672, 672)]) == (672, 672)
    assert select_best_resolution((100, 100), [(672, 672), (336, 336)]) == (336, 336)  # same effective, less waste
    # (672, 336) and (336, 672) keep the same 336x336 of a square image and waste the same: the first wins.
    assert select_best_resolution((1000, 1000), [(672, 336), (336, 672)]) == (672, 336)
    assert select_best_resolution((1000, 1000), [(336, 672), (672, 336)]) == (336, 672)
    # An image too thin to keep a single row at any scale still gets the least wasteful candidate.
    assert select_best_resolution((1, 10000), MINIMAX_VL_01_GRID_PINPOINTS) == (336, 336)


def test_unpad_bounds_floor_rounding():
    assert unpad_bounds((480, 640), (48, 48)) == (6, 42, 0, 48)  # new_h = 480*48 // 640 = 36, pad 6
    assert unpad_bounds((640, 480), (48, 48)) == (0, 48, 6, 42)
    assert unpad_bounds((100, 300), (24, 24)) == (8, 16, 0, 24)  # new_h = 100*24 // 300 = 8, pad = 8
    # Odd leftover: new_h = 10*24 // 35 = 6, pad = (25 - 6) // 2 = 9 -> rows [9, 16): 7 rows, one more than new_h.
    assert unpad_bounds((10, 35), (25, 24)) == (9, 16, 0, 24)
    assert unpad_bounds((1, 10000), (24, 24)) == (12, 12, 0, 24)  # nothing left: thumbnail tokens only
    assert unpad_bounds((336, 672), (24, 48)) == (0, 24, 0, 48)  # equal aspect: nothing removed


def reference_pack(features, image_size, pinpoints, tile, patch, newline):
    """Token by token: thumbnail, then for each kept feature row its kept columns and a newline."""
    g = tile // patch
    rows, cols = anyres_grid_shape(image_size, pinpoints, tile)
    r0, r1, c0, c1 = unpad_bounds(image_size, (rows * g, cols * g))
    tokens = [features[0, i] for i in range(g * g)]
    for r in range(r0, r1):
        for c in range(c0, c1):
            tile_index = 1 + (r // g) * cols + (c // g)
            tokens.append(features[tile_index, (r % g) * g + (c % g)])
        tokens.append(newline)
    return torch.stack(tokens)


def random_sizes(count: int, seed: int):
    rng = random.Random(seed)
    sizes = [(1, 1), (1, 500), (500, 1), (7, 3000), (3000, 7), (28, 28), (56, 28)]
    while len(sizes) < count:
        sizes.append((rng.randint(1, 600), rng.randint(1, 600)))
    return sizes


@pytest.mark.parametrize("tile, patch", [(28, 14), (42, 14), (30, 10)])
def test_pack_matches_reference_and_token_count(tile, patch):
    pinpoints = default_grid_pinpoints(tile)
    g2, channels = (tile // patch) ** 2, 3
    newline = torch.tensor([-1.0, -2.0, -3.0])
    for image_size in random_sizes(60, seed=tile):
        n = num_tiles(*image_size, tile_size=tile, grid_pinpoints=pinpoints)
        features = torch.randn(n, g2, channels)
        packed = pack_image_features(features, image_size, pinpoints, tile, patch, newline)
        count = num_image_tokens(*image_size, tile_size=tile, patch_size=patch, grid_pinpoints=pinpoints)
        assert packed.shape == (count, channels), image_size
        assert torch.equal(packed, reference_pack(features, image_size, pinpoints, tile, patch, newline)), image_size


def test_pack_released_size_and_gradients():
    features = torch.randn(5, 576, 8, requires_grad=True)  # 480 x 640 -> 2x2 tiles + thumbnail
    newline = torch.randn(8, requires_grad=True)
    packed = pack_image_features(features, (480, 640), MINIMAX_VL_01_GRID_PINPOINTS, 336, 14, newline)
    assert packed.shape == (2340, 8)
    packed.sum().backward()
    assert torch.equal(newline.grad, torch.full((8,), 36.0))  # one newline per kept row: 36 rows
    used = features.grad[1:].reshape(2, 2, 24, 24, 8).permute(0, 2, 1, 3, 4).reshape(48, 48, 8)
    assert used[6:42].eq(1).all() and used[:6].eq(0).all() and used[42:].eq(0).all()  # padding rows unused


def test_fixed_mode_is_the_tile_alone():
    features = torch.randn(1, 576, 4)
    assert num_image_tokens(480, 640, mode="fixed") == 576
    assert num_tiles(480, 640, mode="fixed") == 1
    assert torch.equal(pack_image_features(features, (480, 640), None, 336, 14, None, mode="fixed"), features[0])


def test_pack_errors_name_the_mismatch():
    with pytest.raises(ValueError, match=r"1 thumbnail \+ 2x2 tiles, but 3 tiles"):
        pack_image_features(torch.randn(3, 576, 4), (480, 640), None, 336, 14, torch.zeros(4))
    with pytest.raises(ValueError, match=r"\[n_tiles, 576, C\]"):
        pack_image_features(torch.randn(5, 577, 4), (480, 640), None, 336, 14, torch.zeros(4))
    with pytest.raises(ValueError, match="image_newline of shape"):
        pack_image_features(torch.randn(5, 576, 4), (480, 640), None, 336, 14, torch.zeros(5))
    with pytest.raises(ValueError, match="mode 'tiles'"):
        num_image_tokens(480, 640, mode="tiles")
