"""The transcription a read-first model writes (minimax_vl/data/reading.py): fields, text, parsing, scan order,
and the samples built on it (reading, read-first vqa, text-only reasoning)."""
from __future__ import annotations

import re

import pytest

from minimax_vl.chat_template import render_segments
from minimax_vl.data.charts import generate_chart
from minimax_vl.data.maps import generate_map
from minimax_vl.data.chart_questions import chart_questions
from minimax_vl.data.map_questions import map_questions
from minimax_vl.data.reading import (ANSWER_MARKER, AT_ASKED_CORNER, FACTS_MARKER, NEW_BEST, ON_ASKED_STREET,
                                     WORKED_STEP_TYPES, chart_fields, map_fields, parse_reading, question_facts,
                                     read_then_answer, reading_text, scene_fields, score_reading, split_reply,
                                     worked_steps)
from minimax_vl.data.samples import GeneratorConfig, make_sample
from minimax_vl.data.splits import rng_for


def _scenes(difficulty, count, draw=False):
    size = 192 if difficulty == "easy" else 336
    for i in range(count):
        for generate in (generate_chart, generate_map):
            yield generate(rng_for(i, "reading-test"), split="train", difficulty=difficulty, image_size=size,
                           draw=draw)[0]


@pytest.mark.parametrize("difficulty", ["easy", "normal"])
def test_every_reading_parses_back_to_its_fields(difficulty):
    """Grouped bars, multi-line charts, decimals, thousands separators, rivers and parks included (normal)."""
    for scene in _scenes(difficulty, 60):
        fields = scene_fields(scene)
        text = reading_text(fields)
        assert "\n" not in text and ANSWER_MARKER.strip() not in text
        assert parse_reading(text) == fields, text


def test_bars_are_read_in_the_order_they_are_drawn():
    """Scan order: vertical bars left to right, horizontal bars top to bottom (by the drawn label boxes)."""
    checked = 0
    for scene in _scenes("easy", 40, draw=True):
        if getattr(scene, "chart_type", None) not in ("vbar", "hbar"):
            continue
        boxes = {t.text: t.box for t in scene.text_boxes if t.role == "category"}
        axis = 0 if scene.chart_type == "vbar" else 1  # left edge or top edge
        drawn = sorted(scene.categories, key=lambda c: boxes[c][axis])
        read = [k for k in chart_fields(scene) if k not in ("type", "title", "x", "y")]
        assert read == drawn
        checked += 1
    assert checked >= 5


def test_landmarks_are_read_row_by_row_with_their_grid_position():
    for scene in _scenes("easy", 20):
        if not hasattr(scene, "landmarks"):
            continue
        fields = map_fields(scene)
        names = [k for k in fields if k[0].isupper() and k not in ("River", "Park")]
        rows_cols = [tuple(int(x) for x in fields[n].split(", "))[::-1] for n in names]
        assert rows_cols == sorted(rows_cols)
        text = reading_text(fields)
        for landmark in scene.landmarks:
            corner = f"{scene.vertical_streets[landmark.col]} and {scene.horizontal_streets[landmark.row]}"
            assert f"{landmark.name} ({landmark.col + 1}, {landmark.row + 1}) at {corner}." in text


def test_score_counts_exact_fields_only():
    truth = {"type": "vertical bars", "title": "Sales", "x": "Group", "y": "Count", "Fox": "15", "Dog": "65"}
    text = reading_text(truth)
    assert score_reading(text, truth) == (6, 6)
    assert score_reading(text.replace("Dog 65", "Dog 60"), truth) == (5, 6)
    assert score_reading(text.replace("Fox", "Fix"), truth) == (5, 6)
    assert score_reading("There are 2 bars.", truth) == (0, 6)


def test_read_then_answer_splits_back():
    reply = read_then_answer("Chart: pie. Title: Scores. Egg 40%; Pie 60%.", "Pie")
    assert split_reply(reply) == ("Chart: pie. Title: Scores. Egg 40%; Pie 60%.", "Pie")
    assert split_reply("Pie") == (None, "Pie")


def _targets(sample):
    """(trained text, context text) of a sample's rendered conversation."""
    segments = render_segments(sample.messages)
    return "".join(t for t, on in segments if on), "".join(t for t, on in segments if not on)


def test_read_first_vqa_reads_before_the_first_answer_only():
    config = GeneratorConfig(sample_kinds=(("vqa", 1.0),), difficulty="easy", image_size=192, read_first=True,
                             max_questions=4)
    multi = 0
    for i in range(20):
        sample = make_sample(config, i)
        replies = [m["content"][-1]["text"] for m in sample.messages if m["role"] == "assistant"]
        reading, answer = split_reply(replies[0])
        assert reading == reading_text(sample.meta["reading_fields"]) and answer
        assert all(ANSWER_MARKER.strip() not in r for r in replies[1:])
        trained, _ = _targets(sample)
        assert reading in trained  # the image case trains the transcription
        multi += len(replies) > 1
    assert multi > 0


