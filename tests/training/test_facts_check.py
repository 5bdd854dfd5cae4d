"""training/recipes/facts_check.py: facts written by a model, compared with the true ones."""
from __future__ import annotations

from minimax_vl.model import MiniMaxVL01
from training.recipes.facts_check import facts_check, written_facts


def test_written_facts_are_read_from_a_reply():
    assert written_facts("Map: x.\nFacts: Cafe (1, 1); Fort (2, 2)\nAnswer: east") == "Cafe (1, 1); Fort (2, 2)"
    assert written_facts("Facts: Owl 90\nAnswer: 90") == "Owl 90"
    assert written_facts("Chart: pie.\nAnswer: Pie") == "" and written_facts("65") == ""


def test_every_question_that_names_entries_is_tallied():
    # An untrained model writes no exact facts; what is checked is the bookkeeping: only questions that name
    # entries are counted, each once, and the counts are consistent.
    model = MiniMaxVL01.from_preset("demo", seed=0).eval()
    tallies = facts_check(model, images=2, max_new_tokens=4)
    assert tallies and all(name.startswith(("chart/", "map/")) for name in tallies)
    for t in tallies.values():
        assert t.questions > 0 and 0 <= t.right_when_exact <= min(t.facts_exact, t.right) <= t.questions
    assert not any(name.endswith(("/title", "/count", "/scale")) for name in tallies)  # these name no entry
