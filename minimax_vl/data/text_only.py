"""A small text-only instruction mix (stage II mixes it 20:1 with image questions, SPEC_NOTES §7.2).

Task tags: arithmetic, compare_numbers, percent, compass_opposite, compass_turn, compass_between,
sort_words, reverse_words, count_words, uppercase. Each answer is computed, never looked up, and is
graded exactly (an arithmetic answer 5 % off is wrong).
"""
from __future__ import annotations

import random

from minimax_vl.data.map_questions import COMPASS_POINTS
from minimax_vl.data.qa import QA
from minimax_vl.data.vocab import vocabulary

_CARDINALS = ("north", "east", "south", "west")  # clockwise


def _words(rng: random.Random, split: str, k: int) -> list[str]:
    vocab = vocabulary(split)
    pool = sorted({w for theme in vocab.themes for w in theme.categories} | set(vocab.landmarks))
    return rng.sample(pool, k)


def _arithmetic(rng: random.Random, split: str) -> QA:
    a, b = rng.randint(2, 99), rng.randint(2, 99)
    op = rng.choice("+-*")
    if op == "*":
        a, b = rng.randint(2, 12), rng.randint(2, 12)
    value = {"+": a + b, "-": a - b, "*": a * b}[op]
    shown = {"+": "+", "-": "-", "*": "times"}[op]
    return QA(f"What is {a} {shown} {b}?", str(value), "arithmetic", "exact", f"{a} {shown} {b} is {{answer}}.",
              (str(value + 1), str(value - 10)))


def _compare_numbers(rng: random.Random, split: str) -> QA:
    a, b = rng.sample(range(1, 1000), 2)
    return QA(f"Which is larger, {a} or {b}?", str(max(a, b)), "compare_numbers", "exact",
              "{answer} is larger.", (str(min(a, b)),))


def _percent(rng: random.Random, split: str) -> QA:
    share = rng.choice((10, 20, 25, 50, 75))
    whole = rng.choice(range(20, 401, 20))
    value = share * whole // 100
    return QA(f"What is {share}% of {whole}?", str(value), "percent", "exact", f"{share}% of {whole} is {{answer}}.",
              (str(value + whole // 10 + 1), str(whole - value) if whole - value != value else str(value * 2)))


def _compass_opposite(rng: random.Random, split: str) -> QA:
    point = rng.choice(COMPASS_POINTS)
    opposite = COMPASS_POINTS[(COMPASS_POINTS.index(point) + 4) % 8]
    return QA(f"What is the opposite direction of {point}?", opposite, "compass_opposite", "exact",
              f"The opposite of {point} is {{answer}}.", (point,))


def _compass_turn(rng: random.Random, split: str) -> QA:
    facing = rng.choice(_CARDINALS)
    turn = rng.choice(("right", "left", "around"))
    shift = {"right": 1, "left": -1, "around": 2}[turn]
    result = _CARDINALS[(_CARDINALS.index(facing) + shift) % 4]
    verb = "turn around" if turn == "around" else f"turn {turn}"
    return QA(f"You face {facing} and {verb}. Which way do you face now?", result, "compass_turn", "exact",
              "You now face {answer}.", tuple(d for d in _CARDINALS if d != result)[:2])


def _compass_between(rng: random.Random, split: str) -> QA:
    i = rng.randrange(4)
    first, second = _CARDINALS[i], _CARDINALS[(i + 1) % 4]
    between = {frozenset(("north", "east")): "northeast", frozenset(("east", "south")): "southeast",
               frozenset(("south", "west")): "southwest", frozenset(("west", "north")): "northwest"}
    answer = between[frozenset((first, second))]
    return QA(f"Which compass direction lies halfway between {first} and {second}?", answer, "compass_between", "exact",
              "Halfway between them is {answer}.", (COMPASS_POINTS[(COMPASS_POINTS.index(answer) + 4) % 8],))


def _sort_words(rng: random.Random, split: str) -> QA:
    words = _words(rng, split, rng.randint(3, 5))
    answer = ", ".join(sorted(words))
    wrong = ", ".join(sorted(words, reverse=True))
    return QA(f"Sort these words alphabetically: {', '.join(words)}.", answer, "sort_words", "exact",
              "In alphabetical order: {answer}.", (wrong,) if wrong != answer else ())


def _reverse_words(rng: random.Random, split: str) -> QA:
    words = _words(rng, split, rng.randint(3, 5))
    return QA(f"Write these words in reverse order: {' '.join(words)}", " ".join(reversed(words)), "reverse_words",
              "exact", "Reversed: {answer}", (" ".join(words),))


def _count_words(rng: random.Random, split: str) -> QA:
    words = _words(rng, split, rng.randint(2, 7))
    n = len(words)
    return QA(f"How many words are in this list: {' '.join(words)}?", str(n), "count_words", "exact",
              "The list has {answer} words.", (str(n + 1), str(n - 1)))


def _uppercase(rng: random.Random, split: str) -> QA:
    word, other = _words(rng, split, 2)
    # The scorer ignores case, so the wrong answer must be a different word, not the lowercase one.
    return QA(f"Write the word {word} in capital letters.", word.upper(), "uppercase", "exact", "{answer}",
              (other.upper(),))


TASKS = (_arithmetic, _compare_numbers, _percent, _compass_opposite, _compass_turn, _compass_between,
         _sort_words, _reverse_words, _count_words, _uppercase)


def text_question(rng: random.Random, split: str) -> QA:
    """One text-only question with its answer, task chosen uniformly."""
    return rng.choice(TASKS)(rng, split)
