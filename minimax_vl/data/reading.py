"""Reading: a chart or map transcribed into a compact table in a fixed scan order, and the reply that reads first.

    fields = chart_fields(scene)                 # {"type": "vertical bars", "title": "Sales", ..., "Fox": "15", ...}
    text = reading_text(fields)                  # "Chart: vertical bars. Title: Sales. X: Group. Y: Count. Fox 15; ..."
    reply = read_then_answer(text, "75")         # text + "\nAnswer: 75"
    reading, answer = split_reply(reply)         # ("Chart: ...", "75")
    parse_reading(text) == fields                # the probe scores each field by exact match

Why (issue "The demo model reads"): in synthetic chart QA the answers track label reading almost one for one,
and the strongest small-model recipe translates the image into a table first and reasons over the table (DePlot,
MatCha, Pix2Struct). The model therefore writes what it read, then the short answer; the reasoning half (table +
question -> answer) is trained in volume on text-only documents (`reasoning` samples), which cost no vision
forward. A fixed scan order turns "find the label the question names" into copying within the text.

Scan order: bars left to right (vertical) or top to bottom (horizontal), pie slices and line points in the
chart's category order (legend order, left to right); map streets west to east, avenues north to south,
landmarks row by row from the north-west. A landmark is written with its grid position (column from the west,
row from the north, both from 1) before its corner's names, so that the street names are a lookup in the text
already written and the position is what the image has to supply.
"""
from __future__ import annotations

import re

from minimax_vl.answers import ANSWER_MARKER, FACTS_MARKER, split_reply
from minimax_vl.data.charts import ChartScene
from minimax_vl.data.maps import MapScene
from minimax_vl.data.qa import format_number

__all__ = ["ANSWER_MARKER", "FACTS_MARKER", "READING_PROMPTS", "chart_fields", "map_fields", "scene_fields",
           "reading_text", "parse_reading", "read_then_answer", "question_facts", "worked_steps", "split_reply",
           "score_reading"]
CHART_TYPE_NAMES = {"vbar": "vertical bars", "hbar": "horizontal bars", "grouped_bar": "grouped bars",
                    "line": "line", "pie": "pie"}
READING_PROMPTS = {
    "chart": ("Read this chart.", "Transcribe the chart: title, axes, every label and value."),
    "map": ("Read this map.", "Transcribe the map: streets, avenues, landmarks and scale."),
}


# ---------------------------------------------------------------------- fields (what a perfect reader writes)
def chart_fields(scene: ChartScene) -> dict[str, str]:
    """Every transcribable field of a chart, in scan order: type, title, axes, then one field per data label."""
    fields = {"type": CHART_TYPE_NAMES[scene.chart_type], "title": scene.title}
    if scene.chart_type != "pie":
        fields.update({"x": scene.x_label, "y": scene.y_label})
    unit = "%" if scene.chart_type == "pie" else ""
    for series in scene.series:
        prefix = "" if len(scene.series) == 1 else f"{series.name}/"
        for category, value in zip(scene.categories, series.values):
            number = f"{value:.0f}" if scene.chart_type == "pie" else format_number(value, scene.decimals)
            fields[prefix + category] = number + unit
    return fields


def map_fields(scene: MapScene) -> dict[str, str]:
    """Every transcribable field of a map: streets and avenues by position, landmarks with their grid position,
    river, park and scale."""
    fields = {f"street {i + 1}": name for i, name in enumerate(scene.vertical_streets)}
    fields.update({f"avenue {i + 1}": name for i, name in enumerate(scene.horizontal_streets)})
    for landmark in sorted(scene.landmarks, key=lambda l: (l.row, l.col)):
        fields[landmark.name] = f"{landmark.col + 1}, {landmark.row + 1}"
    if scene.river_row is not None:
        fields["river"] = f"{scene.river_row + 1}, {scene.river_row + 2}"
    if scene.park is not None:
        fields["park"] = f"{scene.park[0] + 1}, {scene.park[1] + 1}"
    fields["scale"] = f"{scene.block_metres} m"
    return fields


def scene_fields(scene: ChartScene | MapScene) -> dict[str, str]:
    return map_fields(scene) if isinstance(scene, MapScene) else chart_fields(scene)


# ---------------------------------------------------------------------- fields <-> text
def reading_text(fields: dict[str, str]) -> str:
    """The transcription as the model writes it (one line; see the module docstring for the order)."""
    if "type" in fields:
        return _chart_text(fields)
    return _map_text(fields)


def _chart_text(fields: dict[str, str]) -> str:
    parts = [f"Chart: {fields['type']}.", f"Title: {fields['title']}."]
    if "x" in fields:
        parts += [f"X: {fields['x']}.", f"Y: {fields['y']}."]
    data = [(k, v) for k, v in fields.items() if k not in ("type", "title", "x", "y")]
    groups: dict[str, list[str]] = {}
    for key, value in data:
        series, _, category = key.rpartition("/")
        groups.setdefault(series, []).append(f"{category} {value}")
    for series, items in groups.items():
        parts.append((f"{series}: " if series else "") + "; ".join(items) + ".")
    return " ".join(parts)


