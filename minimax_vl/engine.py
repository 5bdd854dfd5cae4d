"""Generation for MiniMaxVL01: images are encoded once into a prefix, questions continue from copies of it.

    state = model.prefill("chart.png")                  # system turn, user turn start, the image tokens
    model.generate(state, "Which bar is the tallest?")  # answers from a copy of the state
    model.generate("chart.png", "Which bar is the tallest?")   # the same thing in one call
    for piece in model.stream("chart.png", "Describe the chart."):
        print(piece, end="")

The text backbone's `Generator` (text_backbone/generation.py) does the decoding; this module only builds the
prompt around the image (MiniMax-VL-01's chat template, SPEC_NOTES §5.8) and turns the image into embeddings.
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
from minimax_vl.answers import MAX_REPLY_TOKENS, answer_pieces, final_answer
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
    return GenerationConfig(max_new_tokens=MAX_REPLY_TOKENS, eos_token_id=[tokenizer.eos_token_id], pad_token_id=tokenizer.pad_token_id)


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


def _continuation_text(question: str, after_image: bool = False) -> str:
    # A question right after the image starts on a new line, as LLaVA-format data writes it ("<image>\n..."), which
    # is what the training data (and so the demo model) always saw; callers may pass the newline themselves.
    if after_image and not question.startswith("\n"):
        question = "\n" + question
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


def _question_ids(model, question: str, after_image: bool = False) -> torch.Tensor:
    ids = _processor(model).tokenizer.encode(_continuation_text(question, after_image))
    return torch.tensor([ids], dtype=torch.long, device=model.image_newline.device)


@torch.no_grad()
def vl_generate(model, image=None, prompt: str | None = None, *, input_ids=None, pixel_values=None, image_sizes=None,
                attention_mask=None, system: str | None = None, image_mode: str | None = None, streamer=None,
                show_reading: bool = False, **settings: Any):
    """See MiniMaxVL01.generate. Returns the short answer (str; the whole reply, transcription included, with
    show_reading=True), or, with input_ids, GenerationOutput."""
    engine = _engine(model)
    if input_ids is not None:  # low level: processor outputs in, token ids out
        embeds = model.embed_inputs(input_ids, pixel_values, image_sizes, image_mode)
        return engine.generate(inputs_embeds=embeds, attention_mask=attention_mask, streamer=streamer, **settings)
    if prompt is None:
        raise ValueError("pass a prompt (the question text), e.g. model.generate('chart.png', 'What is the title?')")
    state = image if isinstance(image, VLPrefixState) else vl_prefill(model, image, system=system, image_mode=image_mode)
    out: GenerationOutput = engine.generate(state.text_state, _question_ids(model, prompt, state.has_image),
                                            streamer=streamer, **settings)
    return out.texts[0] if show_reading else final_answer(out.texts[0])


def vl_stream(model, image=None, prompt: str | None = None, *, system: str | None = None, show_reading: bool = False,
              **settings: Any) -> Iterator[str]:
    """Yields the answer in text pieces as they are decided (the transcription too with show_reading=True)."""
    if prompt is None:
        raise ValueError("pass a prompt (the question text)")
    state = image if isinstance(image, VLPrefixState) else vl_prefill(model, image, system=system)
    pieces = _engine(model).stream(state.text_state, _question_ids(model, prompt, state.has_image), **settings)
    yield from (pieces if show_reading else answer_pieces(pieces))


@torch.no_grad()
def vl_answer_many(model, state: VLPrefixState, prompts: list[str], **settings: Any) -> list[str]:
    """Whole replies (transcription included when the model reads first; `answers.split_reply` splits them) to
    several questions about one encoded image in one batch: the one-row prefix is fanned out and the questions
    are left padded (pads are identity steps for every layer, so each row answers as if alone)."""
    if not prompts:
        return []
    tokenizer = _processor(model).tokenizer
    rows = [tokenizer.encode(_continuation_text(p, state.has_image)) for p in prompts]
    width = max(len(r) for r in rows)
    device = model.image_newline.device
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long, device=device)
    mask = torch.zeros(len(rows), width, dtype=torch.long, device=device)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row):] = 1
    out = _engine(model).generate(state.text_state, ids, attention_mask=mask, **settings)
    return out.texts


class VLChat:
    """A multi-turn conversation about one image that keeps its encoded state between turns.

        chat = VLChat(model, "map.png")
        chat.ask("Where is the museum?")     # the image is encoded once, at the first turn
        chat.ask("And the park?")            # continues from the state after the previous answer
    """

    def __init__(self, model, image=None, *, system: str | None = None, show_reading: bool = False,
                 **settings: Any) -> None:
        self.model = model
        self.show_reading = show_reading  # the whole reply stays in the conversation either way
        self.settings = settings
        prefix = vl_prefill(model, image, system=system)
        self.state, self.has_image = prefix.text_state, prefix.has_image
        self.turns = 0

    def ask(self, question: str, stream: bool = False):
        """Returns the answer (or, with stream=True, an iterator of its pieces)."""
        pieces = self._ask(question)
        return pieces if stream else "".join(pieces)

    def _ask(self, question: str) -> Iterator[str]:
        engine = _engine(self.model)
        tokenizer = _processor(self.model).tokenizer
        device = self.model.image_newline.device
        header = "" if self.turns == 0 else f"{chat_template.BOS}user name=user\n"
        after_image = self.has_image and self.turns == 0
        ids = torch.tensor([tokenizer.encode(header + _continuation_text(question, after_image))], device=device)
        self.state = engine.extend(self.state, ids)
        out = engine.generate(self.state, **self.settings)
        yield out.texts[0] if self.show_reading else final_answer(out.texts[0])
        # Close the answer as the chat template does, so the next turn sees a well-formed conversation.
        answer_ids = [t for t in out.tokens[0] if t != tokenizer.eos_token_id]
        closing = answer_ids + tokenizer.encode(f"{chat_template.EOS}\n")
        self.state = engine.extend(self.state, torch.tensor([closing], device=device))
        self.turns += 1
