"""Text streamers for `Generator.generate(..., streamer=...)`, following transformers' streamer protocol.

    streamer = TextIteratorStreamer(tokenizer.decode)
    Thread(target=engine.generate, args=(prompt_ids,), kwargs={"streamer": streamer}).start()
    for piece in streamer:
        print(piece, end="", flush=True)

The engine calls `put(token_ids)` once per step with the new token (it never sends the prompt, so no
`skip_prompt` is needed) and `end()` once, also when generation fails (`generation.TokenStreamer` is the
protocol). Without threads, `Generator.stream` and `MiniMaxVL01.stream` yield the same pieces directly.
"""
from __future__ import annotations

import queue
import sys
from typing import Callable

import torch

from text_backbone.generation import IncrementalDetokenizer

__all__ = ["TextStreamer", "TextIteratorStreamer"]


class TextStreamer:
    """Decodes tokens as they arrive and hands finished text to `on_finalized_text` (by default: stdout).

    Text is released in pieces that never split a multi-byte character; `end()` releases the rest.
    decode: token ids -> str (e.g. `functools.partial(tokenizer.decode, skip_special_tokens=True)`).
    """

    def __init__(self, decode: Callable[[list[int]], str]) -> None:
        self.decode = decode
        self._detokenizer = IncrementalDetokenizer(decode)

    def put(self, value: torch.Tensor | list[int]) -> None:
        """value: this step's token ids, [n] or [1, n]."""
        ids = value.tolist() if isinstance(value, torch.Tensor) else list(value)
        if ids and isinstance(ids[0], list):
            if len(ids) != 1:
                raise ValueError(f"{type(self).__name__} follows one sequence; got a batch of {len(ids)}")
            ids = ids[0]
        piece = self._detokenizer.push(ids)
        if piece:
            self.on_finalized_text(piece, stream_end=False)

    def end(self) -> None:
        """Releases what is left and starts over for the next generation."""
        piece = self._detokenizer.flush()
        self._detokenizer = IncrementalDetokenizer(self.decode)
        self.on_finalized_text(piece, stream_end=True)

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        print(text, end="" if not stream_end else "\n", flush=True, file=sys.stdout)


class TextIteratorStreamer(TextStreamer):
    """A `TextStreamer` to iterate over from another thread: generation runs in a worker thread and calls
    `put`/`end`; the consumer does `for piece in streamer`. `timeout` (seconds) bounds each wait and raises
    `queue.Empty` when it passes, so a stalled producer cannot hang the consumer forever."""

    _END = object()

    def __init__(self, decode: Callable[[list[int]], str], *, timeout: float | None = None) -> None:
        super().__init__(decode)
        self.timeout = timeout
        self._queue: queue.Queue = queue.Queue()

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if text:
            self._queue.put(text)
        if stream_end:
            self._queue.put(self._END)

    def __iter__(self) -> "TextIteratorStreamer":
        return self

    def __next__(self) -> str:
        item = self._queue.get(timeout=self.timeout)
        if item is self._END:
            raise StopIteration
        return item
