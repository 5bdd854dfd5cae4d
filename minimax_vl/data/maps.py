"""Street-grid navigation maps: named landmarks at intersections, a compass rose, a scale bar, a
river or a park, sampled from a seed and drawn with Pillow.

    scene, image = generate_map(rng, split="train", difficulty="easy", image_size=336)

Grid coordinates: `col` counts vertical streets from west to east, `row` counts horizontal streets
from north to south; north is up. Blocks are square on the page, so compass directions read off the
grid agree with what the eye sees.
"""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

from PIL import Image

from minimax_vl.data.chart_layout import paint_shapes
from minimax_vl.data.drawing import (
    Box,
    Canvas,
    LayoutError,
    PlannedText,
    TextBox,
    boxes_overlap,
    first_fitting,
    fit_largest_font,
    inside,
    text_size,
)
from minimax_vl.data.styles import Difficulty, font_families, load_font, map_colours, palettes
from minimax_vl.data.styles import difficulty as get_difficulty
from minimax_vl.data.vocab import vocabulary

MAX_ATTEMPTS = 30
BLOCK_LENGTHS_M = (50, 100, 150, 200, 250, 500)


@dataclass(frozen=True)
class Landmark:
    name: str
    col: int
    row: int
    colour: str


@dataclass(frozen=True)
class MapScene:
    vertical_streets: tuple[str, ...]  # west to east, e.g. "Oak St"
    horizontal_streets: tuple[str, ...]  # north to south, e.g. "Ruby Ave"
    landmarks: tuple[Landmark, ...]
    river_row: int | None  # the river flows east-west between horizontal streets river_row and river_row + 1
    park: tuple[int, int] | None  # (col, row) of the park block's north-west corner
    block_metres: int  # the scale bar's length: one block
    width: int
    height: int
    font_family: str
    font_size: int  # landmark label size in px, after fitting
    colours: dict
    split: str
    difficulty: str
    text_boxes: tuple[TextBox, ...] = ()

    def landmark(self, name: str) -> Landmark:
        return next(l for l in self.landmarks if l.name == name)

    def landmark_at(self, col: int, row: int) -> Landmark | None:
        return next((l for l in self.landmarks if (l.col, l.row) == (col, row)), None)


def generate_map(
    rng: random.Random,
    *,
    split: str = "train",
    difficulty: str = "normal",
    image_size: int = 336,
    font_scale: float = 1.0,
    draw: bool = True,
    text_mask: bool = False,
) -> tuple[MapScene, Image.Image | None]:
    """Samples a map whose labels fit without clipping or overlap, and draws it (see `generate_chart`)."""
    level = get_difficulty(difficulty)
    return first_fitting(
        "map", lambda: sample_map_scene(rng, split=split, level=level, image_size=image_size, font_scale=font_scale),
        lambda scene: render_map(scene, draw=draw, text_mask=text_mask), MAX_ATTEMPTS, image_size)


def sample_map_scene(
    rng: random.Random, *, split: str, level: Difficulty, image_size: int, font_scale: float = 1.0
) -> MapScene:
    vocab = vocabulary(split)
    easy = level.easy_vocabulary
    n_vertical = rng.randint(*level.map_streets)
    n_horizontal = rng.randint(*level.map_streets)
    vertical_words = vocab.easy_vertical_streets if easy else vocab.vertical_streets
    horizontal_words = vocab.easy_horizontal_streets if easy else vocab.horizontal_streets
    names = vocab.easy_landmarks if easy else vocab.landmarks
    nodes = [(c, r) for c in range(n_vertical) for r in range(n_horizontal)]
    count = min(rng.randint(*level.map_landmarks), len(nodes))
    colours = list(rng.choice(palettes(split)).marks)
    rng.shuffle(colours)
    landmarks = tuple(Landmark(name, c, r, colours[i % len(colours)])
                      for i, (name, (c, r)) in enumerate(zip(rng.sample(names, count), rng.sample(nodes, count))))
    river_row = rng.randrange(n_horizontal - 1) if rng.random() < 0.5 else None
    park_blocks = [(c, r) for c in range(n_vertical - 1) for r in range(n_horizontal - 1) if r != river_row]
    park = rng.choice(park_blocks) if park_blocks and rng.random() < 0.5 else None
    aspect = rng.choice(level.aspect_ratios)
    width, height = (image_size, round(image_size / aspect)) if aspect >= 1 else (round(image_size * aspect), image_size)
    return MapScene(
        vertical_streets=tuple(f"{w} St" for w in rng.sample(vertical_words, n_vertical)),
        horizontal_streets=tuple(f"{w} Ave" for w in rng.sample(horizontal_words, n_horizontal)),
        landmarks=landmarks, river_row=river_row, park=park, block_metres=rng.choice(BLOCK_LENGTHS_M),
        width=width, height=height, font_family=rng.choice(font_families(split, easy)),
        font_size=max(9, round(level.label_font_fraction * font_scale * min(width, height))),
        colours=map_colours(split), split=split, difficulty=level.name,
    )


