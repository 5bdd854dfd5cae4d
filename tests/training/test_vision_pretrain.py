"""Vision pre-training ("stage 0"): patch targets land on the patches the processor cuts, and a short run writes
a checkpoint that stage I can start from."""
import json

import torch

from minimax_vl.model import MiniMaxVL01
from training.vision_pretrain import main, make_batch, patch_targets, word_class


def test_patch_targets_follow_the_processor_tiles():
    # A 192-px image, 96-px tiles of 6x6 16-px patches, a 2x2 grid: the thumbnail sees the image at half size.
    box = (100, 10, 150, 36)  # x 100..150 (tile column 1, patches 0..2), y 10..36 (tile row 0, patch row 1)
    words, chars = patch_targets([("Owl", box)], 192, 192, tile=96, patch=16, grid=(2, 2))
    assert words.shape == (5, 36)
    top_right = words[2].view(6, 6)
    hit = {(i, j) for i in range(6) for j in range(6) if top_right[i, j]}
    # Patch centres at x = 96 + 8 + 16j and y = 8 + 16i inside the box: j = 0, 1 (104, 120; 136 too), i = 1 (24).
    assert hit == {(1, 0), (1, 1), (1, 2)}
    assert {int(v) for v in words[2][words[2] > 0]} == {word_class("Owl")}
    assert [chr(int(c)) for c in chars[2].view(6, 6)[1, :3]] == ["O", "w", "l"]
    for tile in (1, 3, 4):
        assert not words[tile].any()
    thumb = words[0].view(6, 6)  # 32-px cells: centres at 16 + 32j; x 112 and 144, y 16 are inside the box
    assert {(i, j) for i in range(6) for j in range(6) if thumb[i, j]} == {(0, 3), (0, 4)}


def test_batch_targets_mark_text_patches_only_where_text_is(tmp_path):
    model = MiniMaxVL01.from_preset("demo")
    pixels, words, chars = make_batch(model, range(3), "train", 192, 1.3, "easy")
    assert pixels.shape == (15, 3, 96, 96) and words.shape == chars.shape == (15, 36)
    assert 0.02 < (words > 0).float().mean() < 0.6
    assert torch.equal(words > 0, chars > 0)


def test_short_run_writes_a_checkpoint_stage_one_can_start_from(tmp_path):
    assert main(["--preset", "demo", "--output", str(tmp_path), "--steps", "3", "--batch-size", "2",
                 "--eval-every", "3", "--no-progress"]) == 0
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3] and "val_text_word_acc" in records[-1]
    loaded = MiniMaxVL01.from_pretrained(tmp_path / "final")
    fresh = MiniMaxVL01.from_preset("demo")
    moved = [n for n, p in loaded.vision_tower.named_parameters()
             if not torch.equal(p, dict(fresh.vision_tower.named_parameters())[n])]
    assert moved  # the tower trained
    assert torch.equal(loaded.language_model.lm_head.weight, fresh.language_model.lm_head.weight)  # the rest did not
