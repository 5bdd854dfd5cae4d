"""MiniMax-VL-01's chat template (SPEC_NOTES §5.8), rendered in Python.

One source of truth for the prompt format: the processor, the training data pipeline and
generation all call `render_segments`, which also says which spans are training targets
(assistant text plus its closing `<end_of_sentence>`; everything else is context, label -100).

    <beginning_of_sentence>system ai_setting=assistant\n{system}<end_of_sentence>\n
    <beginning_of_sentence>user name=user\n{content, images as <image>}<end_of_sentence>\n
    <beginning_of_sentence>ai name=assistant\n{answer}<end_of_sentence>\n
    generation prompt: <beginning_of_sentence>ai name=assistant\n
"""
from __future__ import annotations

from typing import Any, Iterable

BOS = "<beginning_of_sentence>"
EOS = "<end_of_sentence>"
EOD = "<end_of_document>"
IMAGE = "<image>"
FUNCTION_CALL = "<function_call>"
SPECIAL_TOKENS = (BOS, EOS, EOD, IMAGE, FUNCTION_CALL)

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant created by MiniMax based on MiniMax-VL-01 model."

_ROLE_HEADERS = {
    "system": "system ai_setting=assistant",
    "user": "user name=user",
    "assistant": "ai name=assistant",
    "tool": "system function_response=functions",
}
GENERATION_PROMPT = f"{BOS}{_ROLE_HEADERS['assistant']}\n"


def content_to_text(content: str | Iterable[dict[str, Any]]) -> str:
    """Flattens Hugging Face style content (a string, or a list of {"type": "text"|"image", ...} items)."""
    if isinstance(content, str):
        return content
    parts = []
    for item in content:
        kind = item.get("type")
        if kind == "text":
            parts.append(item["text"])
        elif kind == "image":
            parts.append(IMAGE)
        else:
            raise ValueError(f"unsupported content item type {kind!r}; expected 'text' or 'image'")
    return "".join(parts)


def _leading_context(content: Any) -> str:
    if isinstance(content, str):
        return ""
    context = ""
    for item in content:
        if item.get("type") != "text" or not item.get("context"):
            break
        context += item["text"]
    return context


def render_segments(
    messages: list[dict[str, Any]], *, add_generation_prompt: bool = False
) -> list[tuple[str, bool]]:
    """Renders messages to (text, is_target) pieces; joining the texts gives the full prompt.

    Targets are the assistant answers and their `<end_of_sentence>`; the role header and the newline
    after the end token are context, so the model learns to stop, not to write headers.
    """
    segments: list[tuple[str, bool]] = []
    for i, message in enumerate(messages):
        role = message.get("role")
        if role not in _ROLE_HEADERS:
            raise ValueError(f"message {i} has role {role!r}; expected one of {sorted(_ROLE_HEADERS)}")
        text = content_to_text(message.get("content", ""))
        header = f"{BOS}{_ROLE_HEADERS[role]}\n"
        if role == "assistant":
            segments.append((header, False))
            # A leading content item marked {"context": True} is given, not trained (text-only reasoning
            # documents hand the model a transcription and train only the answer after it).
            context = _leading_context(message.get("content", ""))
            if context:
                segments.append((context, False))
            segments.append((text[len(context):] + EOS, True))
            segments.append(("\n", False))
        else:
            segments.append((f"{header}{text}{EOS}\n", False))
    if add_generation_prompt:
        segments.append((GENERATION_PROMPT, False))
    return segments


def render(messages: list[dict[str, Any]], *, add_generation_prompt: bool = False) -> str:
    return "".join(text for text, _ in render_segments(messages, add_generation_prompt=add_generation_prompt))
