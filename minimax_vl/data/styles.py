"""Visual styles: difficulty presets, colour palettes and fonts, with separate sets for `heldout`.

Fonts: DejaVu faces when the machine has them, else Pillow's bundled default font, which is
scalable since Pillow 10.1 (`ImageFont.load_default(size=...)`). No font is ever required, so an
image's exact pixels (not its questions) can differ between machines with different font sets.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

from PIL import ImageFont

from minimax_vl.data.splits import vocabulary_split


@dataclass(frozen=True)
class Difficulty:
    """How hard the generated images are to read.

    `easy` is meant for a tiny model trained on CPU: few categories, labels about two ViT patches tall,
    a small vocabulary, value labels always drawn, integer values, square images.
    """

    name: str
    chart_types: tuple[str, ...]
    num_categories: tuple[int, int]  # inclusive range
    max_series: int  # >1 enables grouped bars and multi-line charts
    label_font_fraction: float  # label font size as a fraction of the image's short side
    min_font_ratio: float  # labels may shrink to this share of that size to fit; beyond it the scene is resampled
    value_label_probability: float
    decimal_probability: float  # chance a chart uses one decimal place instead of integers
    aspect_ratios: tuple[float, ...]  # width / height
    map_streets: tuple[int, int]  # street count range, each direction
    map_landmarks: tuple[int, int]
    easy_vocabulary: bool


EASY = Difficulty(
    name="easy", chart_types=("vbar", "hbar", "line", "pie"), num_categories=(3, 4), max_series=1,
    label_font_fraction=0.085, min_font_ratio=0.75, value_label_probability=1.0, decimal_probability=0.0, aspect_ratios=(1.0,),
    map_streets=(3, 3), map_landmarks=(3, 4), easy_vocabulary=True,
)
NORMAL = Difficulty(
    name="normal", chart_types=("vbar", "hbar", "grouped_bar", "line", "pie"), num_categories=(3, 7), max_series=3,
    label_font_fraction=0.05, min_font_ratio=0.6, value_label_probability=0.6, decimal_probability=0.25,
    aspect_ratios=(1.0, 1.0, 4 / 3, 3 / 4, 16 / 10), map_streets=(4, 5), map_landmarks=(4, 7), easy_vocabulary=False,
)
DIFFICULTIES = {d.name: d for d in (EASY, NORMAL)}


def difficulty(name: str) -> Difficulty:
    if name not in DIFFICULTIES:
        raise ValueError(f"unknown difficulty {name!r}; expected one of {sorted(DIFFICULTIES)}")
    return DIFFICULTIES[name]


@dataclass(frozen=True)
class Palette:
    background: tuple[str, ...]
    text: str
    grid: str
    marks: tuple[str, ...]  # bar / line / slice / landmark colours; text is never drawn on them


PALETTES = {
    "train": (
        Palette(("#ffffff", "#f7f7f7"), "#111111", "#d0d0d0",
                ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")),
        Palette(("#ffffff", "#fbfbf4"), "#1a1a1a", "#cccccc",
                ("#4e79a7", "#f28e2b", "#e15759", "#59a14f", "#b07aa1", "#9c755f", "#76b7b2", "#edc948")),
    ),
    "heldout": (
        Palette(("#fff8e7", "#f0f4ff"), "#202040", "#c8c0b0",
                ("#6b3e26", "#2f4858", "#86bbd8", "#c7a15b", "#33658a", "#a23b72", "#3b8b5a", "#f26419")),
    ),
}

# Map colours are a separate family: roads, water and park must be recognisable in every split.
MAP_COLOURS = {
    "train": {"background": "#f2efe9", "road": "#ffffff", "road_edge": "#b9b4a9", "water": "#9cc9f0", "park": "#b7dfa5"},
    "heldout": {"background": "#e9eef2", "road": "#fdfbea", "road_edge": "#9aa3ad", "water": "#7fb3d5", "park": "#c5e1a5"},
}

_FONT_FILES = {
    "sans": "DejaVuSans.ttf",
    "sans-bold": "DejaVuSans-Bold.ttf",
    "sans-condensed": "DejaVuSansCondensed.ttf",
    "serif": "DejaVuSerif.ttf",
    "serif-bold": "DejaVuSerif-Bold.ttf",
    "mono": "DejaVuSansMono.ttf",
}
FONT_FAMILIES = {
    ("train", False): ("sans", "sans-bold", "sans-condensed", "default"),
    ("train", True): ("sans-bold", "default"),
    ("heldout", False): ("serif", "serif-bold", "mono"),
    ("heldout", True): ("serif-bold", "mono"),
}


def palettes(split: str) -> tuple[Palette, ...]:
    return PALETTES[vocabulary_split(split)]


def map_colours(split: str) -> dict[str, str]:
    return MAP_COLOURS[vocabulary_split(split)]


def font_families(split: str, easy: bool) -> tuple[str, ...]:
    return FONT_FAMILIES[(vocabulary_split(split), easy)]


@functools.lru_cache(maxsize=None)
def _font_file_available(family: str) -> bool:
    try:
        ImageFont.truetype(_FONT_FILES[family], 10)  # Pillow also searches the system font folders
        return True
    except OSError:
        return False


@functools.lru_cache(maxsize=4096)
def load_font(family: str, size: int) -> ImageFont.FreeTypeFont:
    """A font of `family` at `size` px; falls back to Pillow's bundled font when the file is missing."""
    size = max(1, int(size))
    if family != "default" and _font_file_available(family):
        return ImageFont.truetype(_FONT_FILES[family], size)
    return ImageFont.load_default(size=size)
