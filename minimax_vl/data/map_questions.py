"""Navigation questions with exact answers, and full descriptions, computed from a `MapScene`.

Question-type tags: direction, nearest, intersection, blocks, route_landmark, route, river, count,
scale. Distances are walking distances along the streets, in blocks (Manhattan distance on the grid).
Directions use eight compass points; pairs whose bearing lies within 7.5 degrees of the border between
two points are never asked about, so every asked direction is clear on the page.
"""
from __future__ import annotations

import itertools
import math
import random

from minimax_vl.data.maps import Landmark, MapScene
from minimax_vl.data.qa import QA

COMPASS_POINTS = ("east", "northeast", "north", "northwest", "west", "southwest", "south", "southeast")
AMBIGUOUS_WITHIN_DEG = 7.5

MAP_QUESTION_TYPES = ("direction", "nearest", "intersection", "blocks", "route_landmark", "route", "river", "count",
                      "scale")


def direction(start: Landmark, end: Landmark) -> str | None:
    """The compass point of `end` seen from `start`, or None when the bearing is near a sector border."""
    east, north = end.col - start.col, start.row - end.row  # rows count southwards
    bearing = math.degrees(math.atan2(north, east)) % 360  # 0 = east, counter-clockwise
    sector = round(bearing / 45) % 8
    off_centre = abs((bearing - 45 * round(bearing / 45)))
    if off_centre > 22.5 - AMBIGUOUS_WITHIN_DEG:
        return None
    return COMPASS_POINTS[sector]


def blocks(start: Landmark, end: Landmark) -> int:
    return abs(start.col - end.col) + abs(start.row - end.row)


def route_nodes(start: Landmark, end: Landmark) -> list[tuple[int, int]]:
    """Intersections strictly between start and end on the route that goes east/west first, then north/south."""
    step_col = 1 if end.col > start.col else -1
    step_row = 1 if end.row > start.row else -1
    nodes = [(c, start.row) for c in range(start.col, end.col + step_col, step_col)]
    nodes += [(end.col, r) for r in range(start.row + step_row, end.row + step_row, step_row)]
    return nodes[1:-1]


def route_text(start: Landmark, end: Landmark) -> str:
    legs = []
    east = end.col - start.col
    south = end.row - start.row
    if east:
        legs.append(f"{abs(east)} block{'s' if abs(east) > 1 else ''} {'east' if east > 0 else 'west'}")
    if south:
        legs.append(f"{abs(south)} block{'s' if abs(south) > 1 else ''} {'south' if south > 0 else 'north'}")
    return "Go " + ", then ".join(legs) + "."


