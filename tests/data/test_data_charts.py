"""Chart generator: every answer re-derived from the scene by independent code, descriptions complete,
layouts legible (no clipped or overlapping text), output deterministic by seed."""
import re

import numpy as np
import pytest

from minimax_vl.data.chart_questions import chart_questions, describe_chart
from minimax_vl.data.charts import CHART_TYPES, generate_chart
from minimax_vl.data.drawing import layout_problems
from minimax_vl.data.scoring import is_correct
from minimax_vl.data.splits import rng_for

SETTINGS = [(split, difficulty) for split in ("train", "heldout") for difficulty in ("easy", "normal")]


def charts(count, draw=False, text_mask=False, image_size=336):
    for seed in range(count):
        split, difficulty = SETTINGS[seed % len(SETTINGS)]
        scene, image = generate_chart(rng_for(seed, "test-chart"), split=split, difficulty=difficulty,
                                      image_size=image_size, draw=draw, text_mask=text_mask)
        yield seed, scene, image


def mentioned(names, text):
    """Names that occur in text as whole words, in order of appearance."""
    found = [(m.start(), n) for n in names for m in re.finditer(rf"\b{re.escape(n)}\b", text)]
    return [n for _, n in sorted(found)]


def series_of(scene, question):
    names = mentioned([s.name for s in scene.series], question) if len(scene.series) > 1 else []
    return next(s for s in scene.series if s.name == names[0]) if names else scene.series[0]


def expected_answer(scene, qa):
    """The answer, computed from the scene's raw data without the generator's question code."""
    q, cats = qa.question, list(scene.categories)
    t = qa.question_type
    if t == "title":
        return scene.title
    if t == "axis_label":
        return scene.x_label if "x-axis" in q else scene.y_label
    if t == "count":
        return str(len(scene.series) if "series" in q else len(cats))
    series = series_of(scene, q)
    values = dict(zip(cats, series.values))
    if t in ("largest", "largest_slice"):
        return max(values, key=values.get)
    if t == "smallest":
        return min(values, key=values.get)
    named = mentioned(cats, q)
    if t == "value":
        (category,) = named
        return values[category]
    if t == "difference":
        a, b = named
        return abs(values[a] - values[b])
    if t == "trend":
        start, end = named
        return "increase" if values[end] > values[start] else "decrease"
    if t == "comparison":
        if q.startswith("For "):
            category = named[0]
            s, u = mentioned([s.name for s in scene.series], q.split(",", 1)[1])
            pick = {x.name: x.values[cats.index(category)] for x in scene.series}
            return s if pick[s] > pick[u] else u
        a, b = named
        if q.startswith("Is "):
            return "Yes" if values[a] > values[b] else "No"
        return a if values[a] > values[b] else b
    raise AssertionError(f"unexpected question type {t}")


def test_every_question_type_is_answered_correctly():
    seen = set()
    for seed, scene, _ in charts(160):
        for qa in chart_questions(scene, rng_for(seed, "q")):
            seen.add(qa.question_type)
            expected = expected_answer(scene, qa)
            if isinstance(expected, float):
                assert float(qa.answer.rstrip("%")) == pytest.approx(expected, abs=1e-9), qa
            else:
                assert qa.answer == expected, qa
    assert seen == {"title", "axis_label", "count", "largest", "smallest", "largest_slice", "value", "difference",
                    "comparison", "trend"}


def test_distractors_are_wrong_and_sentences_contain_the_answer():
    for seed, scene, _ in charts(80):
        for qa in chart_questions(scene, rng_for(seed, "q")):
            assert qa.answer in qa.sentence()
            for wrong in qa.distractors:
                assert not is_correct(wrong, qa.answer, qa.match), (qa, wrong)


def test_compared_values_are_clearly_apart():
    for seed, scene, _ in charts(80):
        top = max(max(s.values) for s in scene.series)
        for qa in chart_questions(scene, rng_for(seed, "q")):
            if qa.question_type in ("difference", "trend") or (qa.question_type == "comparison" and not qa.question.startswith("For")):
                a, b = mentioned(list(scene.categories), qa.question)
                series = series_of(scene, qa.question)
                gap = abs(series.values[scene.categories.index(a)] - series.values[scene.categories.index(b)])
                assert gap >= 0.08 * top - 1e-9


def test_description_lists_every_label_and_value():
    for _, scene, _ in charts(60):
        text = describe_chart(scene)
        assert scene.title in text
        for category in scene.categories:
            assert category in text
        for series in scene.series:
            for value in series.values:
                shown = f"{value:.0f}%" if scene.chart_type == "pie" else f"{value:,.{scene.decimals}f}"
                assert shown in text
            if len(scene.series) > 1:
                assert series.name in text
        if scene.chart_type != "pie":
            assert scene.x_label in text and scene.y_label in text


def test_all_chart_types_appear_and_pies_sum_to_100():
    scenes = [scene for _, scene, _ in charts(120)]
    assert {s.chart_type for s in scenes} == set(CHART_TYPES)
    for scene in scenes:
        if scene.chart_type == "pie":
            assert sum(scene.values) == 100


def test_labels_are_inside_the_image_and_never_overlap():
    for _, scene, _ in charts(300):
        assert scene.text_boxes, "every chart records its text boxes"
        assert layout_problems(list(scene.text_boxes), scene.width, scene.height) == []
        drawn = {b.text for b in scene.text_boxes}
        assert scene.title in drawn and set(scene.categories) <= {t.split(" ")[0] for t in drawn} | drawn


def test_recorded_boxes_cover_all_text_ink():
    """The boxes are not just planned: every pixel of text actually painted lies inside one."""
    for _, scene, image in charts(40, draw=True, text_mask=True):
        mask = np.array(image.info["text_mask"]) > 0
        covered = np.zeros_like(mask)
        for box in scene.text_boxes:
            left, top, right, bottom = box.box
            covered[max(top, 0):bottom, max(left, 0):right] = True
        assert mask.any()
        assert not (mask & ~covered).any(), f"text ink outside recorded boxes in a {scene.chart_type} chart"


def test_easy_labels_are_large():
    for _, scene, _ in charts(40):
        if scene.difficulty == "easy":
            assert scene.font_size >= 20, "easy labels should span well over one 14-px ViT patch at 336 px"


def test_deterministic_by_seed():
    first = generate_chart(rng_for(7, "chart"), split="train", difficulty="normal")
    second = generate_chart(rng_for(7, "chart"), split="train", difficulty="normal")
    assert first[0] == second[0]
    assert first[1].tobytes() == second[1].tobytes()
    third = generate_chart(rng_for(8, "chart"), split="train", difficulty="normal")
    assert third[0] != first[0]
