"""One question about an image, with its exact answer and plausible wrong answers.

Generators return `QA` items; the sample builders turn them into short-answer VQA turns (stage II),
full-sentence conversation turns (stage III) and chosen/rejected pairs (stage IV).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class QA:
    question: str
    answer: str  # short answer, as a grader compares it
    question_type: str  # tag such as "largest", "value", "direction"
    # How a prediction is graded: "relaxed" (numbers within 5 %, else exact text, the ChartQA rule) or
    # "exact" (text equality after normalisation). Years, counts in text tasks and arithmetic are "exact":
    # 5 % of 2014 would accept 2010.
    match: str
    template: str  # the answer as one full sentence, with "{answer}" where the short answer goes
    distractors: tuple[str, ...] = field(default=())  # plausible wrong short answers, best first

    def __post_init__(self):
        if "{answer}" not in self.template:
            raise ValueError(f"sentence template {self.template!r} has no '{{answer}}' placeholder")
        if self.match not in ("relaxed", "exact"):
            raise ValueError(f"match {self.match!r}; expected 'relaxed' or 'exact'")
        if self.answer in self.distractors:
            raise ValueError(f"distractors of {self.question!r} include the true answer {self.answer!r}")

    def sentence(self, answer: str | None = None) -> str:
        """The full-sentence reply, with `answer` (default: the true answer) filled in."""
        return self.template.replace("{answer}", self.answer if answer is None else answer)


def format_number(value: float, decimals: int) -> str:
    """How values are written on charts: fixed decimals and thousands separators."""
    return f"{value:,.{decimals}f}"


def plain_number(value: float, decimals: int) -> str:
    """How numbers are written in answers: no thousands separators (the scorer accepts both)."""
    return f"{value:.{decimals}f}"
