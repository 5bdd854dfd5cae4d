"""Lays out and paints a `ChartScene`: axes, ticks, bars, lines, pies, legends and every label.

Planning is separate from painting. A planner returns shapes and `PlannedText`s for one font size;
`render_chart` tries the scene's font size and then smaller ones until no text is clipped or
overlapping, and only then paints. Layout rules (all sizes in px):

    title          centred at the top
    legend row     under the title when a chart has several series
    plot area      gridlines at "nice" ticks; value labels sit above bars / points (right of hbars)
    category row   under the plot (left of it for hbars); axis titles at the bottom and, rotated, at the left
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont

from minimax_vl.data.drawing import Canvas, LayoutError, PlannedText, fit_largest_font, text_size
from minimax_vl.data.qa import format_number
from minimax_vl.data.styles import difficulty, load_font

if TYPE_CHECKING:
    from minimax_vl.data.charts import ChartScene

MIN_FONT_PX = 9

Shape = tuple  # ("rect", box, fill) | ("line", points, fill, width) | ("ellipse", box, fill, outline) | ("pieslice", ...)


def render_chart(
    scene: ChartScene, *, draw: bool = True, text_mask: bool = False
) -> tuple[ChartScene, Image.Image | None]:
    """Fits the layout (largest font that works), records the text boxes in the scene, paints it."""
    smallest = max(MIN_FONT_PX, round(scene.font_size * difficulty(scene.difficulty).min_font_ratio))
    size, shapes, texts = fit_largest_font(lambda px: _plan(scene, px), scene.font_size, smallest, scene.width,
                                           scene.height, f"{scene.chart_type} chart")
    scene = dataclasses.replace(scene, text_boxes=tuple(t.text_box() for t in texts), font_size=size)
    if not draw:
        return scene, None
    image = Image.new("RGB", (scene.width, scene.height), scene.background)
    canvas = Canvas(image, text_mask=text_mask)
    paint_shapes(canvas.draw, shapes)
    for text in texts:
        canvas.text(text)
    if canvas.mask is not None:
        image.info["text_mask"] = canvas.mask
    return scene, image


def paint_shapes(draw: ImageDraw.ImageDraw, shapes: list[Shape]) -> None:
    for kind, *args in shapes:
        if kind == "rect":
            box, fill = args
            draw.rectangle(box, fill=fill)
        elif kind == "line":
            points, fill, width = args
            draw.line(points, fill=fill, width=width, joint="curve")
        elif kind == "ellipse":
            box, fill, outline = args
            draw.ellipse(box, fill=fill, outline=outline)
        elif kind == "pieslice":
            box, start, end, fill, outline = args
            draw.pieslice(box, start, end, fill=fill, outline=outline, width=2)
        elif kind == "polygon":
            points, fill = args
            draw.polygon(points, fill=fill)
        else:
            raise ValueError(f"unknown shape kind {kind!r}")


@dataclass(frozen=True)
class _Fonts:
    title: ImageFont.FreeTypeFont
    label: ImageFont.FreeTypeFont
    tick: ImageFont.FreeTypeFont
    value: ImageFont.FreeTypeFont

    @classmethod
    def at(cls, family: str, size: int) -> _Fonts:
        return cls(load_font(family, round(size * 1.15)), load_font(family, size),
                   load_font(family, max(8, round(size * 0.8))), load_font(family, max(8, round(size * 0.85))))


def _line_height(font: ImageFont.FreeTypeFont) -> int:
    ascent, descent = font.getmetrics()
    return ascent + descent


@dataclass
class _Frame:
    """Shared geometry of one planning attempt."""

    scene: ChartScene
    fonts: _Fonts
    pad: int
    gap: int
    texts: list[PlannedText]
    shapes: list[Shape]

    def text(self, text: str, role: str, xy, anchor: str, font, rotate: bool = False) -> PlannedText:
        item = PlannedText(text, role, (round(xy[0]), round(xy[1])), anchor, font, self.scene.text_colour, rotate)
        self.texts.append(item)
        return item

    def header(self) -> int:
        """Title and (for several series) the legend row; returns the y where the plot may start."""
        scene, fonts = self.scene, self.fonts
        title = self.text(scene.title, "title", (scene.width / 2, self.pad), "mt", fonts.title)
        y = title.box[3] + self.gap
        if len(scene.series) > 1:
            y = self._legend_row(y) + self.gap
        return y

    def _legend_row(self, top: int) -> int:
        scene, font = self.scene, self.fonts.value
        swatch = max(6, round(0.7 * font.size))
        widths = [text_size(s.name, font)[0] for s in scene.series]
        spacing = 2 * self.gap
        total = sum(swatch + self.gap // 2 + w for w in widths) + spacing * (len(widths) - 1)
        if total > scene.width - 2 * self.pad:
            raise LayoutError("legend row wider than the image")
        row_height = max(swatch, _line_height(font))
        cy = top + row_height / 2
        x = (scene.width - total) / 2
        for series, w in zip(scene.series, widths):
            self.shapes.append(("rect", (round(x), round(cy - swatch / 2), round(x) + swatch, round(cy + swatch / 2)),
                                series.colour))
            self.text(series.name, "legend", (x + swatch + self.gap // 2, cy), "lm", font)
            x += swatch + self.gap // 2 + w + spacing
        return round(top + row_height)


def _plan(scene: ChartScene, size: int) -> tuple[list[Shape], list[PlannedText]]:
    frame = _Frame(scene, _Fonts.at(scene.font_family, size), pad=max(3, round(0.03 * min(scene.width, scene.height))),
                   gap=max(2, round(0.3 * size)), texts=[], shapes=[])
    planner = {"vbar": _plan_columns, "grouped_bar": _plan_columns, "line": _plan_columns,
               "hbar": _plan_hbar, "pie": _plan_pie}[scene.chart_type]
    planner(frame)
    return frame.shapes, frame.texts


def _ticks(vmax: float, max_intervals: int) -> tuple[float, int, int]:
    """(step, number of intervals, decimals) of a "nice" axis from 0 that covers vmax."""
    max_intervals = max(1, max_intervals)
    exponent = math.floor(math.log10(vmax / max_intervals))
    for e in range(exponent, exponent + 3):
        for mantissa in (1, 2, 2.5, 5):
            step = mantissa * 10.0 ** e
            intervals = math.ceil(vmax / step - 1e-9)
            if intervals <= max_intervals:
                decimals = max(0, -e + (1 if mantissa == 2.5 else 0))
                return step, intervals, decimals
    raise AssertionError("unreachable: a step of 10x the range always fits")


def _max_value(scene: ChartScene) -> float:
    return max(max(s.values) for s in scene.series)


def _plan_columns(f: _Frame) -> None:
    """Vertical bars, grouped bars and lines: categories along the bottom, values up the left."""
    scene, fonts, pad, gap = f.scene, f.fonts, f.pad, f.gap
    width, height = scene.width, scene.height
    top = f.header()
    x_title = f.text(scene.x_label, "x_label", (width / 2, height - pad), "md", fonts.label)
    category_bottom = x_title.box[1] - gap
    plot_bottom = category_bottom - _line_height(fonts.label) - gap
    tick_height = _line_height(fonts.tick)
    value_height = _line_height(fonts.value)
    plot_top = top + (value_height + gap if scene.show_values else tick_height // 2)
    plot_height = plot_bottom - plot_top
    if plot_height < 3 * fonts.label.size:
        raise LayoutError("no vertical room for the plot")
    step, intervals, tick_decimals = _ticks(_max_value(scene), int(plot_height // (1.5 * tick_height)))
    axis_max = step * intervals
    tick_labels = [format_number(step * i, tick_decimals) for i in range(intervals + 1)]

    y_title_width = text_size(scene.y_label, fonts.label)[1]
    tick_width = max(text_size(t, fonts.tick)[0] for t in tick_labels)
    plot_left = pad + y_title_width + gap + tick_width + gap
    plot_right = width - pad
    plot_width = plot_right - plot_left
    if plot_width < 3 * fonts.label.size:
        raise LayoutError("no horizontal room for the plot")
    f.text(scene.y_label, "y_label", (pad + y_title_width / 2, (plot_top + plot_bottom) / 2), "mm", fonts.label,
           rotate=True)

    def y_of(value: float) -> float:
        return plot_bottom - value / axis_max * plot_height

    for i, label in enumerate(tick_labels):
        y = y_of(step * i)
        f.shapes.append(("line", [(plot_left, round(y)), (plot_right, round(y))], scene.grid_colour, 1))
        f.text(label, "tick", (plot_left - gap, y), "rm", fonts.tick)
    f.shapes.append(("line", [(plot_left, plot_top), (plot_left, plot_bottom), (plot_right, plot_bottom)],
                     scene.text_colour, 2))

    slot = plot_width / len(scene.categories)
    centres = [plot_left + slot * (i + 0.5) for i in range(len(scene.categories))]
    for category, cx in zip(scene.categories, centres):
        f.text(category, "category", (cx, category_bottom), "md", fonts.label)

    if scene.chart_type == "line":
        _plan_lines(f, centres, y_of, plot_top)
        return
    group = slot * (0.6 if len(scene.series) == 1 else 0.8)
    bar = group / len(scene.series)
    for j, series in enumerate(scene.series):
        for i, (value, cx) in enumerate(zip(series.values, centres)):
            left = cx - group / 2 + bar * j
            colour = scene.colours[i] if len(scene.series) == 1 else series.colour
            y = y_of(value)
            f.shapes.append(("rect", (round(left + 0.05 * bar), round(y), round(left + 0.95 * bar), plot_bottom), colour))
            if scene.show_values:
                f.text(format_number(value, scene.decimals), "value", (left + bar / 2, y - gap / 2), "md", fonts.value)


def _plan_lines(f: _Frame, centres: list[float], y_of, plot_top: float) -> None:
    scene = f.scene
    radius = max(2, round(0.22 * f.fonts.label.size))
    for series in scene.series:
        points = [(round(cx), round(y_of(v))) for cx, v in zip(centres, series.values)]
        f.shapes.append(("line", points, series.colour, max(2, round(f.fonts.label.size / 7))))
        for (x, y), value in zip(points, series.values):
            f.shapes.append(("ellipse", (x - radius, y - radius, x + radius, y + radius), series.colour, series.colour))
            if scene.show_values:
                f.text(format_number(value, scene.decimals), "value", (x, y - radius - f.gap / 2), "md", f.fonts.value)


def _plan_hbar(f: _Frame) -> None:
    """Horizontal bars: categories down the left, values along the bottom."""
    scene, fonts, pad, gap = f.scene, f.fonts, f.pad, f.gap
    width, height = scene.width, scene.height
    top = f.header()
    x_title = f.text(scene.x_label, "x_label", (width / 2, height - pad), "md", fonts.label)
    tick_top = x_title.box[1] - gap - _line_height(fonts.tick)
    plot_bottom = tick_top - gap
    plot_top = top + gap

    y_title_width = text_size(scene.y_label, fonts.label)[1]
    category_width = max(text_size(c, fonts.label)[0] for c in scene.categories)
    plot_left = pad + y_title_width + gap + category_width + gap
    value_labels = [format_number(v, scene.decimals) for v in scene.values]
    value_width = max(text_size(v, fonts.value)[0] for v in value_labels) + gap if scene.show_values else 0
    widest_tick = text_size(format_number(_max_value(scene) * 2, scene.decimals + 1), fonts.tick)[0]
    plot_right = width - pad - max(value_width, widest_tick // 2 + 1)
    plot_width, plot_height = plot_right - plot_left, plot_bottom - plot_top
    if plot_width < 3 * fonts.label.size or plot_height < 2 * fonts.label.size:
        raise LayoutError("no room for the plot")
    step, intervals, tick_decimals = _ticks(_max_value(scene), int(plot_width // (widest_tick + 2 * gap)))
    axis_max = step * intervals

    def x_of(value: float) -> float:
        return plot_left + value / axis_max * plot_width

    f.text(scene.y_label, "y_label", (pad + y_title_width / 2, (plot_top + plot_bottom) / 2), "mm", fonts.label,
           rotate=True)
    for i in range(intervals + 1):
        x = x_of(step * i)
        f.shapes.append(("line", [(round(x), plot_top), (round(x), plot_bottom)], scene.grid_colour, 1))
        f.text(format_number(step * i, tick_decimals), "tick", (x, tick_top), "ma", fonts.tick)
    f.shapes.append(("line", [(plot_left, plot_top), (plot_left, plot_bottom), (plot_right, plot_bottom)],
                     scene.text_colour, 2))
    slot = plot_height / len(scene.categories)
    for i, (category, value, label) in enumerate(zip(scene.categories, scene.values, value_labels)):
        cy = plot_top + slot * (i + 0.5)
        f.text(category, "category", (plot_left - gap, cy), "rm", fonts.label)
        right = x_of(value)
        f.shapes.append(("rect", (plot_left + 1, round(cy - 0.3 * slot), round(right), round(cy + 0.3 * slot)),
                         scene.colours[i]))
        if scene.show_values:
            f.text(label, "value", (right + gap / 2, cy), "lm", fonts.value)


def _plan_pie(f: _Frame) -> None:
    """A pie from 12 o'clock clockwise, labelled around the rim or with a legend column."""
    scene, fonts, pad, gap = f.scene, f.fonts, f.pad, f.gap
    width, height = scene.width, scene.height
    top = f.header() + gap
    bottom, left, right = height - pad, pad, width - pad
    labels = [f"{c} {v:.0f}%" if scene.show_values else c for c, v in zip(scene.categories, scene.values)]
    label_width = max(text_size(t, fonts.label)[0] for t in labels)
    line_height = _line_height(fonts.label)
    if scene.pie_legend:
        swatch = max(6, round(0.7 * fonts.label.size))
        legend_width = swatch + gap // 2 + label_width
        radius = min((right - left - legend_width - 3 * gap) / 2, (bottom - top) / 2)
        cx, cy = left + radius + gap, (top + bottom) / 2
    else:
        radius = min((right - left) / 2 - label_width - gap, (bottom - top) / 2 - line_height - gap)
        cx, cy = width / 2, (top + bottom) / 2
    if radius < 0.15 * min(width, height):
        raise LayoutError("pie too small next to its labels")

    start = -90.0
    box = (round(cx - radius), round(cy - radius), round(cx + radius), round(cy + radius))
    for i, (share, label) in enumerate(zip(scene.values, labels)):
        extent = 360.0 * share / 100.0
        f.shapes.append(("pieslice", box, start, start + extent, scene.colours[i], scene.background))
        if not scene.pie_legend:
            middle = math.radians(start + extent / 2)
            x = cx + (radius + gap) * math.cos(middle)
            y = cy + (radius + gap) * math.sin(middle)
            if math.cos(middle) > 0.3:
                anchor = "lm"
            elif math.cos(middle) < -0.3:
                anchor = "rm"
            else:
                anchor = "mt" if math.sin(middle) > 0 else "md"
            f.text(label, "category", (x, y), anchor, fonts.label)
        start += extent
    if scene.pie_legend:
        row = max(swatch, line_height) + gap // 2
        x = cx + radius + 2 * gap
        y = cy - row * len(labels) / 2
        for i, label in enumerate(labels):
            row_cy = y + row * (i + 0.5)
            f.shapes.append(("rect", (round(x), round(row_cy - swatch / 2), round(x) + swatch, round(row_cy + swatch / 2)),
                             scene.colours[i]))
            f.text(label, "legend", (x + swatch + gap // 2, row_cy), "lm", fonts.label)
