"""Questions with exact answers, and full descriptions, computed from a `ChartScene`.

Question-type tags: title, axis_label, count, largest, smallest, largest_slice, value, difference,
comparison, trend. Every answer is derived from the scene's data; pairs of categories are only asked
about when their values differ by at least 8 % of the largest value, so the answer is visible.
"""
from __future__ import annotations

import itertools
import random

from minimax_vl.data.charts import ChartScene
from minimax_vl.data.qa import QA, format_number, plain_number
from minimax_vl.data.vocab import vocabulary

CLEAR_GAP = 0.08  # fraction of the largest value two compared values must differ by

CHART_QUESTION_TYPES = ("title", "axis_label", "count", "largest", "smallest", "largest_slice", "value", "difference",
                        "comparison", "trend")


def chart_questions(scene: ChartScene, rng: random.Random) -> list[QA]:
    """Questions of every type that applies to this chart (several per type where there is choice)."""
    ask = _Asker(scene, rng)
    questions = ask.title() + ask.count()
    if scene.chart_type != "pie":
        questions += ask.axis_labels()
    questions += ask.extremes() + ask.values() + ask.differences() + ask.comparisons()
    if scene.chart_type == "line":
        questions += ask.trends()
    return questions


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" and {items[-1]}"


class _Asker:
    def __init__(self, scene: ChartScene, rng: random.Random):
        self.scene, self.rng = scene, rng
        self.noun = scene.category_axis.lower()
        self.measure = scene.value_name.lower()
        self.gap = CLEAR_GAP * max(max(s.values) for s in scene.series)

    # -- formatting -------------------------------------------------------------------------------
    def number(self, value: float) -> str:
        if self.scene.chart_type == "pie":
            return f"{value:.0f}%"
        return plain_number(value, self.scene.decimals)

    def wrong_numbers(self, value: float) -> tuple[str, ...]:
        """Off-by-some values that the relaxed scorer (5 %) marks wrong, nearest first."""
        if self.scene.chart_type == "pie":
            candidates = [value + 5, value - 5, value + 10]
        else:
            step = 10.0 ** -self.scene.decimals
            candidates = [value + max(step, 0.1 * value), value * 0.75, value * 1.25, value * 2]
        wrong = []
        for candidate in candidates:
            text = self.number(candidate)
            number = float(text.rstrip("%"))
            if number > 0 and abs(number - value) > 0.06 * abs(value) and text not in wrong:
                wrong.append(text)
        return tuple(wrong)

    def series_phrase(self, series_name: str) -> str:
        return "" if len(self.scene.series) == 1 else f" for {series_name}"

    # -- question families ------------------------------------------------------------------------
    def title(self) -> list[QA]:
        vocab = vocabulary(self.scene.split)
        if self.scene.difficulty == "easy":
            others = [t for t in vocab.easy_titles if t != self.scene.title]
        else:
            others = [t.format(value=v, category=self.scene.category_axis) for t in vocab.title_templates
                      for v in sum((th.value_names for th in vocab.themes), ())]
            others = [t for t in others if t != self.scene.title]
        question = self.rng.choice(("What is the title of the chart?", "What is the chart's title?",
                                    "What does the title of this chart say?"))
        return [QA(question, self.scene.title, "title", "exact", 'The title of the chart is "{answer}".',
                   tuple(self.rng.sample(others, min(3, len(others)))))]

    def axis_labels(self) -> list[QA]:
        scene = self.scene
        return [
            QA("What is the label of the x-axis?", scene.x_label, "axis_label", "exact",
               'The x-axis is labeled "{answer}".', (scene.y_label,)),
            QA("What is the label of the y-axis?", scene.y_label, "axis_label", "exact",
               'The y-axis is labeled "{answer}".', (scene.x_label,)),
        ]

    def count(self) -> list[QA]:
        scene, n = self.scene, len(self.scene.categories)
        wrong = tuple(str(k) for k in (n + 1, n - 1) if k > 0)
        kind = scene.chart_type
        if kind in ("vbar", "hbar"):
            qas = [QA("How many bars are there in the chart?", str(n), "count", "relaxed", "There are {answer} bars.", wrong)]
        elif kind == "grouped_bar":
            k = len(scene.series)
            qas = [QA("How many groups of bars are there?", str(n), "count", "relaxed",
                      "There are {answer} groups of bars.", wrong),
                   QA("How many series does the legend show?", str(k), "count", "relaxed",
                      "The legend shows {answer} series.", tuple(str(c) for c in (k + 1, k - 1) if c > 0))]
        elif kind == "line":
            qas = [QA("How many data points does each line have?" if len(scene.series) > 1
                      else "How many data points does the line have?", str(n), "count", "relaxed",
                      "There are {answer} data points.", wrong)]
        else:
            qas = [QA("How many slices does the pie chart have?", str(n), "count", "relaxed",
                      "The pie has {answer} slices.", wrong)]
        return qas

    def extremes(self) -> list[QA]:
        scene, qas = self.scene, []
        match = "exact"
        for series in scene.series:
            ranked = sorted(zip(series.values, scene.categories), reverse=True)
            largest, smallest = ranked[0][1], ranked[-1][1]
            by = self.series_phrase(series.name)
            if scene.chart_type == "pie":
                qas.append(QA(self.rng.choice(("Which slice of the pie is the largest?", "Which slice is the biggest?")),
                              largest, "largest_slice", match, "The largest slice is {answer}.",
                              tuple(c for _, c in ranked[1:])))
                qas.append(QA("Which slice of the pie is the smallest?", smallest, "smallest", match,
                              "The smallest slice is {answer}.", tuple(c for _, c in reversed(ranked[:-1]))))
                continue
            if scene.chart_type == "line":
                high_q = f"In which {self.noun} is the {self.measure}{by} highest?"
                low_q = f"In which {self.noun} is the {self.measure}{by} lowest?"
                high_t = f"The {self.measure}{by} is highest in {{answer}}."
                low_t = f"The {self.measure}{by} is lowest in {{answer}}."
            else:
                high_q = f"Which {self.noun} has the highest {self.measure}{by}?"
                low_q = f"Which {self.noun} has the lowest {self.measure}{by}?"
                if len(scene.series) == 1 and self.rng.random() < 0.3:
                    high_q = "Which bar is the tallest?" if scene.chart_type == "vbar" else high_q
                    high_q = "Which bar is the longest?" if scene.chart_type == "hbar" else high_q
                high_t = f"{{answer}} has the highest {self.measure}{by}."
                low_t = f"{{answer}} has the lowest {self.measure}{by}."
            qas.append(QA(high_q, largest, "largest", match, high_t, tuple(c for _, c in ranked[1:])))
            qas.append(QA(low_q, smallest, "smallest", match, low_t, tuple(c for _, c in reversed(ranked[:-1]))))
        return qas

    def values(self) -> list[QA]:
        scene, qas = self.scene, []
        if scene.chart_type == "pie" and not scene.show_values:
            return qas  # reading a share off the angle alone is guesswork
        for series in scene.series:
            by = self.series_phrase(series.name)
            for category, value in zip(scene.categories, series.values):
                if scene.chart_type == "pie":
                    question = f"What percentage of the pie is {category}?"
                    template = f"{category} makes up {{answer}} of the pie."
                elif scene.chart_type == "line":
                    question = f"What is the {self.measure}{by} in {category}?"
                    template = f"In {category}, the {self.measure}{by} is {{answer}}."
                else:
                    question = f"What is the {self.measure} of {category}{by}?"
                    template = f"The {self.measure} of {category}{by} is {{answer}}."
                qas.append(QA(question, self.number(value), "value", "relaxed", template, self.wrong_numbers(value)))
        return qas

    def clear_pairs(self, values: tuple[float, ...]) -> list[tuple[int, int]]:
        return [(i, j) for i, j in itertools.permutations(range(len(values)), 2)
                if abs(values[i] - values[j]) >= self.gap]

    def differences(self) -> list[QA]:
        scene, qas = self.scene, []
        for series in scene.series:
            by = self.series_phrase(series.name)
            for i, j in self.clear_pairs(series.values):
                a, b = scene.categories[i], scene.categories[j]
                difference = round(abs(series.values[i] - series.values[j]), scene.decimals)
                what = "share" if scene.chart_type == "pie" else self.measure
                total = series.values[i] + series.values[j]
                qas.append(QA(f"What is the difference in {what} between {a} and {b}{by}?", self.number(difference),
                              "difference", "relaxed", f"The difference between {a} and {b}{by} is {{answer}}.",
                              tuple(self.number(v) for v in (total, difference * 2) if abs(v - difference) > 0.06 * difference)))
        return qas

    def comparisons(self) -> list[QA]:
        scene, qas = self.scene, []
        what = "share" if scene.chart_type == "pie" else self.measure
        where = "in" if scene.chart_type == "line" else "of"
        for series in scene.series:
            by = self.series_phrase(series.name)
            for i, j in self.clear_pairs(series.values):
                a, b = scene.categories[i], scene.categories[j]
                higher = a if series.values[i] > series.values[j] else b
                lower = b if higher == a else a
                yes = series.values[i] > series.values[j]
                qas.append(QA(f"Is the {what} {where} {a} higher than {where} {b}{by}?", "Yes" if yes else "No",
                              "comparison", "exact", "{answer}.", ("No" if yes else "Yes",)))
                qas.append(QA(f"Which is higher{by}, the {what} {where} {a} or {where} {b}?", higher, "comparison", "exact",
                              f"The {what}{by} is higher {where} {{answer}}.", (lower,)))
        if scene.chart_type == "grouped_bar":
            for category_index, category in enumerate(scene.categories):
                for s, t in itertools.permutations(scene.series, 2):
                    if abs(s.values[category_index] - t.values[category_index]) < self.gap:
                        continue
                    higher, lower = (s, t) if s.values[category_index] > t.values[category_index] else (t, s)
                    qas.append(QA(f"For {category}, which series is higher, {s.name} or {t.name}?", higher.name,
                                  "comparison", "exact", f"For {category}, {{answer}} is higher.", (lower.name,)))
        return qas

    def trends(self) -> list[QA]:
        scene, qas = self.scene, []
        for series in scene.series:
            for i, j in self.clear_pairs(series.values):
                if i >= j:
                    continue  # time runs left to right
                start, end = scene.categories[i], scene.categories[j]
                answer = "increase" if series.values[j] > series.values[i] else "decrease"
                opposite = "decrease" if answer == "increase" else "increase"
                subject = series.name if len(scene.series) > 1 else f"the {self.measure}"
                qas.append(QA(f"Does {subject} increase or decrease from {start} to {end}?", answer, "trend", "exact",
                              f"From {start} to {end}, {subject} values {{answer}}.", (opposite,)))
        return qas


