"""Chart scenes: the data a chart shows, sampled from a seed, and the rendered image.

    scene, image = generate_chart(rng, split="train", difficulty="easy", image_size=336)

A `ChartScene` holds everything a question can be about (categories, values, series, title, axis
titles, chart type) plus the boxes of every string drawn. Questions and descriptions are computed
from the scene alone (`chart_questions.py`), never from pixels.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image

from minimax_vl.data.chart_layout import render_chart
from minimax_vl.data.drawing import LayoutError, TextBox, first_fitting
from minimax_vl.data.styles import Difficulty, font_families, palettes
from minimax_vl.data.styles import difficulty as get_difficulty
from minimax_vl.data.vocab import vocabulary

CHART_TYPES = ("vbar", "hbar", "grouped_bar", "line", "pie")
MAX_ATTEMPTS = 30  # resamples when a layout cannot fit; a few per thousand charts need one


@dataclass(frozen=True)
class Series:
    name: str
    values: tuple[float, ...]  # one per category, rounded to the chart's decimals
    colour: str


@dataclass(frozen=True)
class ChartScene:
    chart_type: str  # one of CHART_TYPES
    title: str
    x_label: str  # title of the horizontal axis ("" for pies)
    y_label: str  # title of the vertical axis ("" for pies)
    category_axis: str  # noun naming the categories, e.g. "Fruit" or "Year"
    value_name: str  # what the values measure, e.g. "Sales"
    categories: tuple[str, ...]  # bars, line x positions (in order) or pie slices
    series: tuple[Series, ...]  # one for vbar/hbar/pie, several for grouped bars and lines
    colours: tuple[str, ...]  # one per category: bar colours of single-series charts, pie slices
    decimals: int  # 0 or 1; pies hold integer percentages summing to 100
    show_values: bool  # value labels drawn on bars / points / slices
    pie_legend: bool  # pies: legend column instead of labels around the pie
    width: int
    height: int
    font_family: str
    font_size: int  # label font size in px, after fitting the layout
    background: str
    text_colour: str
    grid_colour: str
    split: str
    difficulty: str
    text_boxes: tuple[TextBox, ...] = ()

    @property
    def values(self) -> tuple[float, ...]:
        """Values of a single-series chart."""
        if len(self.series) != 1:
            raise ValueError(f"a {self.chart_type} chart with {len(self.series)} series has no single value list")
        return self.series[0].values

    def value_of(self, category: str, series: str | None = None) -> float:
        chosen = self.series[0] if series is None else next(s for s in self.series if s.name == series)
        return chosen.values[self.categories.index(category)]


def generate_chart(
    rng: random.Random,
    *,
    split: str = "train",
    difficulty: str = "normal",
    image_size: int = 336,
    font_scale: float = 1.0,
    draw: bool = True,
    text_mask: bool = False,
) -> tuple[ChartScene, Image.Image | None]:
    """Samples a chart whose labels fit without clipping or overlap, and draws it.

    `draw=False` plans the layout (so `text_boxes` are filled) but paints nothing; `text_mask=True`
    returns the image with an extra "L" mask of all text ink as `image.info["text_mask"]`.
    """
    level = get_difficulty(difficulty)
    return first_fitting(
        "chart", lambda: sample_chart_scene(rng, split=split, level=level, image_size=image_size, font_scale=font_scale),
        lambda scene: render_chart(scene, draw=draw, text_mask=text_mask), MAX_ATTEMPTS, image_size)


def sample_chart_scene(
    rng: random.Random, *, split: str, level: Difficulty, image_size: int, font_scale: float = 1.0
) -> ChartScene:
    """The data and style of one chart; `render_chart` fits its layout."""
    vocab = vocabulary(split)
    chart_type = rng.choice(level.chart_types)
    aspect = rng.choice(level.aspect_ratios)
    width, height = (image_size, round(image_size / aspect)) if aspect >= 1 else (round(image_size * aspect), image_size)
    palette = rng.choice(palettes(split))

    if chart_type == "line":
        category_axis = vocab.line_axis
        n = rng.randint(max(3, level.num_categories[0]), max(4, level.num_categories[1]))
        start = rng.randrange(len(vocab.line_positions) - n + 1)
        categories = vocab.line_positions[start:start + n]
    else:
        n = rng.randint(*level.num_categories)
        if chart_type == "pie":
            n = min(n, 6)
        if level.easy_vocabulary:
            category_axis = rng.choice(vocab.easy_category_axes)
            words = vocab.easy_pie_categories if chart_type == "pie" else vocab.easy_bar_categories
        else:
            theme = rng.choice(vocab.themes)
            category_axis, words = theme.category_axis, theme.categories
        categories = tuple(rng.sample(words, n))

    if level.easy_vocabulary:
        value_name = rng.choice(vocab.easy_value_axes)
        title = rng.choice(vocab.easy_titles)
    else:
        theme = next((t for t in vocab.themes if t.category_axis == category_axis), rng.choice(vocab.themes))
        value_name = rng.choice(theme.value_names)
        title = rng.choice(vocab.title_templates).format(value=value_name, category=category_axis)

    num_series = 1
    if chart_type == "grouped_bar":
        num_series = rng.randint(2, max(2, level.max_series))
    elif chart_type == "line" and level.max_series > 1:
        num_series = rng.randint(1, level.max_series)
    series_names = (value_name,) if num_series == 1 else tuple(rng.sample(vocab.series, num_series))

    colours = list(palette.marks)
    rng.shuffle(colours)
    decimals = 1 if chart_type != "pie" and rng.random() < level.decimal_probability else 0
    if chart_type == "pie":
        value_rows = [_pie_percentages(rng, n)]
    elif chart_type == "line":
        value_rows = _line_values(rng, n, num_series, decimals, easy=level.easy_vocabulary)
    else:
        value_rows = _bar_values(rng, n, num_series, decimals, easy=level.easy_vocabulary)
    series = tuple(Series(name, tuple(values), colours[i % len(colours)])
                   for i, (name, values) in enumerate(zip(series_names, value_rows)))
    single_colour = chart_type in ("vbar", "hbar") and rng.random() < 0.5
    category_colours = tuple(colours[0] if single_colour else colours[i % len(colours)] for i in range(n))

    show_values = rng.random() < level.value_label_probability
    if chart_type == "line" and num_series > 1:
        show_values = False  # labels of several lines collide too often to be legible
    if chart_type == "grouped_bar" and n * num_series > 10:
        show_values = False
    x_label, y_label = (value_name, category_axis) if chart_type == "hbar" else (category_axis, value_name)
    if chart_type == "pie":
        x_label = y_label = ""
    short_side = min(width, height)
    return ChartScene(
        chart_type=chart_type, title=title, x_label=x_label, y_label=y_label, category_axis=category_axis,
        value_name=value_name, categories=categories, series=series, colours=category_colours, decimals=decimals,
        show_values=show_values, pie_legend=chart_type == "pie" and rng.random() < 0.4, width=width, height=height,
        font_family=rng.choice(font_families(split, level.easy_vocabulary)),
        font_size=max(9, round(level.label_font_fraction * font_scale * short_side)),
        background=rng.choice(palette.background), text_colour=palette.text, grid_colour=palette.grid,
        split=split, difficulty=level.name,
    )


def _quantised(value: float, quantum: float, decimals: int) -> float:
    return round(round(value / quantum) * quantum, decimals)


def _magnitude(rng: random.Random, decimals: int, easy: bool) -> tuple[float, float]:
    """(largest possible value, rounding quantum): easy charts use multiples of 5 up to 100."""
    if easy:
        return 100.0, 5.0
    if decimals:
        return float(rng.choice((10, 20, 50))), 0.1
    magnitude = float(rng.choice((10, 50, 100, 200, 500, 1000, 5000)))
    return magnitude, max(1.0, magnitude / 100)


def _separated(values: list[float], minimum_gap: float) -> bool:
    """Distinct values whose top two and bottom two differ by at least `minimum_gap` (readable extremes)."""
    ordered = sorted(values)
    if len(set(ordered)) != len(ordered):
        return False
    return ordered[-1] - ordered[-2] >= minimum_gap and ordered[1] - ordered[0] >= minimum_gap


def _bar_values(rng: random.Random, n: int, num_series: int, decimals: int, *, easy: bool) -> list[list[float]]:
    magnitude, quantum = _magnitude(rng, decimals, easy)
    rows = []
    for _ in range(num_series):
        while True:
            values = [_quantised(rng.uniform(0.1, 0.95) * magnitude, quantum, decimals) for _ in range(n)]
            if _separated(values, 0.08 * magnitude):
                rows.append(values)
                break
    return rows


def _line_values(rng: random.Random, n: int, num_series: int, decimals: int, *, easy: bool) -> list[list[float]]:
    magnitude, quantum = _magnitude(rng, decimals, easy)
    rows = []
    for _ in range(num_series):
        while True:
            value = rng.uniform(0.2, 0.8) * magnitude
            values = []
            for _ in range(n):
                values.append(_quantised(min(0.95 * magnitude, max(0.1 * magnitude, value)), quantum, decimals))
                value += rng.choice((-1, 1)) * rng.uniform(0.08, 0.3) * magnitude
            if _separated(values, 0.05 * magnitude):
                rows.append(values)
                break
    return rows


def _pie_percentages(rng: random.Random, n: int) -> list[float]:
    """Integer percentages summing to 100, each at least 7, with a clear largest and smallest slice."""
    while True:
        weights = [rng.uniform(1.0, 4.0) for _ in range(n)]
        total = sum(weights)
        raw = [100 * w / total for w in weights]
        shares = [int(r) for r in raw]
        # Largest-remainder rounding: the sum stays exactly 100.
        for i in sorted(range(n), key=lambda i: raw[i] - shares[i], reverse=True)[: 100 - sum(shares)]:
            shares[i] += 1
        if min(shares) >= 7 and _separated([float(s) for s in shares], 3.0):
            return [float(s) for s in shares]
