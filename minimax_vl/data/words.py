"""Reading warm-up images: a few label words and numbers on a plain background, to be read back in order.

The first step of the demo model's reading curriculum (../shared/FINDINGS.md: a small VLM trained from scratch
on chart questions alone never learned to read labels). Words come from the split's label vocabulary (the words
charts and maps of that split use, plus numbers and percentages as value labels print them), drawn in the
split's fonts at label sizes, one per row, rows top to bottom; the answer lists them in reading order.

    scene, image = generate_words(rng, split="train", difficulty="easy", image_size=192)
    scene.words        # ("Owl", "45", "Oak St")
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

from minimax_vl.data.drawing import measure
from minimax_vl.data.styles import difficulty as get_difficulty
from minimax_vl.data.styles import font_families, load_font, palettes
from minimax_vl.data.vocab import vocabulary

PROMPTS = ("What is written in this image?", "Read the text in the image.", "Read out every word in the image.")


@dataclass(frozen=True)
class WordsScene:
    words: tuple[str, ...]  # in reading order: top to bottom
    boxes: tuple[tuple[int, int, int, int], ...]

    def answer(self) -> str:
        return ", ".join(self.words)


def word_pool(split: str, easy: bool) -> list[str]:
    v = vocabulary(split)
    if easy:
        words = [*v.easy_bar_categories, *v.easy_pie_categories, *v.easy_titles, *v.easy_category_axes,
                 *v.easy_value_axes, *v.easy_landmarks, *(f"{s} St" for s in v.easy_vertical_streets),
                 *(f"{s} Ave" for s in v.easy_horizontal_streets)]
    else:
        words = sorted(v.label_words())
    return words


def random_word(rng: random.Random, pool: list[str]) -> str:
    roll = rng.random()
    if roll < 0.2:
        return str(rng.randrange(0, 101, 5))  # value labels of easy bar and line charts
    if roll < 0.3:
        return f"{rng.randint(1, 99)}%"  # pie slices
    return rng.choice(pool)


def generate_words(rng: random.Random, *, split: str = "train", difficulty: str = "easy", image_size: int = 192,
                   font_scale: float = 1.0, max_words: int = 4, draw: bool = True) -> tuple[WordsScene, Image.Image | None]:
    """1..max_words words, each on its own row band at a random horizontal position."""
    style = get_difficulty(difficulty)
    pool = word_pool(split, style.easy_vocabulary)
    palette = rng.choice(palettes(split))
    family = rng.choice(font_families(split, style.easy_vocabulary))
    count = rng.randint(1, max_words)
    band = image_size // count
    words, boxes, placed = [], [], []
    for row in range(count):
        word = random_word(rng, pool)
        size = round(image_size * style.label_font_fraction * font_scale * rng.uniform(0.85, 1.25))
        for shrink in (1.0, 0.85, 0.7, 0.55):  # long street names at big sizes: shrink until the word fits
            font = load_font(family, max(8, round(size * shrink)))
            left, top, right, bottom = measure(word, font, (0, 0))
            if right - left < image_size - 4 and bottom - top < band - 2:
                break
        width, height = right - left, bottom - top
        x = rng.randint(2, max(2, image_size - width - 2)) - left
        y = row * band + rng.randint(1, max(1, band - height - 1)) - top
        box = measure(word, font, (x, y))
        words.append(word)
        boxes.append(box)
        placed.append((word, font, (x, y)))
    scene = WordsScene(tuple(words), tuple(boxes))
    if not draw:
        return scene, None
    image = Image.new("RGB", (image_size, image_size), rng.choice(palette.background))
    pen = ImageDraw.Draw(image)
    for word, font, xy in placed:
        pen.text(xy, word, font=font, fill=palette.text)
    return scene, image