def describe_chart(scene: ChartScene) -> str:
    """A dense description that states the chart type, title, axis titles and every label and value."""
    kind = {"vbar": "vertical bar chart", "hbar": "horizontal bar chart", "grouped_bar": "grouped bar chart",
            "line": "line chart" if len(scene.series) == 1 else "line chart with several lines", "pie": "pie chart"}
    parts = [f'This is a {kind[scene.chart_type]} titled "{scene.title}".']
    if scene.chart_type != "pie":
        parts.append(f'The x-axis is labeled "{scene.x_label}" and the y-axis is labeled "{scene.y_label}".')

    def values_of(series) -> str:
        if scene.chart_type == "pie":
            return _join([f"{c} {v:.0f}%" for c, v in zip(scene.categories, series.values)])
        return _join([f"{c} {format_number(v, scene.decimals)}" for c, v in zip(scene.categories, series.values)])

    n = len(scene.categories)
    if scene.chart_type in ("vbar", "hbar"):
        parts.append(f"There are {n} bars: {values_of(scene.series[0])}.")
    elif scene.chart_type == "pie":
        parts.append(f"There are {n} slices: {values_of(scene.series[0])}.")
    elif scene.chart_type == "grouped_bar":
        names = _join([s.name for s in scene.series])
        parts.append(f"There are {n} groups ({_join(list(scene.categories))}) and the legend shows {names}.")
        parts.extend(f"{s.name}: {values_of(s)}." for s in scene.series)
    else:
        if len(scene.series) == 1:
            parts.append(f"The line has {n} points: {values_of(scene.series[0])}.")
        else:
            parts.append(f"The legend shows {_join([s.name for s in scene.series])}, each with {n} points.")
            parts.extend(f"{s.name}: {values_of(s)}." for s in scene.series)
    for s in scene.series:
        ranked = sorted(zip(s.values, scene.categories))
        by = "" if len(scene.series) == 1 else f" for {s.name}"
        parts.append(f"The highest{by} is {ranked[-1][1]} and the lowest is {ranked[0][1]}.")
    return " ".join(parts)
