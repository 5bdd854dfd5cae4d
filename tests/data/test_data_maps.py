"""Map generator: every answer re-derived from the scene by independent code, descriptions complete,
labels legible, output deterministic by seed."""
import math
import re

import numpy as np

from minimax_vl.data.drawing import layout_problems
from minimax_vl.data.map_questions import describe_map, map_questions
from minimax_vl.data.maps import generate_map
from minimax_vl.data.scoring import is_correct
from minimax_vl.data.splits import rng_for

SETTINGS = [(split, difficulty) for split in ("train", "heldout") for difficulty in ("easy", "normal")]
POINTS = ["east", "northeast", "north", "northwest", "west", "southwest", "south", "southeast"]


def maps(count, draw=False, text_mask=False):
    for seed in range(count):
        split, difficulty = SETTINGS[seed % len(SETTINGS)]
        scene, image = generate_map(rng_for(seed, "test-map"), split=split, difficulty=difficulty, draw=draw,
                                    text_mask=text_mask)
        yield seed, scene, image


def named(scene, text):
    """Landmarks mentioned in text, in order of appearance."""
    hits = [(m.start(), l) for l in scene.landmarks for m in re.finditer(rf"\bthe {re.escape(l.name)}\b", text)]
    return [l for _, l in sorted(hits, key=lambda h: h[0])]


def walk(scene, start, route):
    """Follows "Go 2 blocks east, then 1 block north." from a landmark; returns (col, row)."""
    col, row = start.col, start.row
    for count, way in re.findall(r"(\d+) blocks? (east|west|north|south)", route):
        d = int(count)
        col += {"east": d, "west": -d}.get(way, 0)
        row += {"south": d, "north": -d}.get(way, 0)
    return col, row


def check(scene, qa):
    q, t = qa.question, qa.question_type
    if t == "count":
        assert qa.answer == str(len(scene.landmarks))
    elif t == "scale":
        assert qa.answer == f"{scene.block_metres} m"
    elif t == "direction":
        target, origin = named(scene, q)  # "In which direction is the B from the A?"
        angle = math.degrees(math.atan2(origin.row - target.row, target.col - origin.col)) % 360
        assert POINTS[int(((angle + 22.5) % 360) // 45)] == qa.answer
        assert min(abs(angle - (22.5 + 45 * k)) for k in range(-1, 9)) >= 7.5  # never near a border
    elif t == "blocks":
        a, b = named(scene, q)
        assert qa.answer == str(abs(a.col - b.col) + abs(a.row - b.row))
    elif t == "nearest":
        (a,) = named(scene, q)
        distance = {l.name: abs(l.col - a.col) + abs(l.row - a.row) for l in scene.landmarks if l is not a}
        best = min(distance.values())
        assert [n for n, d in distance.items() if d == best] == [qa.answer]
    elif t == "intersection":
        street, avenue = re.search(r"corner of (.+ St) and (.+ Ave)\?", q).groups()
        col, row = scene.vertical_streets.index(street), scene.horizontal_streets.index(avenue)
        assert [l.name for l in scene.landmarks if (l.col, l.row) == (col, row)] == [qa.answer]
    elif t == "route":
        a, b = named(scene, q)
        assert walk(scene, a, qa.answer) == (b.col, b.row)
        assert sum(int(n) for n in re.findall(r"\d+", qa.answer)) == abs(a.col - b.col) + abs(a.row - b.row)
    elif t == "route_landmark":
        a, b = named(scene, q)[:2]
        # Walk east/west along a's avenue first, then north/south along b's street.
        path = [(c, a.row) for c in range(min(a.col, b.col), max(a.col, b.col) + 1)]
        path += [(b.col, r) for r in range(min(a.row, b.row), max(a.row, b.row) + 1)]
        passed = {l.name for l in scene.landmarks if (l.col, l.row) in path} - {a.name, b.name}
        assert passed == {qa.answer}
    elif t == "river":
        (a,) = named(scene, q)
        assert qa.answer == ("north" if a.row <= scene.river_row else "south")
    else:
        raise AssertionError(f"unexpected question type {t}")


def test_every_question_type_is_answered_correctly():
    seen = set()
    for seed, scene, _ in maps(120):
        for qa in map_questions(scene, rng_for(seed, "q")):
            seen.add(qa.question_type)
            check(scene, qa)
    assert seen == {"count", "scale", "direction", "blocks", "nearest", "intersection", "route", "route_landmark", "river"}


def test_distractors_are_wrong_and_sentences_contain_the_answer():
    for seed, scene, _ in maps(60):
        for qa in map_questions(scene, rng_for(seed, "q")):
            assert qa.answer in qa.sentence()
            for wrong in qa.distractors:
                assert not is_correct(wrong, qa.answer, qa.match), (qa, wrong)


def test_description_names_every_street_and_landmark_corner():
    for _, scene, _ in maps(60):
        text = describe_map(scene)
        for name in scene.vertical_streets + scene.horizontal_streets:
            assert name in text
        for l in scene.landmarks:
            assert f"the {l.name} at {scene.vertical_streets[l.col]} and {scene.horizontal_streets[l.row]}" in text
        assert f"{scene.block_metres} m" in text
        assert ("river" in text) == (scene.river_row is not None)
        assert ("park" in text) == (scene.park is not None)


def test_landmarks_sit_at_distinct_intersections():
    for _, scene, _ in maps(100):
        spots = [(l.col, l.row) for l in scene.landmarks]
        assert len(set(spots)) == len(spots)
        assert all(0 <= c < len(scene.vertical_streets) and 0 <= r < len(scene.horizontal_streets) for c, r in spots)


def test_labels_are_inside_the_image_and_never_overlap():
    for _, scene, _ in maps(300):
        assert layout_problems(list(scene.text_boxes), scene.width, scene.height) == []
        drawn = [b.text for b in scene.text_boxes]
        for name in [l.name for l in scene.landmarks] + list(scene.vertical_streets + scene.horizontal_streets):
            assert drawn.count(name) == 1
        assert "N" in drawn and f"{scene.block_metres} m" in drawn


def test_recorded_boxes_cover_all_text_ink():
    for _, scene, image in maps(40, draw=True, text_mask=True):
        mask = np.array(image.info["text_mask"]) > 0
        covered = np.zeros_like(mask)
        for box in scene.text_boxes:
            left, top, right, bottom = box.box
            covered[max(top, 0):bottom, max(left, 0):right] = True
        assert mask.any() and not (mask & ~covered).any()


def test_deterministic_by_seed():
    first = generate_map(rng_for(3, "map"), split="heldout", difficulty="easy")
    second = generate_map(rng_for(3, "map"), split="heldout", difficulty="easy")
    assert first[0] == second[0] and first[1].tobytes() == second[1].tobytes()
