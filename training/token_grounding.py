"""Token grounding ("stage 0b"): every image token that shows text is pulled onto the language model's own input
embedding of that text's token, so that to the decoder a label in the image looks like the label in a prompt.

    .venv/bin/python -m training.token_grounding --init runs/base_demo_model --output runs/read2/grounding --steps 800
    .venv/bin/accelerate launch ... -m training.train --stage 1 --init runs/read2/grounding/final ...

Why (issue "The demo model reads"): after stage 0 the tower's patch features told 72% of the text patches' words
apart, yet a read-first model trained for 55 more minutes transcribed 21.5% of fields and repeated one word for
every bar. The features held the words; the decoder never learned to map them onto its vocabulary. The decoder
already copies tokens from its context (the text-only reasoning documents train exactly that), so this stage
makes the image supply tokens it can copy: the projector output of a patch is classified against the frozen
embedding matrix (cosine similarity, a learned temperature) with the token under the patch as the target, and its
norm is pulled to that embedding's norm. Patches without text are left free (they carry geometry: bar heights,
grid positions). The tower and projector train; the language model is frozen (its embeddings are the targets).

Which token a patch shows: text boxes are drawn anywhere, not on the 16-px patch grid, so a label about one patch
tall usually straddles two patch rows and may contain no patch centre at all. A patch is assigned the text box it
overlaps most, when the overlap covers at least `MIN_OVERLAP` of the box's height and of the smaller of the two
widths; the character under the patch's horizontal centre (clamped into the box) picks the token, with the label
tokenised as it appears after a space in a transcription (" Oak", " St"; numbers digit by digit).
"""
from __future__ import annotations

import argparse
import functools
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from minimax_vl.model import MiniMaxVL01
from training import patch_pretraining
from training.vision_pretrain import tiled_scenes

MIN_OVERLAP = 0.4  # of the box's height and of min(box width, patch width)
IGNORE = -100

Box = tuple[float, float, float, float]


def token_spans(tokenizer, text: str) -> list[tuple[int, int, int]]:
    """(token id, first char, end char) of `text` tokenised after a space, as a transcription writes it; character
    positions index `text` itself. A token made only of the leading space is dropped."""
    spans, position = [], -1  # the leading space is character -1
    for token in tokenizer.encode(" " + text):
        piece = tokenizer.decode([token], skip_special_tokens=False)
        start, position = position, position + len(piece)
        if position > 0:
            spans.append((token, max(0, start), position))
    return spans


def patch_rects(height: int, width: int, tile: int, patch: int, grid: tuple[int, int]) -> list[list[Box]]:
    """Every patch's rectangle in image pixels, per tile in the processor's order (thumbnail first, then the grid's
    tiles row by row), patches row by row within a tile."""
    rows, cols = grid
    per_side = tile // patch
    regions = [(0.0, 0.0, width / per_side, height / per_side)]  # (x0, y0, patch w, patch h) in image pixels
    for r in range(rows):
        for c in range(cols):
            regions.append((c * width / cols, r * height / rows, width / cols / per_side, height / rows / per_side))
    return [[(x0 + j * pw, y0 + i * ph, x0 + (j + 1) * pw, y0 + (i + 1) * ph)
             for i in range(per_side) for j in range(per_side)] for x0, y0, pw, ph in regions]


def text_under(rect: Box, texts: list[tuple[str, Box]]) -> tuple[str, Box] | None:
    """The text box `rect` overlaps most, if it overlaps enough of it to show (see MIN_OVERLAP)."""
    best, best_area = None, 0.0
    for text, box in texts:
        dx = min(rect[2], box[2]) - max(rect[0], box[0])
        dy = min(rect[3], box[3]) - max(rect[1], box[1])
        if dy < MIN_OVERLAP * (box[3] - box[1]) or dx < MIN_OVERLAP * min(box[2] - box[0], rect[2] - rect[0]):
            continue
        if dx * dy > best_area:
            best, best_area = (text, box), dx * dy
    return best


