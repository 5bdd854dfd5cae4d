"""Vision pre-training ("stage 0"): teaches a ViT trained from scratch to see text, before the four VL stages.

    .venv/bin/python -m training.vision_pretrain --preset demo --output runs/demo/stage0 --steps 600
    .venv/bin/accelerate launch ... -m training.train --stage 1 --init runs/demo/stage0/final ...

MiniMax-VL-01's ViT was itself trained from scratch before the VL stages (CoCa-style on 694 M image-caption pairs,
its text decoder discarded afterwards; SPEC_NOTES §5.1). At CPU scale a captioning objective starting from
random weights does not learn to read in hours (../shared/FINDINGS.md; our own first demo runs: after 400 VL steps
the loss did not depend on the image at all). This stage replaces it with a dense, direct signal: every patch token
of every tile classifies the text under it, with two linear heads that are thrown away afterwards (the tower's
architecture and checkpoint layout are untouched):
  - which string covers the patch centre (hashed into `WORD_BUCKETS` classes; 0 = no text), and
  - which character of that string lies under the centre (its code point; 0 = no text),
on the same generated charts, maps and word images as the VL stages, tiled exactly as the processor tiles them.
It writes `output/final`: a whole MiniMax-VL-01 checkpoint (random projector and language model, the pre-trained
tower), which stage I starts from with `--init`. Metrics (loss, patch accuracy on text patches, held-out) go to
output/metrics.jsonl.
"""
from __future__ import annotations

import argparse
import sys
import zlib

import torch
import torch.nn.functional as F
from torch import nn

from minimax_vl.data.charts import generate_chart
from minimax_vl.data.maps import generate_map
from minimax_vl.data.splits import rng_for, seed_for
from minimax_vl.data.words import generate_words
from minimax_vl.model import MiniMaxVL01
from training import patch_pretraining
from vision.anyres import select_best_resolution

WORD_BUCKETS = 4096  # distinct strings in the easy style: a few hundred; collisions are rare and harmless
CHAR_CLASSES = 128  # ASCII code points


def word_class(text: str) -> int:
    return 1 + zlib.crc32(text.encode()) % (WORD_BUCKETS - 1)


def scene_for(index: int, split: str, image_size: int, font_scale: float, difficulty: str):
    """(image, [(text, box)]) of generated sample `index`: a third each word images, charts and maps."""
    seed = seed_for(split, index)
    kind = ("words", "chart", "map")[index % 3]
    rng = rng_for(seed, f"vision_pretrain/{kind}")
    common = dict(split=split, difficulty=difficulty, image_size=image_size, font_scale=font_scale)
    if kind == "words":
        scene, image = generate_words(rng, **common)
        return image, list(zip(scene.words, scene.boxes))
    scene, image = (generate_chart if kind == "chart" else generate_map)(rng, **common)
    return image, [(t.text, t.box) for t in scene.text_boxes]


