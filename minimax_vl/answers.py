"""Replies that read first: "<transcription>\\nAnswer: <short answer>", and how callers get the short answer.

The demo model writes what it read in the image before answering (minimax_vl/data/reading.py builds that
transcription); `generate()`, `stream()`, the CLI, the web demo and `eval` return only the short answer unless
asked to show the reading (`show_reading=True`, `--show-reading`). A reply without the marker is all answer,
so models trained to answer directly behave as before.

    reading, answer = split_reply("Chart: pie. Title: Scores. Egg 40%; Pie 60%.\\nAnswer: Pie")
    answer == final_answer(reply) == "Pie"
"""
from __future__ import annotations

from typing import Iterable, Iterator

ANSWER_MARKER = "\nAnswer: "
# Optional worked step between the reading and the answer (data.facts): the transcription's entries for what the
# question names, e.g. "\nFacts: Owl 90; Ant 60\nAnswer: 30" (minimax_vl/data/reading.py, question_facts).
FACTS_MARKER = "\nFacts: "
# Room for a whole reply: the longest transcription of the demo's maps is about 130 tokens, plus the answer.
MAX_REPLY_TOKENS = 192
_MARKER_WORD = ANSWER_MARKER.strip()  # "Answer:"
# How a transcription starts (minimax_vl/data/reading.py); a reply that starts otherwise is streamed as it comes.
READING_OPENERS = ("Chart:", "Map:", FACTS_MARKER.strip())


def split_reply(reply: str) -> tuple[str | None, str]:
    """(reading, or None when the reply has no marker; the short answer)."""
    reading, marker, answer = reply.rpartition(_MARKER_WORD)
    if not marker:
        return None, reply.strip()
    return reading.strip(), answer.strip()


def final_answer(reply: str) -> str:
    return split_reply(reply)[1]


def _may_be_reading(text: str) -> bool:
    text = text.lstrip()
    return any(text.startswith(o) or o.startswith(text) for o in READING_OPENERS)


def answer_pieces(pieces: Iterable[str]) -> Iterator[str]:
    """Streams only the short answer of a streamed reply. A reply that opens like a transcription is held back
    until the marker has been seen, then the rest streams as it comes (a transcription that never reaches the
    marker is released whole at its end); any other reply (a model that answers directly) streams at once."""
    held = ""
    answering = started = False  # started: the answer's first non-space character has been yielded
    for piece in pieces:
        if not answering:
            held += piece
            _, marker, piece = held.rpartition(_MARKER_WORD)
            if not marker:
                if _may_be_reading(held):
                    continue
                piece = held  # not a transcription: everything so far is answer
            answering = True
        if not started:
            piece = piece.lstrip()
            started = bool(piece)
        if piece:
            yield piece
    if not answering and held:
        yield held.strip()