def _map_text(fields: dict[str, str]) -> str:
    streets, avenues = _streets_and_avenues(fields)
    parts = [f"Map: streets {', '.join(streets)}; avenues {', '.join(avenues)}."]
    for name, position in _landmarks(fields):
        parts.append(f"{name} ({position}) at {_corner(position, streets, avenues)}.")
    if "river" in fields:
        north, south = (int(x) for x in fields["river"].split(", "))
        parts.append(f"River ({fields['river']}) between {avenues[north - 1]} and {avenues[south - 1]}.")
    if "park" in fields:
        parts.append(f"Park ({fields['park']}) at {_corner(fields['park'], streets, avenues)}.")
    parts.append(f"Scale {fields['scale']}.")
    return " ".join(parts)


def _streets_and_avenues(fields: dict[str, str]) -> tuple[list[str], list[str]]:
    return ([v for k, v in fields.items() if k.startswith("street ")],
            [v for k, v in fields.items() if k.startswith("avenue ")])


def _landmarks(fields: dict[str, str]) -> list[tuple[str, str]]:
    """A map's (name, grid position) in transcription order: every field that is not a street, river, park or scale."""
    return [(key, value) for key, value in fields.items()
            if not key.startswith(("street ", "avenue ")) and key not in ("river", "park", "scale")]


def _corner(position: str, streets: list[str], avenues: list[str]) -> str:
    """"2, 3" (column, row from 1) -> "Fir St and Jade Ave"."""
    return " and ".join(_street_and_avenue(position, streets, avenues))


def _street_and_avenue(position: str, streets: list[str], avenues: list[str]) -> tuple[str, str]:
    col, row = (int(x) for x in position.split(", "))
    return streets[col - 1], avenues[row - 1]


_CHART_HEAD = re.compile(r"^Chart: (?P<type>[^.]*)\. Title: (?P<title>.*?)\.(?: X: (?P<x>.*?)\. Y: (?P<y>.*?)\.)?"
                         r"(?: (?P<rest>.*))?$")
_MAP_HEAD = re.compile(r"^Map: streets (?P<streets>[^;]*); avenues (?P<avenues>[^.]*)\.(?: (?P<rest>.*))?$")
_PLACE = re.compile(r"(?P<name>[^.()]+?) \((?P<pos>\d+, \d+)\)(?: at [^.]*| between [^.]*)?\.")
_SCALE = re.compile(r"Scale (?P<scale>[^.]*? m)\.")


def parse_reading(text: str) -> dict[str, str]:
    """Fields of a transcription the model wrote; whatever does not parse is simply absent (and so wrong)."""
    text = text.strip()
    chart = _CHART_HEAD.match(text)
    if chart:
        fields = {"type": chart["type"], "title": chart["title"]}
        if chart["x"] is not None:
            fields.update({"x": chart["x"], "y": chart["y"]})
        for group in re.split(r"(?<=\.) ", chart["rest"] or ""):
            group = group.rstrip(".")
            series, sep, items = group.partition(": ")
            if not sep:
                series, items = "", group
            for item in items.split("; "):
                category, _, value = item.rpartition(" ")
                if category:
                    fields.setdefault((f"{series}/" if series else "") + category, value)
        return fields
    place = _MAP_HEAD.match(text)
    if place:
        fields = {f"street {i + 1}": s for i, s in enumerate(place["streets"].split(", "))}
        fields.update({f"avenue {i + 1}": s for i, s in enumerate(place["avenues"].split(", "))})
        rest = place["rest"] or ""
        for match in _PLACE.finditer(rest):
            key = match["name"].strip()
            key = key.lower() if key in ("River", "Park") else key
            fields.setdefault(key, match["pos"])
        scale = _SCALE.search(rest)
        if scale:
            fields["scale"] = scale["scale"]
        return fields
    return {}


# ---------------------------------------------------------------------- replies
def read_then_answer(reading: str, answer: str, facts: str = "") -> str:
    """The reply: what was read, the question's facts when there are any, then the short answer. Without a reading
    (a later question about an image already read) it starts at "Facts: "."""
    reply = reading + (FACTS_MARKER + facts if facts else "") + ANSWER_MARKER + answer
    return reply if reading else reply.lstrip("\n")


# ---------------------------------------------------------------------- facts (the worked step, data.facts)
_SERIES_SEPARATOR = "/"
_MAP_NAMED_FIELDS = ("street ", "avenue ", "river", "park", "scale")


