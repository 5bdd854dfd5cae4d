"""Generation for MiniMaxVL01: images are encoded once into a prefix, questions continue from copies of it.

    state = model.prefill("chart.png")                  # system turn, user turn start, the image tokens
    model.generate(state, "Which bar is the tallest?")  # answers from a copy of the state
    model.generate("chart.png", "Which bar is the tallest?")   # the same thing in one call
    for piece in model.stream("chart.png", "Describe the chart."):
        print(piece, end="")

The text backbone's `Generator` (text_backbone/generation.py) does the decoding; this module only builds the
prompt around the image (MiniMax-VL-01's chat template, SPEC §5.8) and turns the image into embeddings.
The prompt is split where the question text goes:

    prefix       = [<bos>system ...<eos>\\n] <bos>user name=user\\n <image x N>
    continuation = {question}<eos>\\n<bos>ai name=assistant\\n

`<image>` and the role tokens are special tokens, so tokenising the two parts separately gives exactly the ids
of tokenising the whole prompt.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import torch

from minimax_vl import chat_template
from text_backbone.generation import GenerationConfig, GenerationOutput, Generator, PrefixState


@dataclass
class VLPrefixState:
    """An encoded conversation prefix (image included); reusable: every generate works on a copy."""

    text_state: PrefixState
    has_image: bool


def default_generation_config(model) -> GenerationConfig:
    config = getattr(model, "generation_config", None)
    if config is not None:
        return config
    tokenizer = _processor(model).tokenizer
    return GenerationConfig(max_new_tokens=64, eos_token_id=[tokenizer.eos_token_id], pad_token_id=tokenizer.pad_token_id)


def _processor(model):
    if model.processor is None:
        raise ValueError("this model has no processor (tokenizer + image processor); load it with from_pretrained "
                         "from a folder that has tokenizer.json and preprocessor_config.json, or set model.processor")
    return model.processor


def _engine(model) -> Generator:
    return Generator(model.language_model, decode=_processor(model).tokenizer.decode, config=default_generation_config(model))


def _prefix_text(system: str | None, has_image: bool) -> str:
    head = ""
    if system:
        head = chat_template.render([{"role": "system", "content": system}])
    return head + f"{chat_template.BOS}user name=user\n" + (chat_template.IMAGE if has_image else "")


def _continuation_text(question: str) -> str:
    return f"{question}{chat_template.EOS}\n{chat_template.GENERATION_PROMPT}"


@torch.no_grad()
def vl_prefill(model, image=None, *, system: str | None = None, image_mode: str | None = None) -> VLPrefixState:
    """Encodes everything before the question: optional system turn, the user turn's start and the image."""
    processor = _processor(model)
    images = [] if image is None else [image]
    inputs = processor(images=images, text=_prefix_text(system, image is not None), image_mode=image_mode)
    input_ids = inputs["input_ids"].to(model.image_newline.device)
    engine = _engine(model)
    if image is None:
        state = engine.prefill(input_ids)
    else:
        state = engine.prefill(inputs_embeds=model.embed_inputs(input_ids, inputs["pixel_values"], inputs["image_sizes"],
                                                                image_mode))
    return VLPrefixState(state, has_image=image is not None)


def _question_ids(model, question: str) -> torch.Tensor:
    ids = _processor(model).tokenizer.encode(_continuation_text(question))
    return torch.tensor([ids], dtype=torch.long, device=model.image_newline.device)


@torch.no_grad()
def vl_generate(model, image=None, prompt: str | None = None, *, input_ids=None, pixel_values=None, image_sizes=None,
                attention_mask=None, system: str | None = None, image_mode: str | None = None, streamer=None,
                **settings: Any):
    """See MiniMaxVL01.generate. Returns the answer text (str), or, with input_ids, GenerationOutput."""
    engine = _engine(model)
    if input_ids is not None:  # low level: processor outputs in, token ids out
        embeds = model.embed_inputs(input_ids, pixel_values, image_sizes, image_mode)
        return engine.generate(inputs_embeds=embeds, attention_mask=attention_mask, streamer=streamer, **settings)
    if prompt is None:
        raise ValueError("pass a prompt (the question text), e.g. model.generate('chart.png', 'What is the title?')")
    state = image if isinstance(image, VLPrefixState) else vl_prefill(model, image, system=system, image_mode=image_mode)
    out: GenerationOutput = engine.generate(state.text_state, _question_ids(model, prompt), streamer=streamer, **settings)
    return out.texts[0]


def vl_stream(model, image=None, prompt: str | None = None, *, system: str | None = None, **settings: Any) -> Iterator[str]:
    """Yields the answer in text pieces as they are decided."""
    if prompt is None:
        raise ValueError("pass a prompt (the question text)")
    state = image if isinstance(image, VLPrefixState) else vl_prefill(model, image, system=system)
    yield from _engine(model).stream(state.text_state, _question_ids(model, prompt), **settings)
