"""Generation settings and streamers for MiniMax-VL-01.

    config = GenerationConfig(max_new_tokens=128, eos_token_id=[200020], stop_strings=["<end_of_sentence>"])
    config.save(checkpoint_dir)                      # generation_config.json, written atomically
    config = GenerationConfig.load(checkpoint_dir)

    streamer = TextIteratorStreamer(tokenizer.decode)
    Thread(target=engine.generate, args=(prompt_ids,), kwargs={"streamer": streamer}).start()
    for piece in streamer:
        print(piece, end="", flush=True)

The engine itself lives in `text_backbone.generation` (the text backbone must generate on its own and never
imports this package), so `GenerationConfig`, `Generator` and `PrefixState` are defined there and re-exported
here; the VL model hands its prompt to the same engine as `inputs_embeds`.

Streamers follow transformers' protocol: the engine calls `put(token_ids)` once per step with the new token
(it never sends the prompt, so no `skip_prompt` is needed) and `end()` once, also when generation fails.
"""
from __future__ import annotations

import queue
import sys
from typing import Callable

import torch

from text_backbone.generation import (
    GENERATION_CONFIG_NAME,
    GenerationConfig,
    GenerationOutput,
    Generator,
    IncrementalDetokenizer,
    PrefixState,
)

__all__ = [
    "GENERATION_CONFIG_NAME",
    "GenerationConfig",
    "GenerationOutput",
    "Generator",
    "PrefixState",
    "TextStreamer",
    "TextIteratorStreamer",
]


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