def test_reasoning_samples_give_the_reading_as_context_and_train_only_answers():
    config = GeneratorConfig(sample_kinds=(("reasoning", 1.0),), difficulty="easy", image_size=192)
    for i in range(20):
        sample = make_sample(config, i)
        assert sample.images == [] and sample.meta["kind"] == "text"
        reading = reading_text(sample.meta["reading_fields"])
        trained, context = _targets(sample)
        assert reading in context and reading not in trained
        assert trained.startswith(ANSWER_MARKER)


def test_reasoning_sample_has_the_same_text_as_the_drawn_read_first_question():
    """Same seed, same scene and questions: the text-only document is the image document minus the image."""
    drawn = make_sample(GeneratorConfig(sample_kinds=(("vqa", 1.0),), difficulty="easy", image_size=192,
                                        read_first=True), 3)
    text = make_sample(GeneratorConfig(sample_kinds=(("reasoning", 1.0),), difficulty="easy", image_size=192), 3)
    assert drawn.meta["reading_fields"] == text.meta["reading_fields"]


def test_read_first_preference_pairs_share_the_reading_and_differ_in_the_answer():
    config = GeneratorConfig(sample_kinds=(("preference", 1.0),), difficulty="easy", image_size=192, read_first=True)
    for i in range(10):
        sample = make_sample(config, i)
        chosen = sample.messages[-1]["content"][-1]["text"]
        (r1, a1), (r2, a2) = split_reply(chosen), split_reply(sample.rejected)
        assert r1 == r2 == reading_text(sample.meta["reading_fields"]) and a1 != a2


# ---------------------------------------------------------------------- facts (data.facts)
BARS = {"type": "vertical bars", "title": "Sales", "x": "Type", "y": "Count", "Owl": "90", "Ant": "60", "Yak": "15"}
PIE = {"type": "pie", "title": "Votes", "Egg": "21%", "Pie": "17%", "Rye": "62%"}
GROUPED = {"type": "grouped bars", "title": "Sales", "x": "Year", "y": "Count", "Ann/2019": "30", "Bob/2019": "40",
           "Ann/2020": "35", "Bob/2020": "45"}
MAP = {"street 1": "Oak St", "street 2": "Elm St", "avenue 1": "Opal Ave", "avenue 2": "Ruby Ave",
       "Cafe": "1, 1", "Fort": "2, 2", "river": "1, 2", "scale": "50 m"}


@pytest.mark.parametrize("fields, question, facts", [
    (BARS, "What is the difference in count between Yak and Owl?", "Yak 15; Owl 90"),  # the question's order
    (BARS, "What is the count of Ant?", "Ant 60"),
    (BARS, "Which bar is the longest?", ""),
    (BARS, "What is the count of Antelope?", ""),  # whole words only
    (PIE, "Which slice of the pie is the largest?", ""),  # "pie" does not name the category "Pie"
    (PIE, "What percentage of the pie is Pie?", "Pie 17%"),
    (GROUPED, "What is the count of Bob in 2020?", "Bob 2020 45"),  # a named series keeps only its entries
    (GROUPED, "Which is higher in 2019?", "Ann 2019 30; Bob 2019 40"),  # no series named: every series
    (MAP, "How do you walk from the Fort to the Cafe?", "Fort (2, 2); Cafe (1, 1)"),
    (MAP, "Is the Cafe north or south of the river?", "Cafe (1, 1); River (1, 2)"),
    (MAP, "What is at the corner of Elm St and Ruby Ave?", ""),  # streets are not facts
])
def test_question_facts_are_the_named_entries_in_question_order(fields, question, facts):
    assert question_facts(fields, question) == facts


def test_every_named_fact_is_copied_from_the_transcription():
    """On generated scenes: each fact is the transcription's own text for that entry (so writing it is a look-up)."""
    config = GeneratorConfig(sample_kinds=(("vqa", 1.0),), difficulty="easy", image_size=192)
    with_facts = 0
    for i in range(40):
        sample = make_sample(config, i, draw=False)
        reading = reading_text(sample.meta["reading_fields"])
        for message in sample.messages[::2]:
            facts = question_facts(sample.meta["reading_fields"], message["content"][-1]["text"])
            for fact in filter(None, facts.split("; ")):
                assert fact in reading, (fact, reading)
                with_facts += 1
    assert with_facts > 20


