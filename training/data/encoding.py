"""Conversations → token ids and training labels, with image placeholders expanded.

    input_ids, labels = encode_conversation(messages, tokenizer, image_token_counts=[1176])

The prompt comes from `minimax_vl.chat_template.render_segments`; only assistant text and its
closing `<end_of_sentence>` are supervised, everything else has label -100. Each `<image>` becomes
`image_token_counts[i]` copies of the `<image>` id (the count comes from the image processor), which
the model later overwrites with projected vision features in order.

Truncation (`max_length`): the sequence is cut to at most `max_length` tokens, but never inside an
image's run of tokens: if the cut would split an image, the cut moves to just before that image, so
every image is either entirely kept or entirely dropped (and then so is everything after it). The
number of images kept is `images_kept(input_ids, image_token_counts, image_id)`; pass only those
images to the model.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from tokenizers import Tokenizer

from minimax_vl.chat_template import IMAGE, render_segments
from minimax_vl.processor import expand_image_tokens
from text_backbone.model import IGNORE_INDEX


def _backend(tokenizer: Any) -> Tokenizer:
    """Accepts a `tokenizers.Tokenizer`, or a wrapper holding one: `minimax_vl.tokenizer.MiniMaxTokenizer`
    (`.backend`) or a transformers fast tokenizer (`.backend_tokenizer`)."""
    for attribute in ("backend_tokenizer", "backend"):
        inner = getattr(tokenizer, attribute, None)
        if isinstance(inner, Tokenizer):
            return inner
    if isinstance(tokenizer, Tokenizer):
        return tokenizer
    raise TypeError(f"expected a tokenizers.Tokenizer or a wrapper of one, got {type(tokenizer).__name__}")


def image_token_id(tokenizer: Any) -> int:
    token_id = _backend(tokenizer).token_to_id(IMAGE)
    if token_id is None:
        raise ValueError(f"tokenizer has no {IMAGE} token; add it as a special token (see training/data/tokenizer.py)")
    return token_id


def encode_conversation(
    messages: list[dict[str, Any]],
    tokenizer: Any,
    image_token_counts: Sequence[int],
    max_length: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, labels), both int64 of shape [T]; see the module docstring for the rules."""
    backend = _backend(tokenizer)
    image_id = image_token_id(tokenizer)
    segments = render_segments(messages)
    encodings = backend.encode_batch([text for text, _ in segments], add_special_tokens=False)
    input_ids: list[int] = []
    labels: list[int] = []
    for (_, is_target), encoding in zip(segments, encodings):
        input_ids.extend(encoding.ids)
        labels.extend(encoding.ids if is_target else [IGNORE_INDEX] * len(encoding.ids))
    input_ids, labels, image_spans = expand_image_tokens(input_ids, image_id, image_token_counts, labels)
    if max_length is not None and len(input_ids) > max_length:
        cut = max_length
        for start, end in image_spans:
            if start < cut < end:
                cut = start  # never split an image: drop it whole
                break
        input_ids, labels = input_ids[:cut], labels[:cut]
    return torch.tensor(input_ids, dtype=torch.long), torch.tensor(labels, dtype=torch.long)


def images_kept(input_ids: torch.Tensor, image_token_counts: Sequence[int], image_id: int) -> int:
    """How many leading images survive in a (possibly truncated) sequence."""
    remaining = int((input_ids == image_id).sum())
    kept = 0
    for count in image_token_counts:
        if remaining < count:
            break
        remaining -= count
        kept += 1
    if remaining:
        raise ValueError(f"{remaining} image tokens do not add up to whole images of sizes {list(image_token_counts)}")
    return kept