def render_map(scene: MapScene, *, draw: bool = True, text_mask: bool = False) -> tuple[MapScene, Image.Image | None]:
    """Fits the layout at the largest font that works, records the text boxes, paints."""
    smallest = max(9, round(scene.font_size * get_difficulty(scene.difficulty).min_font_ratio))
    size, shapes, texts = fit_largest_font(lambda px: _plan_map(scene, px), scene.font_size, smallest, scene.width,
                                           scene.height, "map")
    scene = dataclasses.replace(scene, text_boxes=tuple(t.text_box() for t in texts), font_size=size)
    if not draw:
        return scene, None
    image = Image.new("RGB", (scene.width, scene.height), scene.colours["background"])
    canvas = Canvas(image, text_mask=text_mask)
    paint_shapes(canvas.draw, shapes)
    for text in texts:
        canvas.text(text)
    if canvas.mask is not None:
        image.info["text_mask"] = canvas.mask
    return scene, image


def _grow(box: Box, margin: int) -> Box:
    return (box[0] - margin, box[1] - margin, box[2] + margin, box[3] + margin)


def _closest_marker(box: Box, centres: dict[str, tuple[float, float]]) -> str | None:
    """The landmark whose dot is clearly nearest to a label (None on a near tie): a name must never
    sit as close to a neighbour's dot as to its own."""
    def distance(point) -> float:
        dx = max(box[0] - point[0], 0, point[0] - box[2])
        dy = max(box[1] - point[1], 0, point[1] - box[3])
        return (dx * dx + dy * dy) ** 0.5
    ranked = sorted((distance(p), name) for name, p in centres.items())
    if len(ranked) > 1 and ranked[1][0] < 2 * ranked[0][0] + 4:
        return None
    return ranked[0][1]


