"""`MiniMaxVL01Config.with_vision`: a preset with another tile, patch or tile grid, the rest of the model kept."""
from __future__ import annotations

import pytest

from minimax_vl.config import MiniMaxVL01Config
from minimax_vl.processor import MiniMaxVL01Processor


@pytest.fixture(scope="module")
def demo():
    return MiniMaxVL01Config.from_preset("demo")


def _tokens(config: MiniMaxVL01Config, side: int) -> int:
    return MiniMaxVL01Processor.for_config(config).image_processor.num_image_tokens(side, side)


def test_patch_size_changes_the_token_count_and_nothing_else(demo):
    smaller = demo.with_vision(patch_size=12)
    assert smaller.vision_config.patch_size == 12 and smaller.vision_config.num_patches == 64
    # Width, depth and heads of the tower, and the whole language model, are the preset's.
    for name in ("image_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"):
        assert getattr(smaller.vision_config, name) == getattr(demo.vision_config, name), name
    assert smaller.text_config.to_dict() == demo.text_config.to_dict()
    assert smaller.text_config is not demo.text_config  # a copy: editing one cannot change the other
    assert smaller.image_grid_pinpoints == demo.image_grid_pinpoints
    assert smaller.image_token_index == demo.image_token_index
    # 192-px image on 2x2 96-px tiles: thumbnail g^2 plus (2g) rows of (2g + 1) with the row separators.
    assert _tokens(demo, 192) == 6 * 6 + 12 * 13 == 192
    assert _tokens(smaller, 192) == 8 * 8 + 16 * 17 == 336
    assert demo.vision_config.patch_size == 16  # the original is untouched


def test_a_new_tile_size_keeps_the_tile_grids(demo):
    wider = demo.with_vision(image_size=112, patch_size=14)
    assert wider.image_grid_pinpoints == [[112, 112], [112, 224], [224, 112], [224, 224]]
    assert _tokens(wider, 224) == 8 * 8 + 16 * 17


def test_max_tiles_per_side_rebuilds_the_grid(demo):
    three = demo.with_vision(max_tiles_per_side=3)
    assert len(three.image_grid_pinpoints) == 9
    assert max(map(tuple, three.image_grid_pinpoints)) == (288, 288)
    assert _tokens(three, 288) == 6 * 6 + 18 * 19
    one = demo.with_vision(image_size=128, max_tiles_per_side=1)
    assert one.image_grid_pinpoints == [[128, 128]]
    assert _tokens(one, 256) == 8 * 8 + 8 * 9  # downscaled onto the one tile


def test_bad_overrides_say_what_is_wrong(demo):
    with pytest.raises(ValueError, match="multiple of patch_size"):
        demo.with_vision(patch_size=14)  # 96-px tiles do not split into 14-px patches
    with pytest.raises(ValueError, match="not VisionConfig fields"):
        demo.with_vision(tile_size=112)
    with pytest.raises(ValueError, match="max_tiles_per_side"):
        demo.with_vision(max_tiles_per_side=0)