def test_with_facts_every_answer_follows_its_facts_and_the_transcription_stays_context():
    config = GeneratorConfig(sample_kinds=(("reasoning", 1.0),), difficulty="easy", image_size=192, max_questions=8,
                             read_first=True, facts=True)
    followed = 0
    for i in range(20):
        sample = make_sample(config, i)
        fields = sample.meta["reading_fields"]
        trained, context = _targets(sample)
        assert reading_text(fields) in context and reading_text(fields) not in trained
        turns = sample.messages
        for question, reply in zip(turns[::2], turns[1::2]):
            facts = question_facts(fields, question["content"][-1]["text"])
            text = reply["content"][-1]["text"]
            if facts:
                assert FACTS_MARKER.strip() + " " + facts + ANSWER_MARKER in "\n" + text
                assert split_reply(text)[1] and FACTS_MARKER.strip() + " " + facts in trained
                followed += 1
            else:
                assert FACTS_MARKER.strip() not in text
    assert followed > 20


def test_read_first_vqa_and_preference_with_facts_read_then_state_facts_then_answer():
    for kind in ("vqa", "preference"):
        config = GeneratorConfig(sample_kinds=((kind, 1.0),), difficulty="easy", image_size=192, read_first=True,
                                 facts=True)
        for i in range(10):
            sample = make_sample(config, i, draw=False)
            fields = sample.meta["reading_fields"]
            first = next(m for m in sample.messages if m["role"] == "assistant")["content"][-1]["text"]
            question = sample.messages[0]["content"][-1]["text"]
            facts = question_facts(fields, question)
            expected_reading = reading_text(fields) + (FACTS_MARKER + facts if facts else "")
            assert split_reply(first)[0] == expected_reading
            if kind == "preference":
                assert split_reply(sample.rejected)[0] == expected_reading


def test_facts_off_by_default():
    config = GeneratorConfig(sample_kinds=(("reasoning", 1.0),), difficulty="easy", image_size=192, max_questions=8)
    assert not any(FACTS_MARKER.strip() in m["content"][-1]["text"]
                   for i in range(10) for m in make_sample(config, i).messages)


# ---------------------------------------------------------------------- worked steps (data.worked_steps)
@pytest.mark.parametrize("fields, question, question_type, steps", [
    (BARS, "Which type has the highest count?", "largest", "Owl 90; Ant 60; Yak 15"),  # the first stays best
    (BARS, "Which type has the lowest count?", "smallest", "Owl 90; Ant 60 low; Yak 15 low"),
    (PIE, "Which slice is the biggest?", "largest_slice", "Egg 21%; Pie 17%; Rye 62% high"),
    (PIE, "Which slice of the pie is the smallest?", "smallest", "Egg 21%; Pie 17% low; Rye 62%"),
    (GROUPED, "Which year has the highest count for Bob?", "largest", "2019 40; 2020 45 high"),  # the named series
    (MAP, "What is at the corner of Elm St and Ruby Ave?", "intersection", "Elm St on Ruby Ave is. Cafe at Oak St and "
                                                                           "Opal Ave; Fort at Elm St on Ruby Ave is "
                                                                           "Fort"),
    (MAP, "What is at the corner of Oak St and Ruby Ave?", "intersection", "Oak St on Ruby Ave is. Cafe at Oak St on "
                                                                           "Opal Ave; Fort at Elm St and Ruby Ave"),
    (PIE, "What is the difference in share between Pie and Egg?", "difference",
     "Pie 17%; Egg 21%; 21 - 17: 11 - 7 = 4; 2 - 1 - 1 = 0"),  # a borrow taken, then paid; the larger first
    (BARS, "What is the difference in count between Owl and Yak?", "difference", "Owl 90; Yak 15; 90 - 15: "
                                                                                 "10 - 5 = 5; 9 - 1 - 1 = 7"),
    (BARS, "What is the count of Ant?", "value", ""),  # one look-up: question_facts serves it
    (MAP, "How do you walk from the Fort to the Cafe?", "route", ""),
])
def test_worked_steps(fields, question, question_type, steps):
    assert worked_steps(fields, question, question_type) == steps


def _answer_from_steps(steps: str, question: str, question_type: str) -> str:
    """What a reader of the worked steps answers: the last marked entry (else the first), or the name after the one
    "is" of a scan of corners."""
    if question_type == "intersection":
        (found,) = re.findall(rf" {AT_ASKED_CORNER} (.+?)(?:;|$)", steps)
        return found
    if question_type == "difference":  # each column's result digit, read from the last column back
        entries, _, columns = steps.partition(": ")
        digits = "".join(column.rsplit(" = ", 1)[1] for column in reversed(columns.split("; ")))
        return str(int(digits)) + ("%" if "%" in entries else "")
    entries = steps.split("; ")
    marked = [e for e in entries if e.endswith((" " + NEW_BEST[True], " " + NEW_BEST[False]))]
    return (marked[-1] if marked else entries[0]).rsplit(" ", 2 if marked else 1)[0]