def patch_targets(texts: list[tuple[str, tuple[int, int, int, int]]], height: int, width: int, tile: int,
                  patch: int, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Word and character class of every patch of every tile, in the processor's tile order: the thumbnail
    (whole image squeezed to one tile) first, then the grid's tiles row by row. Returns two [tiles, patches]
    tensors. Assumes the image exactly fills the grid (no padding), as generated square images do."""
    rows, cols = grid
    per_side = tile // patch
    regions = [(0.0, 0.0, width / per_side, height / per_side)]  # thumbnail: (x0, y0, patch w, patch h) in px
    for r in range(rows):
        for c in range(cols):
            regions.append((c * width / cols, r * height / rows, width / cols / per_side, height / rows / per_side))
    words = torch.zeros(len(regions), per_side * per_side, dtype=torch.long)
    chars = torch.zeros_like(words)
    for t, (x0, y0, pw, ph) in enumerate(regions):
        for i in range(per_side):
            for j in range(per_side):
                cx, cy = x0 + (j + 0.5) * pw, y0 + (i + 0.5) * ph
                hits = [(text, box) for text, box in texts if box[0] <= cx < box[2] and box[1] <= cy < box[3]]
                if not hits:
                    continue
                text, box = min(hits, key=lambda h: (h[1][2] - h[1][0]) * (h[1][3] - h[1][1]))
                words[t, i * per_side + j] = word_class(text)
                # Characters split the ink box evenly: near enough for proportional fonts and short labels.
                k = min(len(text) - 1, int((cx - box[0]) / max(1e-6, box[2] - box[0]) * len(text)))
                chars[t, i * per_side + j] = min(ord(text[k]), CHAR_CLASSES - 1)
    return words, chars


class TextHeads(nn.Module):
    """The throw-away heads: patch features -> word class and character class."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.word = nn.Linear(width, WORD_BUCKETS)
        self.char = nn.Linear(width, CHAR_CLASSES)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.word(features), self.char(features)


def tiled_scenes(model: MiniMaxVL01, indices: range | list[int], split: str, image_size: int, font_scale: float,
                 difficulty: str):
    """For each generated sample `index`: (tiles [1 + rows*cols, 3, t, t] as the processor cuts them, its text boxes
    [(text, box)], image height, image width, tile grid (rows, cols)). Shared by stage 0 and token grounding."""
    processor = model.processor.image_processor.replace(mode="anyres")
    tile = model.config.vision_config.image_size
    for index in indices:
        image, texts = scene_for(index, split, image_size, font_scale, difficulty)
        if image.width != image.height:  # the patch targets assume the tiles cover the image without padding
            raise ValueError(f"patch-level pre-training needs square images; got {image.width}x{image.height} "
                             f"(difficulty {difficulty!r} draws other aspect ratios; use 'easy')")
        tiles = processor([image])["pixel_values"][0]
        height, width = select_best_resolution((image.height, image.width), processor.grid_pinpoints)
        yield tiles, texts, image.height, image.width, (height // tile, width // tile)


def make_batch(model: MiniMaxVL01, indices: range | list[int], split: str, image_size: int, font_scale: float,
               difficulty: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    vision = model.config.vision_config
    pixels, words, chars = [], [], []
    for tiles, texts, height, width, grid in tiled_scenes(model, indices, split, image_size, font_scale, difficulty):
        w, c = patch_targets(texts, height, width, vision.image_size, vision.patch_size, grid)
        pixels.append(tiles)
        words.append(w)
        chars.append(c)
    return torch.cat(pixels), torch.cat(words), torch.cat(chars)


def losses(model: MiniMaxVL01, heads: TextHeads, batch) -> tuple[torch.Tensor, dict[str, float]]:
    pixels, words, chars = batch
    features = model.vision_tower(pixels)  # [tiles, patches, width], the features the projector reads
    word_logits, char_logits = heads(features)
    word_loss = F.cross_entropy(word_logits.flatten(0, 1), words.flatten())
    char_loss = F.cross_entropy(char_logits.flatten(0, 1), chars.flatten())
    text = words.flatten() > 0
    with torch.no_grad():
        word_acc = (word_logits.flatten(0, 1).argmax(-1) == words.flatten())[text].float().mean().item()
        char_acc = (char_logits.flatten(0, 1).argmax(-1) == chars.flatten())[text].float().mean().item()
    return word_loss + char_loss, {"word_loss": word_loss.item(), "char_loss": char_loss.item(),
                                   "text_word_acc": word_acc, "text_char_acc": char_acc}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo", help="model preset whose vision tower is trained (default demo)")
    patch_pretraining.add_arguments(parser, steps=600, lr=1e-3, weight_decay=0.05)
    args = parser.parse_args(argv)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    model = MiniMaxVL01.from_preset(args.preset, seed=args.seed)
    torch.manual_seed(args.seed)
    heads = TextHeads(model.config.vision_config.hidden_size)
    seconds, record = patch_pretraining.train(
        args, model=model, params=[*model.vision_tower.parameters(), *heads.parameters()],
        make_batch=lambda indices, **options: make_batch(model, indices, **options),
        step_losses=lambda batch: losses(model, heads, batch), description="vision pre-training",
        describe=lambda val: (f"val word acc on text patches {val['text_word_acc']:.3f}, "
                              f"char acc {val['text_char_acc']:.3f}"))
    patch_pretraining.save_final(model, args, seconds, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
