"""Text placement with recorded boxes, and the layout rules every generated image obeys.

Layouts are planned before anything is drawn: `measure` gives a string's ink box at a position,
the planner checks the boxes (`layout_problems`), and only a valid plan is painted by `Canvas`.
A `TextBox` is recorded for every string drawn, so tests can prove that no label is clipped by the
image border or overlaps another label.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

Box = tuple[int, int, int, int]  # (left, top, right, bottom), pixels, right/bottom exclusive


@dataclass(frozen=True)
class TextBox:
    text: str
    role: str  # "title", "x_label", "category", "value", "tick", "legend", "landmark", "street", ...
    box: Box


class NoLayoutFound(RuntimeError):
    """Every scene sampled from a generator failed to fit; the message says which size and font scale to change."""


class LayoutError(Exception):
    """A planned layout breaks a rule (clipped or overlapping text); the caller retries smaller or resamples."""


def first_fitting(what: str, sample, render, attempts: int, image_size: int):
    """render(sample()) for fresh samples until one fits (render raises LayoutError when labels clip or overlap);
    after `attempts` failures, NoLayoutFound says what to change."""
    for _ in range(attempts):
        scene = sample()
        try:
            return render(scene)
        except LayoutError:
            continue  # resample: labels did not fit even at the smallest allowed font
    raise NoLayoutFound(f"no {what} layout fitted in {attempts} attempts at image size {image_size}; "
                        "use a larger --image-size or a smaller font scale")


@functools.lru_cache(maxsize=65536)
def _ink_offsets(font: ImageFont.FreeTypeFont, text: str, anchor: str) -> Box:
    # Fonts come from `styles.load_font`'s cache, so identity is a stable key; planners measure the
    # same words many times while they search for a fitting font size.
    return font.getbbox(text, anchor=anchor)


def measure(text: str, font: ImageFont.FreeTypeFont, xy: tuple[float, float], anchor: str = "la") -> Box:
    """The ink box of `text` drawn at `xy` with `anchor` (Pillow anchors, e.g. "mm" = centred)."""
    left, top, right, bottom = _ink_offsets(font, text, anchor)
    x, y = round(xy[0]), round(xy[1])
    return (x + left, y + top, x + right, y + bottom)


def text_size(text: str, font: ImageFont.FreeTypeFont) -> tuple[int, int]:
    left, top, right, bottom = _ink_offsets(font, text, "la")
    return right - left, bottom - top


def boxes_overlap(a: Box, b: Box, min_gap: int = 0) -> bool:
    """True when the boxes share area, or come closer than `min_gap` px (touching edges do not count)."""
    return (a[0] < b[2] + min_gap and b[0] < a[2] + min_gap
            and a[1] < b[3] + min_gap and b[1] < a[3] + min_gap)


def inside(box: Box, width: int, height: int) -> bool:
    return box[0] >= 0 and box[1] >= 0 and box[2] <= width and box[3] <= height


def layout_problems(boxes: list[TextBox], width: int, height: int, min_gap: int = 0) -> list[str]:
    """Every rule a set of text boxes breaks: outside the image, or overlapping (or closer than
    `min_gap` px to) another box. Planners ask for a gap so neighbouring words never run together."""
    problems = [f"{b.role} {b.text!r} at {b.box} is outside the {width}x{height} image"
                for b in boxes if not inside(b.box, width, height)]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            if boxes_overlap(a.box, b.box, min_gap):
                problems.append(f"{a.role} {a.text!r} at {a.box} overlaps {b.role} {b.text!r} at {b.box}")
    return problems


def check_layout(boxes: list[TextBox], width: int, height: int, min_gap: int = 0) -> None:
    problems = layout_problems(boxes, width, height, min_gap)
    if problems:
        raise LayoutError("; ".join(problems[:3]))


@dataclass(frozen=True)
class PlannedText:
    text: str
    role: str
    xy: tuple[float, float]
    anchor: str
    font: ImageFont.FreeTypeFont
    fill: str
    rotate: bool = False  # 90 degrees counter-clockwise, reading bottom to top (y-axis titles)

    @functools.cached_property
    def box(self) -> Box:
        if not self.rotate:
            return measure(self.text, self.font, self.xy, self.anchor)
        w, h = text_size(self.text, self.font)
        # Rotated text is centred on xy whatever the anchor: the box swaps width and height.
        x, y = round(self.xy[0]), round(self.xy[1])
        return (x - h // 2, y - w // 2, x - h // 2 + h, y - w // 2 + w)

    def text_box(self) -> TextBox:
        return TextBox(self.text, self.role, self.box)


class Canvas:
    """Paints planned text; with `text_mask=True` it also paints all text ink into an "L" mask
    (used by tests to check that the recorded boxes cover every text pixel)."""

    def __init__(self, image: Image.Image, text_mask: bool = False):
        self.image = image
        self.draw = ImageDraw.Draw(image)
        self.mask = Image.new("L", image.size, 0) if text_mask else None
        self._mask_draw = ImageDraw.Draw(self.mask) if self.mask is not None else None

    def text(self, item: PlannedText) -> None:
        if item.rotate:
            self._rotated_text(item)
            return
        xy = (round(item.xy[0]), round(item.xy[1]))  # the same rounding as `measure`
        self.draw.text(xy, item.text, font=item.font, fill=item.fill, anchor=item.anchor)
        if self._mask_draw is not None:
            self._mask_draw.text(xy, item.text, font=item.font, fill=255, anchor=item.anchor)

    def _rotated_text(self, item: PlannedText) -> None:
        w, h = text_size(item.text, item.font)
        left, top, _, _ = item.font.getbbox(item.text, anchor="la")
        stamp = Image.new("L", (w, h), 0)
        ImageDraw.Draw(stamp).text((-left, -top), item.text, font=item.font, fill=255)
        stamp = stamp.transpose(Image.Transpose.ROTATE_90)
        x0, y0 = item.box[:2]
        self.image.paste(item.fill, (x0, y0, x0 + stamp.width, y0 + stamp.height), stamp)
        if self.mask is not None:
            self.mask.paste(255, (x0, y0, x0 + stamp.width, y0 + stamp.height), stamp)


def fit_largest_font(plan, start: int, smallest: int, width: int, height: int, what: str):
    """The largest font size from `start` down to `smallest` whose planned text passes `check_layout`.

    `plan(size) -> (shapes, texts)` lays the scene out at one font size (it may raise LayoutError).
    Returns (size, shapes, texts); raises LayoutError naming `what` when no size fits.
    """
    size = start
    while size >= smallest:
        try:
            shapes, texts = plan(size)
            check_layout([t.text_box() for t in texts], width, height, min_gap=max(2, size // 4))
            return size, shapes, texts
        except LayoutError:
            size = min(size - 1, round(size * 0.9))
    raise LayoutError(f"{what} does not fit at fonts {smallest}..{start} px")