def question_facts(fields: dict[str, str], question: str) -> str:
    """The transcription's entries for what the question names, in the order the question names them: a chart's
    categories with their values ("Owl 90; Ant 60"), a map's landmarks with their grid positions
    ("Cafe (2, 2); Fort (3, 2)"), and the river's rows when the question mentions the river. Empty when the
    question names none (e.g. "Which bar is the longest?").

    Why: answering "What is the difference between Owl and Ant?" from the transcription is two look-ups and a
    subtraction in one step, and the demo decoder learns each look-up slowly when the key sits in the question,
    far from the answer (reasoning check: chart values 8-15% from the true transcription). Writing the named keys
    first makes each look-up the classic induction pattern (the key just written, its value next in the text)
    and leaves the arithmetic or geometry over adjacent facts: a scratchpad, as in chain-of-thought training."""
    found: list[tuple[int, str]] = []
    is_chart = "type" in fields
    # A grouped chart's question may name a series; then only that series' entries are its facts.
    names_a_series = is_chart and any(_mention(question, series) >= 0 for series in _series_names(fields))
    for key, value in fields.items():
        if is_chart:
            if key in ("type", "title", "x", "y"):
                continue
            series, _, category = key.rpartition(_SERIES_SEPARATOR)
            where = _mention(question, category)
            if where < 0 or (series and names_a_series and _mention(question, series) < 0):
                continue
            found.append((where, f"{series} {category} {value}" if series else f"{category} {value}"))
        elif key == "river":
            where = _mention(question, "river")  # the questions' word; the transcription writes "River"
            if where >= 0:
                found.append((where, f"River ({value})"))
        elif not key.startswith(_MAP_NAMED_FIELDS):
            where = _mention(question, key)
            if where >= 0:
                found.append((where, f"{key} ({value})"))
    return "; ".join(text for _, text in sorted(found, key=lambda item: item[0]))


# ---------------------------------------------------------------------- worked steps (data.worked_steps)
# The question types whose answer no single look-up gives: read10 (seventh session) answers them 20-44% right even
# from the true transcription, where one look-up or one comparison of two named entries is 90-100% right.
_SUPERLATIVE_TYPES = ("largest", "largest_slice", "smallest")
WORKED_STEP_TYPES = _SUPERLATIVE_TYPES + ("intersection", "difference")
NEW_BEST = {True: "high", False: "low"}  # the mark on an entry that beats every one before it (one token each)


def worked_steps(fields: dict[str, str], question: str, question_type: str) -> str:
    """Facts that work an arg-max or a backward look-up out in steps, each one a copy or a comparison of two values
    side by side; "" for the other question types (question_facts serves those). Used in place of question_facts
    when data.worked_steps is on.

    - largest / largest_slice / smallest: the entries in transcription order, each that beats every one before it
      marked ("Owl 45; Elk 80 high; Cat 90 high" for the highest; "low" for the lowest). The answer is the last marked
      entry, or the first entry when none is marked. Why this form: each mark compares the entry just copied with
      the last marked one, and the next entry to copy always follows the one just written, so the copy stays the
      sequential look-up the model already does. (A running champion, "Elk 80 -> Elk 80", breaks that: when the
      champion stays, the next entry follows the challenger, not the text just written.)
    - intersection: the asked corner, then every landmark in transcription order with its corner, each mark a copy
      of the word that follows the same name earlier in the text. The head writes the asked corner with the marks
      after its names ("Elm St on Ruby Ave is"); an entry whose street is the asked one goes on "on" where the
      transcription goes on "and", and its name follows "is" when its avenue is the asked one too: for "What is
      at the corner of Elm St and Ruby Ave?", "Elm St on Ruby Ave is. Cafe at Fir St and Jade Ave; Gym at Elm St on
      Opal Ave; Mall at Elm St on Ruby Ave is Mall". The answer is the name after "is". Why: a corner is a two-word
      key, and a look-up that must match two words at once is what the model fails (35% from the true
      transcription); a mark written after the entry ("Gym at Elm St and Opal Ave on", read12 and read13) is a
      test of whether two words are equal, which the demo decoder did not learn in 3,650 steps (22-26%, the first
      entries marked whatever was asked). Here the mark after a name is what an induction head already copies:
      the word after that name's latest occurrence, "on" after the asked street in the head, "and" after any other
      street in the transcription. After a 200-step drill from read13 (ninth session; benchmarks/worked_steps_probe.py
      on 134 test questions) this form answered 72.4% with every "on" right in 134 of 134 scans, read13's form
      30.6%; forms that left an entry's avenue out, or ended entries with the transcription's ". ", got every "on"
      right in only 18-25 scans, marking "on" on wrong streets.
      (The first form, every landmark rewritten corner first, "Elm St and Ruby Ave: Mall", left the answer a
      two-word look-up and made each entry's name a backward copy.)
    - difference of two whole numbers: the two entries (question_facts), then the larger minus the smaller column by
      column from the ones, each step one digit minus one digit, a borrow written where it is taken ("16 - 8 = 8")
      and paid in the next column ("3 - 1 - 1 = 1"): "Pie 36%; Bun 18%; 36 - 18: 16 - 8 = 8; 3 - 1 - 1 = 1". The
      answer is the results read from the last step back ("18%"). Why: digits are single tokens, and the first digit
      of a difference depends on the ones column's borrow, which a left-to-right answer has not written yet: from
      the true transcription read11 got pie differences (any 1-99%) 1 in 10 right, bar differences (multiples of 5)
      25 in 32. Values with decimals or thousands separators keep question_facts' form."""
    if question_type in _SUPERLATIVE_TYPES and "type" in fields:
        return _marked_entries(_chart_entries(fields, question), highest=question_type != "smallest")
    if question_type == "intersection" and "type" not in fields:
        return _scanned_corners(fields, question)
    if question_type == "difference" and "type" in fields:
        return _column_subtraction(question_facts(fields, question))
    return ""