@pytest.mark.parametrize("difficulty", ["easy", "normal"])
def test_worked_steps_lead_to_every_generated_answer(difficulty):
    """On generated scenes (grouped bars, lines, pies, maps): the steps give the right answer, and every entry they
    copy is the transcription's own text for it, so writing them is copying and comparing."""
    checked = {t: 0 for t in WORKED_STEP_TYPES}
    for i, scene in enumerate(_scenes(difficulty, 60)):
        fields = scene_fields(scene)
        reading = reading_text(fields)
        make_questions = map_questions if "type" not in fields else chart_questions
        for qa in make_questions(scene, rng_for(i, "worked-steps-test")):
            steps = worked_steps(fields, qa.question, qa.question_type)
            # A difference gets columns only when both values are written as whole numbers ("3,650" and "2.5" not).
            values = [entry.rsplit(" ", 1)[-1] for entry in question_facts(fields, qa.question).split("; ")]
            whole = qa.question_type != "difference" or all(re.fullmatch(r"\d+%?", value) for value in values)
            assert bool(steps) == (qa.question_type in WORKED_STEP_TYPES and whole), qa
            if not steps:
                continue
            assert _answer_from_steps(steps, qa.question, qa.question_type) == qa.answer, (qa, steps)
            if qa.question_type == "difference":
                # The entries are question_facts'; every column is one digit minus one digit (and a paid borrow).
                facts = question_facts(fields, qa.question)
                assert steps.startswith(facts + "; ")
                for column in steps.removeprefix(facts + "; ").partition(": ")[2].split("; "):
                    assert re.fullmatch(r"1?\d - \d( - 1)? = \d", column), (column, steps)
                checked[qa.question_type] += 1
                continue
            if qa.question_type == "intersection":  # the asked corner first, its names marked as the entries are
                street, avenue = qa.question.removeprefix("What is at the corner of ").removesuffix("?").split(" and ")
                head = f"{street} {ON_ASKED_STREET} {avenue} {AT_ASKED_CORNER}. "
                assert steps.startswith(head), (steps, qa.question)
                steps = steps.removeprefix(head)
            for step in steps.split("; "):
                if qa.question_type == "intersection":
                    # "Mall at Elm St on Ruby Ave is Mall": the transcription's "Mall (3, 3) at Elm St and Ruby Ave"
                    # without the grid position, "on" for "and" exactly when the street is the asked one, "is"
                    # only after "on", and then when the avenue is the asked one too.
                    name, _, rest = step.partition(" at ")
                    marked = f" {ON_ASKED_STREET} " in rest
                    corner = rest.split(f" {AT_ASKED_CORNER} ")[0].replace(f" {ON_ASKED_STREET} ", " and ")
                    assert re.search(rf"(?:^|\. ){re.escape(name)} \(\d, \d\) at {re.escape(corner)}\.", reading)
                    assert marked == corner.startswith(street + " and "), (step, qa.question)
                    assert rest.endswith(f" {AT_ASKED_CORNER} {name}") == (marked and corner.endswith(" " + avenue))
                    continue
                entry = step.removesuffix(" " + NEW_BEST[True]).removesuffix(" " + NEW_BEST[False])
                assert entry in reading, (entry, reading)
            checked[qa.question_type] += 1
    assert all(count >= 3 for count in checked.values()), checked


def test_worked_steps_replace_the_facts_of_their_question_types_only():
    config = GeneratorConfig(sample_kinds=(("reasoning", 1.0),), difficulty="easy", image_size=192, max_questions=8,
                             read_first=True, facts=True, worked_steps=True)
    seen = set()
    for i in range(30):
        sample = make_sample(config, i)
        fields = sample.meta["reading_fields"]
        turns = sample.messages
        for question_type, question, reply in zip(sample.meta["question_types"], turns[::2], turns[1::2]):
            question, text = question["content"][-1]["text"], reply["content"][-1]["text"]
            expected = worked_steps(fields, question, question_type) or question_facts(fields, question)
            if expected:
                assert FACTS_MARKER.strip() + " " + expected + ANSWER_MARKER in "\n" + text
            if question_type in WORKED_STEP_TYPES:
                seen.add(question_type)
    assert {"largest", "smallest", "intersection", "difference"} <= seen
    with pytest.raises(ValueError, match="facts"):
        GeneratorConfig(read_first=True, worked_steps=True)
