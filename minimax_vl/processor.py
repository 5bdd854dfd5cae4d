"""MiniMaxVL01Processor: images + text -> model inputs, with each `<image>` expanded to its exact token count.

    processor = MiniMaxVL01Processor.from_pretrained("path/to/checkpoint")
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is shown?"}]}],
        add_generation_prompt=True,
    )
    inputs = processor(images=[image], text=prompt, return_tensors="pt")
    # {"input_ids": [B, T], "attention_mask": [B, T], "pixel_values": [[n_i, 3, t, t], ...], "image_sizes": [[h, w], ...]}
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from minimax_vl import chat_template
from minimax_vl.config import MiniMaxVL01Config
from minimax_vl.tokenizer import MiniMaxTokenizer, shipped_tokenizer
from text_backbone.model import IGNORE_INDEX
from text_backbone.weights_io import read_json, write_json
from vision.image_processing import ImageProcessor

PREPROCESSOR_CONFIG = "preprocessor_config.json"
TOKENIZER_CONFIG = "tokenizer_config.json"


def expand_image_tokens(ids: Sequence[int], image_token_id: int, image_token_counts: Sequence[int],
                        labels: Sequence[int] | None = None) -> tuple[list[int], list[int] | None, list[tuple[int, int]]]:
    """The one place an `<image>` becomes its tokens: the i-th image-token id in `ids` (one per placeholder, as
    the tokenizer produces it) becomes image_token_counts[i] copies, the positions the model overwrites with
    that image's projected features, in order. `labels` (same length as `ids`), when given, are expanded
    alongside with IGNORE_INDEX at image positions. Returns (ids, labels or None, [(start, end) per image])."""
    placeholders = sum(1 for token in ids if token == image_token_id)
    if placeholders > len(image_token_counts):
        raise ValueError(f"the text has more <image> placeholders ({placeholders}) than the {len(image_token_counts)} "
                         "image token counts given; pass one count per image")
    if placeholders < len(image_token_counts):
        raise ValueError(f"the text has {placeholders} <image> placeholder(s) but {len(image_token_counts)} image "
                         "token counts were given; pass one count per image")
    out_ids: list[int] = []
    out_labels: list[int] | None = None if labels is None else []
    spans: list[tuple[int, int]] = []
    for position, token in enumerate(ids):
        if token == image_token_id:
            count = image_token_counts[len(spans)]
            if count < 1:
                raise ValueError(f"image {len(spans)} has {count} tokens; every image needs at least one")
            spans.append((len(out_ids), len(out_ids) + count))
            out_ids.extend([image_token_id] * count)
            if out_labels is not None:
                out_labels.extend([IGNORE_INDEX] * count)
        else:
            out_ids.append(token)
            if out_labels is not None:
                out_labels.append(labels[position])
    return out_ids, out_labels, spans


class MiniMaxVL01Processor:
    def __init__(self, image_processor: ImageProcessor, tokenizer: MiniMaxTokenizer) -> None:
        self.image_processor = image_processor
        self.tokenizer = tokenizer

    @classmethod
    def for_config(cls, config: MiniMaxVL01Config, tokenizer: MiniMaxTokenizer | None = None) -> "MiniMaxVL01Processor":
        image_processor = ImageProcessor.for_vision_config(
            config.vision_config, mode=config.process_image_mode,
            grid_pinpoints=tuple(tuple(p) for p in config.image_grid_pinpoints),
        )
        tokenizer = tokenizer or shipped_tokenizer()
        if tokenizer.image_token_id != config.image_token_index:
            raise ValueError(
                f"the tokenizer's <image> id is {tokenizer.image_token_id} but the config says image_token_index="
                f"{config.image_token_index}; use the tokenizer the model was trained with"
            )
        return cls(image_processor, tokenizer)

    # ------------------------------------------------------------------ text
    def apply_chat_template(self, messages: list[dict[str, Any]], add_generation_prompt: bool = False) -> str:
        return chat_template.render(messages, add_generation_prompt=add_generation_prompt)

    def encode_with_images(self, text: str, image_token_counts: Sequence[int]) -> list[int]:
        """Tokenises `text`, replacing the i-th `<image>` by image_token_counts[i] image-token ids."""
        ids, _, _ = expand_image_tokens(self.tokenizer.encode(text), self.tokenizer.image_token_id, image_token_counts)
        return ids

    # ------------------------------------------------------------------ images + text
    def __call__(
        self,
        images: Any = None,
        text: str | Sequence[str] | None = None,
        return_tensors: str | None = "pt",
        padding_side: str = "left",
        image_mode: str | None = None,
    ) -> dict[str, Any]:
        """Batch of prompts (each may hold several `<image>`), images in prompt order across the batch.

        Rows are padded on the left (the side generation needs) unless padding_side="right".
        """
        if text is None:
            raise ValueError("pass text (use apply_chat_template to build a prompt)")
        texts = [text] if isinstance(text, str) else list(text)
        if images is None:
            images = []
        elif not isinstance(images, (list, tuple)):
            images = [images]
        processor = self.image_processor if image_mode is None else self.image_processor.replace(mode=image_mode)
        vision = processor(list(images)) if images else {"pixel_values": [], "image_sizes": [], "num_image_tokens": []}
        counts = list(vision["num_image_tokens"])
        rows, cursor = [], 0
        for row_text in texts:
            n = row_text.count(chat_template.IMAGE)
            if cursor + n > len(counts):
                raise ValueError(f"the prompts hold more <image> placeholders than the {len(counts)} images given")
            rows.append(self.encode_with_images(row_text, counts[cursor : cursor + n]))
            cursor += n
        if cursor != len(counts):
            raise ValueError(f"{len(counts)} images were given but the prompts hold {cursor} <image> placeholders")
        out: dict[str, Any] = {
            "pixel_values": vision["pixel_values"],
            "image_sizes": vision["image_sizes"],
        }
        if return_tensors != "pt":
            out["input_ids"] = rows
            return out
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros(len(rows), width, dtype=torch.long)
        for i, r in enumerate(rows):
            span = slice(width - len(r), width) if padding_side == "left" else slice(0, len(r))
            input_ids[i, span] = torch.tensor(r, dtype=torch.long)
            attention_mask[i, span] = 1
        out.update(input_ids=input_ids, attention_mask=attention_mask)
        return out

    # ------------------------------------------------------------------ files
    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(directory)
        write_json(directory / PREPROCESSOR_CONFIG, self.image_processor.to_dict())
        write_json(directory / TOKENIZER_CONFIG, {
            "tokenizer_class": "GPT2Tokenizer",
            "bos_token": chat_template.BOS, "eos_token": chat_template.EOS, "unk_token": chat_template.EOD,
            "add_prefix_space": False, "model_max_length": 40960000,
            "chat_template": JINJA_CHAT_TEMPLATE,
        })

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "MiniMaxVL01Processor":
        directory = Path(directory)
        image_processor = ImageProcessor.from_dict(read_json(directory / PREPROCESSOR_CONFIG))
        return cls(image_processor, MiniMaxTokenizer.from_file(directory / "tokenizer.json"))


# The same template as `chat_template.render`, in Jinja for tools that read tokenizer_config.json
# (transformers, vLLM). Kept equivalent by tests/minimax_vl/test_vl_save_load.py.
JINJA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{% set header = 'system ai_setting=assistant' %}"
    "{% elif message['role'] == 'user' %}{% set header = 'user name=user' %}"
    "{% elif message['role'] == 'assistant' %}{% set header = 'ai name=assistant' %}"
    "{% else %}{% set header = 'system function_response=functions' %}{% endif %}"
    "<beginning_of_sentence>{{ header }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<image>{% else %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<end_of_sentence>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<beginning_of_sentence>ai name=assistant\n{% endif %}"
)