def map_questions(scene: MapScene, rng: random.Random) -> list[QA]:
    """Questions of every type that applies to this map."""
    qas: list[QA] = []
    landmarks = scene.landmarks
    names = [l.name for l in landmarks]

    def others(*exclude: str) -> tuple[str, ...]:
        return tuple(n for n in names if n not in exclude)

    qas.append(QA("How many landmarks are marked on the map?", str(len(landmarks)), "count", "relaxed",
                  "There are {answer} landmarks on the map.", (str(len(landmarks) + 1), str(len(landmarks) - 1))))
    scale = f"{scene.block_metres} m"
    qas.append(QA("What distance does the scale bar show?", scale, "scale", "exact",
                  "The scale bar shows {answer}, the length of one block.",
                  tuple(f"{m} m" for m in (scene.block_metres * 2, scene.block_metres // 2) if m != scene.block_metres)))

    for a, b in itertools.permutations(landmarks, 2):
        point = direction(a, b)
        if point is not None:
            opposite = COMPASS_POINTS[(COMPASS_POINTS.index(point) + 4) % 8]
            neighbours = tuple(COMPASS_POINTS[(COMPASS_POINTS.index(point) + k) % 8] for k in (1, -1))
            qas.append(QA(f"In which direction is the {b.name} from the {a.name}?", point, "direction", "exact",
                          f"The {b.name} is {{answer}} of the {a.name}.", (opposite,) + neighbours))
        distance = blocks(a, b)
        if a.name < b.name:  # blocks are symmetric: ask once per pair
            qas.append(QA(f"How many blocks is it from the {a.name} to the {b.name}, walking along the streets?",
                          str(distance), "blocks", "relaxed",
                          f"It is {{answer}} blocks from the {a.name} to the {b.name}.",
                          tuple(str(d) for d in (distance + 1, distance - 1, distance + 2) if d > 0)))
        passed = [scene.landmark_at(c, r) for c, r in route_nodes(a, b)]
        passed = [p for p in passed if p is not None]
        if len(passed) == 1:
            east_west = "east" if b.col > a.col else "west"
            north_south = "south" if b.row > a.row else "north"
            if a.row == b.row:
                how = f"walking straight {east_west}"
            elif a.col == b.col:
                how = f"walking straight {north_south}"
            else:
                how = f"going {east_west} first and then {north_south}"
            qas.append(QA(f"On the way from the {a.name} to the {b.name}, {how}, which landmark do you pass?",
                          passed[0].name, "route_landmark", "exact", "You pass the {answer}.",
                          others(a.name, b.name, passed[0].name) or (a.name,)))
        if distance <= 6:
            wrong = route_text(b, a)
            qas.append(QA(f"How do you walk from the {a.name} to the {b.name}?", route_text(a, b), "route", "exact",
                          "{answer}", (wrong,)))

    for landmark in landmarks:
        distances = sorted((blocks(landmark, other), other.name) for other in landmarks if other is not landmark)
        if len(distances) >= 2 and distances[0][0] < distances[1][0]:
            qas.append(QA(f"Which landmark is closest to the {landmark.name}, walking along the streets?",
                          distances[0][1], "nearest", "exact", f"The {{answer}} is closest to the {landmark.name}.",
                          tuple(name for _, name in distances[1:])))
        corner = f"{scene.vertical_streets[landmark.col]} and {scene.horizontal_streets[landmark.row]}"
        qas.append(QA(f"What is at the corner of {corner}?", landmark.name, "intersection", "exact",
                      f"The {{answer}} is at the corner of {corner}.", others(landmark.name)))
        if scene.river_row is not None:
            side = "north" if landmark.row <= scene.river_row else "south"
            qas.append(QA(f"Is the {landmark.name} north or south of the river?", side, "river", "exact",
                          f"The {landmark.name} is {{answer}} of the river.",
                          ("south" if side == "north" else "north",)))
    return qas


def describe_map(scene: MapScene) -> str:
    """A dense description naming every street and landmark with its corner, the river, park and scale."""
    def join(items: list[str]) -> str:
        return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" and {items[-1]}"

    parts = [
        f"This is a street map with north at the top. {len(scene.vertical_streets)} streets run north to south; "
        f"from west to east they are {join(list(scene.vertical_streets))}. "
        f"{len(scene.horizontal_streets)} avenues run east to west; from north to south they are "
        f"{join(list(scene.horizontal_streets))}.",
        f"There are {len(scene.landmarks)} landmarks: " + join([
            f"the {l.name} at {scene.vertical_streets[l.col]} and {scene.horizontal_streets[l.row]}"
            for l in sorted(scene.landmarks, key=lambda l: (l.row, l.col))]) + ".",
    ]
    if scene.river_row is not None:
        parts.append(f"A river flows east to west between {scene.horizontal_streets[scene.river_row]} and "
                     f"{scene.horizontal_streets[scene.river_row + 1]}.")
    if scene.park is not None:
        col, row = scene.park
        parts.append(f"A park fills the block between {scene.vertical_streets[col]}, {scene.vertical_streets[col + 1]}, "
                     f"{scene.horizontal_streets[row]} and {scene.horizontal_streets[row + 1]}.")
    parts.append(f"The scale bar shows {scene.block_metres} m, the length of one block.")
    return " ".join(parts)
