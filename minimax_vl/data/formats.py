"""Reading and writing conversation datasets: LLaVA JSON and ShareGPT-style `messages` JSON.

Both read into one internal form, `Sample`: Hugging Face style messages

    {"role": "user" | "assistant" | "system", "content": [{"type": "image"}, {"type": "text", "text": ...}]}

plus the image paths in placeholder order. Text around `<image>` placeholders is kept verbatim, so
"<image>\\nWhat is shown?" reads as [image, text "\\nWhat is shown?"] and writes back unchanged.

    LLaVA      {"id", "image": path | [paths] (absent for text-only), "conversations": [{"from": "human"|"gpt"|"system", "value"}]}
    messages   {"id", "messages": [{"role", "content": str | [items]}], "images": [paths]}

Preference records carry the rejected reply as "rejected_response" (ms-swift's field name); the chosen
reply is the last assistant turn. Malformed records raise `DataFormatError` naming the record and the fix.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from minimax_vl.chat_template import IMAGE

_LLAVA_ROLES = {"human": "user", "gpt": "assistant", "system": "system"}
_LLAVA_SPEAKERS = {role: speaker for speaker, role in _LLAVA_ROLES.items()}
ROLES = ("user", "assistant", "system")


class DataFormatError(ValueError):
    """A dataset record is malformed; the message names the record and what to fix."""


@dataclass
class Sample:
    """One training example: messages, the images they refer to, and free-form metadata.

    `images` holds paths when read from disk, or PIL images when generated on the fly.
    """

    id: str
    messages: list[dict[str, Any]]
    images: list[Any] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    rejected: str | None = None  # preference data: the rejected final assistant reply

    @property
    def num_image_placeholders(self) -> int:
        return sum(1 for m in self.messages for item in m["content"] if item["type"] == "image")


def text_to_content(text: str) -> list[dict[str, Any]]:
    """Splits a string at `<image>` into HF content items, keeping all text (newlines included)."""
    items: list[dict[str, Any]] = []
    for i, piece in enumerate(text.split(IMAGE)):
        if i > 0:
            items.append({"type": "image"})
        if piece:
            items.append({"type": "text", "text": piece})
    return items


def content_to_string(content: list[dict[str, Any]]) -> str:
    return "".join(IMAGE if item["type"] == "image" else item["text"] for item in content)


def _where(index: int | None, record: Any) -> str:
    record_id = record.get("id") if isinstance(record, dict) else None
    where = f"record {index}" if index is not None else "record"
    return f"{where} (id {record_id!r})" if record_id is not None else where


def _image_list(value: Any, where: str, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise DataFormatError(f"{where}: '{key}' must be a path or a list of paths, got {type(value).__name__}")


def _check_images(sample: Sample, where: str) -> None:
    placeholders = sample.num_image_placeholders
    if placeholders != len(sample.images):
        raise DataFormatError(
            f"{where}: {len(sample.images)} image(s) but {placeholders} {IMAGE} placeholder(s) in the conversation; "
            f"put one {IMAGE} in the text for each image (usually '{IMAGE}\\n' at the start of the first user turn)")


def _meta(record: dict, where: str) -> dict:
    meta = record.get("meta", {})
    if not isinstance(meta, dict):
        raise DataFormatError(f"{where}: 'meta' must be an object, got {type(meta).__name__}")
    return dict(meta)


def _rejected(record: dict, where: str) -> str | None:
    rejected = record.get("rejected_response")
    if rejected is not None and not isinstance(rejected, str):
        raise DataFormatError(f"{where}: 'rejected_response' must be a string, got {type(rejected).__name__}")
    return rejected


def from_llava(record: Any, index: int | None = None) -> Sample:
    """A LLaVA record → `Sample`."""
    where = _where(index, record)
    if not isinstance(record, dict):
        raise DataFormatError(f"{where}: expected a JSON object, got {type(record).__name__}")
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise DataFormatError(f"{where}: 'conversations' must be a non-empty list of {{'from', 'value'}} turns")
    messages = []
    for t, turn in enumerate(turns):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise DataFormatError(f"{where}: turn {t} must be an object with 'from' and 'value', got {turn!r:.80}")
        if turn["from"] not in _LLAVA_ROLES:
            raise DataFormatError(f"{where}: turn {t} has 'from' = {turn['from']!r}; expected one of {sorted(_LLAVA_ROLES)}")
        if not isinstance(turn["value"], str):
            raise DataFormatError(f"{where}: turn {t} 'value' must be a string, got {type(turn['value']).__name__}")
        messages.append({"role": _LLAVA_ROLES[turn["from"]], "content": text_to_content(turn["value"])})
    sample = Sample(id=str(record.get("id", index)), messages=messages,
                    images=_image_list(record.get("image"), where, "image"), meta=_meta(record, where),
                    rejected=_rejected(record, where))
    _check_images(sample, where)
    return sample


def from_messages(record: Any, index: int | None = None) -> Sample:
    """A ShareGPT-style `messages` record → `Sample`."""
    where = _where(index, record)
    if not isinstance(record, dict):
        raise DataFormatError(f"{where}: expected a JSON object, got {type(record).__name__}")
    raw = record.get("messages")
    if not isinstance(raw, list) or not raw:
        raise DataFormatError(f"{where}: 'messages' must be a non-empty list of {{'role', 'content'}} objects")
    messages = []
    for m, message in enumerate(raw):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise DataFormatError(f"{where}: message {m} must be an object with 'role' and 'content', got {message!r:.80}")
        if message["role"] not in ROLES:
            raise DataFormatError(f"{where}: message {m} has role {message['role']!r}; expected one of {list(ROLES)}")
        content = message["content"]
        if isinstance(content, str):
            items = text_to_content(content)
        elif isinstance(content, list):
            items = []
            for item in content:
                kind = item.get("type") if isinstance(item, dict) else None
                if kind == "image":
                    items.append({"type": "image"})
                elif kind == "text" and isinstance(item.get("text"), str):
                    items.extend(text_to_content(item["text"]))
                else:
                    raise DataFormatError(f"{where}: message {m} has a content item {item!r:.80}; expected "
                                          "{'type': 'image'} or {'type': 'text', 'text': str}")
        else:
            raise DataFormatError(f"{where}: message {m} content must be a string or a list, got {type(content).__name__}")
        messages.append({"role": message["role"], "content": items})
    sample = Sample(id=str(record.get("id", index)), messages=messages,
                    images=_image_list(record.get("images"), where, "images"), meta=_meta(record, where),
                    rejected=_rejected(record, where))
    _check_images(sample, where)
    return sample


def from_record(record: Any, index: int | None = None) -> Sample:
    """Either format, told apart by its keys ('conversations' = LLaVA, 'messages' = ShareGPT style)."""
    if isinstance(record, dict) and "conversations" in record:
        return from_llava(record, index)
    if isinstance(record, dict) and "messages" in record:
        return from_messages(record, index)
    raise DataFormatError(f"{_where(index, record)}: neither 'conversations' (LLaVA) nor 'messages' (ShareGPT) "
                          "found; one of the two is required")


def to_llava(sample: Sample) -> dict[str, Any]:
    """`Sample` → LLaVA record. Images must be paths (save generated images first)."""
    if any(not isinstance(image, str) for image in sample.images):
        raise DataFormatError(f"sample {sample.id!r}: images must be saved and given as paths before writing LLaVA JSON")
    record: dict[str, Any] = {"id": sample.id}
    if len(sample.images) == 1:
        record["image"] = sample.images[0]
    elif sample.images:
        record["image"] = list(sample.images)
    record["conversations"] = [{"from": _LLAVA_SPEAKERS[m["role"]], "value": content_to_string(m["content"])}
                               for m in sample.messages]
    if sample.rejected is not None:
        record["rejected_response"] = sample.rejected
    if sample.meta:
        record["meta"] = sample.meta
    return record


def read_records(path: str | Path) -> list[Any]:
    """A JSON list, or JSON Lines (one record per line)."""
    text = Path(path).read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        return json.loads(text)
    records = []
    for line_number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise DataFormatError(f"{path}: line {line_number} is not valid JSON ({error.msg}); "
                                      "expected a JSON list or one JSON object per line") from error
    return records


def read_dataset(path: str | Path, image_root: str | Path | None = None) -> list[Sample]:
    """Every record of a LLaVA or ShareGPT-style file; relative image paths are joined to `image_root`."""
    samples = [from_record(record, i) for i, record in enumerate(read_records(path))]
    if image_root is not None:
        for sample in samples:
            sample.images = [str(Path(image_root) / p) for p in sample.images]
    return samples


def write_llava(samples: Iterable[Sample], path: str | Path) -> None:
    records = [to_llava(s) for s in samples]
    Path(path).write_text(json.dumps(records, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
