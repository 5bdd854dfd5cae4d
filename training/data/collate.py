"""Batching encoded documents: right-padding, or packing several documents into fixed-length rows.

Each example is a dict with "input_ids" and "labels" (int64 [T], from `encode_conversation`) and,
optionally, "pixel_values": a list with one tensor per image (any shape; tile counts may differ).
Images are returned as one flat list in the order their tokens appear in the flattened batch, which is
the order the model's `masked_scatter` fills image tokens.

Padding   input_ids / labels / attention_mask [B, T]; pads are `pad_token_id`, label -100, mask 0.
Packing   greedy first-fit of documents into rows of exactly `max_length` tokens:
          input_ids / labels / position_ids / attention_mask [R, L] (R = 1 when everything fits),
          cu_seqlens int32 [N + 1] over the flattened R·L tokens, max_seqlen.
          Positions restart at 0 in every document. The unused tail of a row is one extra segment of
          pad tokens (label -100, attention_mask 0) so that cu_seqlens[-1] == R·L, as varlen attention
          kernels expect, and every row boundary is a segment boundary: `input_ids.view(1, -1)` is the
          [1, R·L] varlen form. Keeping documents apart (block-diagonal attention, lightning state reset
          at each cu_seqlens boundary) is the model's job; this module only builds the metadata.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from training.data.encoding import IGNORE_INDEX

LIST_KEYS = ("pixel_values", "image_sizes")  # per-image lists, concatenated in token order


def _flat_images(examples: Sequence[dict[str, Any]]) -> dict[str, list]:
    out: dict[str, list] = {}
    for key in LIST_KEYS:
        if any(key in e for e in examples):
            out[key] = [item for e in examples for item in e.get(key, [])]
    return out


class PaddingCollator:
    """Right-pads to the longest example (`pad_to="longest"`) or to `max_length` (`pad_to="max_length"`,
    static shapes); examples longer than `max_length` are an error (truncate them when encoding)."""

    def __init__(self, pad_token_id: int, pad_to: str = "longest", max_length: int | None = None):
        if pad_to not in ("longest", "max_length"):
            raise ValueError(f"pad_to={pad_to!r}; expected 'longest' or 'max_length'")
        if pad_to == "max_length" and max_length is None:
            raise ValueError("pad_to='max_length' needs max_length")
        self.pad_token_id, self.pad_to, self.max_length = pad_token_id, pad_to, max_length

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        lengths = [len(e["input_ids"]) for e in examples]
        if self.max_length is not None and max(lengths) > self.max_length:
            i = max(range(len(lengths)), key=lengths.__getitem__)
            raise ValueError(f"example {i} has {lengths[i]} tokens, more than max_length={self.max_length}; "
                             "pass max_length to encode_conversation to truncate")
        width = self.max_length if self.pad_to == "max_length" else max(lengths)
        input_ids = torch.full((len(examples), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
        for row, (example, length) in enumerate(zip(examples, lengths)):
            input_ids[row, :length] = example["input_ids"]
            labels[row, :length] = example["labels"]
            attention_mask[row, :length] = 1
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask, **_flat_images(examples)}


def first_fit(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Greedy first-fit: each document (in the given order) goes into the first row with room for it."""
    rows: list[list[int]] = []
    free: list[int] = []
    for i, length in enumerate(lengths):
        if length > capacity:
            raise ValueError(f"document {i} has {length} tokens, more than the row length {capacity}; "
                             "pass max_length to encode_conversation to truncate")
        if length == 0:
            raise ValueError(f"document {i} is empty")
        for r, room in enumerate(free):
            if length <= room:
                rows[r].append(i)
                free[r] -= length
                break
        else:
            rows.append([i])
            free.append(capacity - length)
    return rows


class PackingCollator:
    """Packs documents into rows of `max_length` tokens (see the module docstring for the layout)."""

    def __init__(self, max_length: int, pad_token_id: int):
        self.max_length, self.pad_token_id = max_length, pad_token_id

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        length = self.max_length
        rows = first_fit([len(e["input_ids"]) for e in examples], length)
        input_ids = torch.full((len(rows), length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
        position_ids = torch.zeros((len(rows), length), dtype=torch.long)
        attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
        boundaries = [0]
        for r, row in enumerate(rows):
            offset = 0
            for i in row:
                n = len(examples[i]["input_ids"])
                input_ids[r, offset:offset + n] = examples[i]["input_ids"]
                labels[r, offset:offset + n] = examples[i]["labels"]
                position_ids[r, offset:offset + n] = torch.arange(n)
                attention_mask[r, offset:offset + n] = 1
                offset += n
                boundaries.append(r * length + offset)
            if offset < length:  # the pad tail: its own segment, positions from 0 like any document
                position_ids[r, offset:] = torch.arange(length - offset)
                boundaries.append((r + 1) * length)
        cu_seqlens = torch.tensor(boundaries, dtype=torch.int32)
        order = [i for row in rows for i in row]
        return {
            "input_ids": input_ids, "labels": labels, "position_ids": position_ids, "attention_mask": attention_mask,
            "cu_seqlens": cu_seqlens, "max_seqlen": int((cu_seqlens[1:] - cu_seqlens[:-1]).max()),
            "document_order": order,  # example index of each packed document, in token order
            **_flat_images([examples[i] for i in order]),
        }


def useful_token_fraction(batch: dict[str, Any]) -> float:
    """Share of batch positions holding document tokens rather than padding."""
    return float(batch["attention_mask"].float().mean())


def supervised_token_fraction(batch: dict[str, Any]) -> float:
    """Share of batch positions that carry a training target."""
    return float((batch["labels"] != IGNORE_INDEX).float().mean())
