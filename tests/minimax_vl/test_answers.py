"""Read-first replies: the short answer by default, the transcription on request (minimax_vl/answers.py)."""
from __future__ import annotations

import pytest

from minimax_vl.answers import answer_pieces, final_answer, split_reply

REPLY = "Chart: vertical bars. Title: Sales. X: Group. Y: Count. Fox 15; Dog 65.\nAnswer: Dog"


def test_split_and_final_answer():
    assert split_reply(REPLY) == ("Chart: vertical bars. Title: Sales. X: Group. Y: Count. Fox 15; Dog 65.", "Dog")
    assert final_answer(REPLY) == "Dog"
    assert final_answer(" 65 ") == "65"  # a model that answers directly is unchanged


@pytest.mark.parametrize("cuts", [[5, 70, 74, 78], [1, 2, 3], list(range(1, len(REPLY)))])
def test_streaming_yields_only_the_answer_wherever_the_pieces_are_cut(cuts):
    pieces = [REPLY[a:b] for a, b in zip([0] + cuts, cuts + [len(REPLY)])]
    assert "".join(pieces) == REPLY
    assert "".join(answer_pieces(pieces)) == "Dog"


def test_a_direct_answer_streams_at_once():
    """A model that does not read first keeps its token-by-token stream."""
    assert list(answer_pieces(["6", "5 "])) == ["6", "5 "]
    assert list(answer_pieces([" Do", "g"])) == ["Do", "g"]
    assert list(answer_pieces(["M", "all"])) == ["Mall"]  # held while it could still open "Map:"
    assert list(answer_pieces([])) == []


def test_a_transcription_that_never_answers_is_released_at_the_end():
    assert list(answer_pieces(["Map: streets", " Oak St."])) == ["Map: streets Oak St."]


def test_streaming_passes_answer_pieces_through_as_they_come():
    got = list(answer_pieces(["Map: x.", "\nAnswer:", " Go 2", " blocks", " east."]))
    assert got == ["Go 2", " blocks", " east."]


def test_a_reply_with_facts_streams_only_its_answer():
    reply = "Map: x.\nFacts: Cafe (1, 1); Fort (2, 2)\nAnswer: Go 1 block east."
    assert split_reply(reply) == ("Map: x.\nFacts: Cafe (1, 1); Fort (2, 2)", "Go 1 block east.")
    follow_up = "Facts: Owl 90; Ant 60\nAnswer: 30"  # a later question: no transcription again
    for text, answer in ((reply, "Go 1 block east."), (follow_up, "30")):
        assert "".join(answer_pieces(text[i:i + 3] for i in range(0, len(text), 3))) == answer