def patch_token_targets(texts: list[tuple[str, Box]], height: int, width: int, tile: int, patch: int,
                        grid: tuple[int, int], spans_of) -> torch.Tensor:
    """[tiles, patches] token id under each patch (IGNORE where no text shows); `spans_of(text)` is
    `token_spans` with the tokenizer bound."""
    rects = patch_rects(height, width, tile, patch, grid)
    targets = torch.full((len(rects), len(rects[0])), IGNORE, dtype=torch.long)
    for t, tile_rects in enumerate(rects):
        for p, rect in enumerate(tile_rects):
            hit = text_under(rect, texts)
            if hit is None:
                continue
            text, box = hit
            x = min(max((rect[0] + rect[2]) / 2, box[0]), box[2] - 1e-6)
            k = min(len(text) - 1, int((x - box[0]) / max(1e-6, box[2] - box[0]) * len(text)))
            targets[t, p] = next(token for token, start, end in spans_of(text) if start <= k < end)
    return targets


def make_batch(model: MiniMaxVL01, indices, split: str, image_size: int, font_scale: float,
               difficulty: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(pixels [tiles, 3, t, t], token targets [tiles, patches]) of the generated samples `indices` (a third
    each word images, charts and maps, as in stage 0)."""
    tokenizer = model.processor.tokenizer
    vision = model.config.vision_config
    spans_of = functools.lru_cache(maxsize=None)(lambda text: token_spans(tokenizer, text))
    pixels, targets = [], []
    for tiles, texts, height, width, grid in tiled_scenes(model, indices, split, image_size, font_scale, difficulty):
        pixels.append(tiles)
        targets.append(patch_token_targets(texts, height, width, vision.image_size, vision.patch_size, grid,
                                           spans_of))
    return torch.cat(pixels), torch.cat(targets)


class Grounding(nn.Module):
    """Cosine logits of projected patch features against the (frozen) embedding matrix, with a learned scale."""

    def __init__(self, embeddings: torch.Tensor, scale: float = 10.0) -> None:
        super().__init__()
        self.register_buffer("embeddings", embeddings.detach().clone(), persistent=False)
        self.log_scale = nn.Parameter(torch.tensor(math.log(scale)))

    def forward(self, features: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        text = targets != IGNORE
        shown, wanted = features[text], targets[text]  # [n, D], [n]
        logits = self.log_scale.exp() * F.normalize(shown, dim=-1) @ F.normalize(self.embeddings, dim=-1).T
        token_loss = F.cross_entropy(logits, wanted)
        norm_loss = (shown.norm(dim=-1).log() - self.embeddings[wanted].norm(dim=-1).log()).pow(2).mean()
        with torch.no_grad():
            accuracy = (logits.argmax(-1) == wanted).float().mean().item()
        return token_loss + norm_loss, {"token_loss": token_loss.item(), "norm_loss": norm_loss.item(),
                                        "token_acc": accuracy, "text_patches": int(text.sum())}


def losses(model: MiniMaxVL01, grounding: Grounding, batch) -> tuple[torch.Tensor, dict[str, float]]:
    pixels, targets = batch
    features = model.multi_modal_projector(model.vision_tower(pixels))  # [tiles, patches, text width]
    return grounding(features, targets)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init", required=True, type=Path, help="model folder to start from (its LM is kept)")
    patch_pretraining.add_arguments(parser, steps=800, lr=5e-4, weight_decay=0.05)
    args = parser.parse_args(argv)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    torch.manual_seed(args.seed)
    model = MiniMaxVL01.from_pretrained(args.init, dtype=torch.float32)
    model.requires_grad_(False)
    grounding = Grounding(model.language_model.model.embed_tokens.weight)
    params = [*model.vision_tower.parameters(), *model.multi_modal_projector.parameters(), grounding.log_scale]
    for p in params:
        p.requires_grad_(True)
    seconds, record = patch_pretraining.train(
        args, model=model, params=params, make_batch=lambda indices, **options: make_batch(model, indices, **options),
        step_losses=lambda batch: losses(model, grounding, batch), description="token grounding",
        describe=lambda val: (f"val token acc on text patches {val['token_acc']:.3f} "
                              f"(loss {val['token_loss']:.3f}, norm {val['norm_loss']:.3f})"),
        extra_record=lambda: {"scale": grounding.log_scale.exp().item()})
    patch_pretraining.save_final(model, args, seconds, record, init=str(args.init.resolve()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