def _plan_map(scene: MapScene, size: int) -> tuple[list, list[PlannedText]]:
    width, height = scene.width, scene.height
    ink = "#202020"
    label_font = load_font(scene.font_family, size)
    street_font = load_font(scene.font_family, max(9, round(size * 0.75)))
    small_font = load_font(scene.font_family, max(9, round(size * 0.65)))
    pad = max(3, round(0.025 * min(width, height)))
    gap = max(2, round(0.25 * size))
    ascent, descent = street_font.getmetrics()
    street_line = ascent + descent
    shapes: list = []
    texts: list[PlannedText] = []
    obstacles: list[Box] = []  # drawn things landmark labels must keep clear of

    def add_text(text: str, role: str, xy, anchor: str, font) -> PlannedText:
        item = PlannedText(text, role, (round(xy[0]), round(xy[1])), anchor, font, ink)
        texts.append(item)
        return item

    # Margins: street names above and left of the grid; compass and scale bar below it.
    # The top row of names sits half a line higher than the grid's first street, whose name (at the
    # left) is centred on it: the two rows never meet in the top-left corner.
    grid_top = pad + street_line + street_line // 2 + 2 * gap
    grid_left = pad + max(text_size(n, street_font)[0] for n in scene.horizontal_streets) + gap
    widest_top_name = max(text_size(n, street_font)[0] for n in scene.vertical_streets)
    n_ascent, n_descent = small_font.getmetrics()
    arrow = max(8, round(0.9 * size))
    bottom_band = n_ascent + n_descent + arrow + gap
    grid_bottom_limit = height - pad - bottom_band - gap
    grid_right_limit = width - pad - max(size // 2, widest_top_name // 2 + 1)
    cols, rows = len(scene.vertical_streets), len(scene.horizontal_streets)
    spacing = min((grid_right_limit - grid_left) / (cols - 1), (grid_bottom_limit - grid_top) / (rows - 1))
    if spacing < max(2.2 * size, widest_top_name + 2 * gap):
        raise LayoutError("blocks too small for their labels")

    def xy(col: float, row: float) -> tuple[float, float]:
        return grid_left + col * spacing, grid_top + row * spacing

    grid_right, grid_bottom = xy(cols - 1, rows - 1)
    road = max(3, round(0.14 * spacing))
    colours = scene.colours
    if scene.park is not None:
        (x0, y0), (x1, y1) = xy(*scene.park), xy(scene.park[0] + 1, scene.park[1] + 1)
        shapes.append(("rect", (round(x0 + road), round(y0 + road), round(x1 - road), round(y1 - road)), colours["park"]))
    if scene.river_row is not None:
        y0, y1 = xy(0, scene.river_row)[1], xy(0, scene.river_row + 1)[1]
        shapes.append(("rect", (round(grid_left - road), round(y0 + road), round(grid_right + road), round(y1 - road)),
                       colours["water"]))
    for col in range(cols):
        (x, y0), (_, y1) = xy(col, 0), xy(col, rows - 1)
        shapes.append(("line", [(round(x), round(y0)), (round(x), round(y1))], colours["road_edge"], road + 2))
    for row in range(rows):
        (x0, y), (x1, _) = xy(0, row), xy(cols - 1, row)
        shapes.append(("line", [(round(x0), round(y)), (round(x1), round(y))], colours["road_edge"], road + 2))
    for col in range(cols):
        (x, y0), (_, y1) = xy(col, 0), xy(col, rows - 1)
        shapes.append(("line", [(round(x), round(y0)), (round(x), round(y1))], colours["road"], road))
    for row in range(rows):
        (x0, y), (x1, _) = xy(0, row), xy(cols - 1, row)
        shapes.append(("line", [(round(x0), round(y)), (round(x1), round(y))], colours["road"], road))

    for col, name in enumerate(scene.vertical_streets):
        add_text(name, "street", (xy(col, 0)[0], grid_top - street_line // 2 - 2 * gap), "md", street_font)
    for row, name in enumerate(scene.horizontal_streets):
        add_text(name, "street", (grid_left - gap, xy(0, row)[1]), "rm", street_font)

    # Feature names go where they fit and are simply left out where they do not.
    def optional_label(text: str, centre, room: Box) -> None:
        item = PlannedText(text, "feature", (round(centre[0]), round(centre[1])), "mm", small_font, ink)
        box = item.box
        if box[0] >= room[0] and box[1] >= room[1] and box[2] <= room[2] and box[3] <= room[3]:
            texts.append(item)
    if scene.park is not None:
        (x0, y0), (x1, y1) = xy(*scene.park), xy(scene.park[0] + 1, scene.park[1] + 1)
        optional_label("Park", ((x0 + x1) / 2, (y0 + y1) / 2), (x0 + road, y0 + road, x1 - road, y1 - road))
    if scene.river_row is not None:
        (x0, y0), (x1, y1) = xy(0, scene.river_row), xy(1, scene.river_row + 1)
        optional_label("River", ((x0 + x1) / 2, (y0 + y1) / 2), (x0 + road, y0 + road, x1 - road, y1 - road))

    # Compass rose (bottom right) and scale bar (bottom left), below the grid.
    band_top = height - pad - bottom_band
    cx = width - pad - arrow
    north = add_text("N", "compass", (cx, band_top), "mt", small_font)
    tip, base = north.box[3] + 2, north.box[3] + 2 + arrow
    shapes.append(("polygon", [(cx, tip), (cx - arrow // 3, base), (cx, base - arrow // 4), (cx + arrow // 3, base)], ink))
    obstacles.append((cx - arrow // 3, tip, cx + arrow // 3 + 1, base + 1))
    bar_y = band_top + (bottom_band - gap) // 2
    bar_x0, bar_x1 = pad, pad + round(spacing)
    shapes.append(("line", [(bar_x0, bar_y), (bar_x1, bar_y)], ink, 3))
    shapes.append(("line", [(bar_x0, bar_y - 4), (bar_x0, bar_y + 4)], ink, 2))
    shapes.append(("line", [(bar_x1, bar_y - 4), (bar_x1, bar_y + 4)], ink, 2))
    obstacles.append((bar_x0 - 1, bar_y - 5, bar_x1 + 2, bar_y + 6))
    add_text(f"{scene.block_metres} m", "scale", (bar_x1 + gap, bar_y), "lm", small_font)

    # Landmarks: a dot at the intersection, the name at the first free spot around it.
    radius = max(4, round(0.32 * size))
    markers = {}
    for landmark in scene.landmarks:
        x, y = xy(landmark.col, landmark.row)
        markers[landmark.name] = (round(x - radius), round(y - radius), round(x + radius) + 1, round(y + radius) + 1)
    obstacles.extend(markers.values())
    centres = {l.name: xy(l.col, l.row) for l in scene.landmarks}
    margin = max(2, size // 4)
    for landmark in scene.landmarks:
        x, y = xy(landmark.col, landmark.row)
        d = radius + 2 * margin  # clear of the own dot, whose plate edge may touch it
        candidates = [((x + d, y), "lm"), ((x, y - d), "md"), ((x, y + d), "mt"), ((x - d, y), "rm"),
                      ((x + radius, y - radius - margin), "lb"), ((x - radius, y - radius - margin), "rb"),
                      ((x + radius, y + radius + margin), "lt"), ((x - radius, y + radius + margin), "rt")]
        own = markers[landmark.name]
        taken = [t.box for t in texts] + [o for o in obstacles if o != own]
        for centre, anchor in candidates:
            item = PlannedText(landmark.name, "landmark", (round(centre[0]), round(centre[1])), anchor, label_font, ink)
            plate = _grow(item.box, 2)
            if (inside(plate, width, height) and not boxes_overlap(plate, own)
                    and not any(boxes_overlap(plate, t, margin) for t in taken)
                    and _closest_marker(item.box, centres) == landmark.name):
                break
        else:
            raise LayoutError(f"no room for the label of {landmark.name}")
        box = item.box
        shapes.append(("rect", _grow(box, 2), colours["background"]))  # label plate hides the roads beneath
        texts.append(item)
    for landmark in scene.landmarks:
        shapes.append(("ellipse", markers[landmark.name], landmark.colour, ink))
    return shapes, texts