def _chart_entries(fields: dict[str, str], question: str) -> list[tuple[str, str]]:
    """(category, value) in transcription order: the named series' entries when the chart has several series."""
    entries = [(key, value) for key, value in fields.items() if key not in ("type", "title", "x", "y")]
    named = [series for series in _series_names(fields) if _mention(question, series) >= 0]
    if named:
        series = max(named, key=len)  # "Ann" inside "Anna": the longest name the question holds is the one meant
        entries = [(key, value) for key, value in entries if key.rpartition(_SERIES_SEPARATOR)[0] == series]
    return [(key.rpartition(_SERIES_SEPARATOR)[2], value) for key, value in entries]


def _marked_entries(entries: list[tuple[str, str]], *, highest: bool) -> str:
    steps, best = [], None
    for category, value in entries:
        number = float(value.rstrip("%").replace(",", ""))
        beats = best is not None and (number > best if highest else number < best)
        steps.append(f"{category} {value}" + (f" {NEW_BEST[highest]}" if beats else ""))
        if best is None or beats:
            best = number
    return "; ".join(steps)


def _column_subtraction(facts: str) -> str:
    entries = facts.split("; ") if facts else []
    values = [entry.rsplit(" ", 1)[-1].removesuffix("%") for entry in entries]
    if len(entries) != 2 or not all(value.isdigit() for value in values):
        return ""
    larger, smaller = sorted(values, key=int, reverse=True)
    steps, borrow = [], 0
    for place, top in enumerate(reversed(larger)):
        below = int(smaller[-1 - place]) if place < len(smaller) else 0
        result = int(top) - below - borrow
        borrows = result < 0
        steps.append(f"{'1' if borrows else ''}{top} - {below}{' - 1' if borrow else ''} = {result + 10 * borrows}")
        borrow = int(borrows)
    return f"{facts}; {larger} - {smaller}: " + "; ".join(steps)


ON_ASKED_STREET, AT_ASKED_CORNER = "on", "is"  # the intersection marks (one token each; "on" replaces "and")


def _scanned_corners(fields: dict[str, str], question: str) -> str:
    streets, avenues = _streets_and_avenues(fields)
    asked = [name for name in streets + avenues if _mention(question, name) >= 0]  # [street, avenue]
    steps = []
    for name, position in _landmarks(fields):
        street, avenue = _street_and_avenue(position, streets, avenues)
        if street not in asked:
            steps.append(f"{name} at {street} and {avenue}")  # the transcription's words
        elif avenue not in asked:
            steps.append(f"{name} at {street} {ON_ASKED_STREET} {avenue}")  # as the head goes on after the street
        else:
            steps.append(f"{name} at {street} {ON_ASKED_STREET} {avenue} {AT_ASKED_CORNER} {name}")
    # The asked corner as the marked entries write it: what follows each asked name here is its mark.
    head = f"{asked[0]} {ON_ASKED_STREET} {asked[1]} {AT_ASKED_CORNER}. " if len(asked) == 2 else ""
    return head + "; ".join(steps)


def _mention(question: str, name: str) -> int:
    """Where `name` first appears in the question as whole words, else -1. Case matters: a pie chart's category
    "Pie" is not named by "the largest slice of the pie"."""
    match = re.search(rf"(?<!\w){re.escape(name)}(?!\w)", question)
    return match.start() if match else -1


def _series_names(fields: dict[str, str]) -> set[str]:
    return {k.rpartition(_SERIES_SEPARATOR)[0] for k in fields if _SERIES_SEPARATOR in k}


def score_reading(predicted: str, truth: dict[str, str]) -> tuple[int, int]:
    """(fields transcribed exactly, fields in the truth) for one image."""
    got = parse_reading(predicted)
    return sum(got.get(key) == value for key, value in truth.items()), len(truth)
