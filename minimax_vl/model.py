"""MiniMaxVL01: ViT tiles -> projector -> packed image tokens (with image_newline) -> MiniMax-Text-01 (SPEC_NOTES §5).

    model = MiniMaxVL01.from_preset("tiny")                    # random weights + the shipped small processor
    model = MiniMaxVL01.from_pretrained("path/to/checkpoint")  # released layout, processor files beside it
    print(model.generate("chart.png", "Which bar is the tallest?"))

Module names follow the released checkpoint (`vision_tower`, `multi_modal_projector`, `image_newline`,
`language_model`); the vision tower is a timm ViT whose keys `minimax_vl.weights` maps to the released
CLIP names.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import torch
from torch import nn

from minimax_vl.config import MiniMaxVL01Config
from text_backbone.model import CausalLMOutput, MiniMaxText01ForCausalLM
from vision.anyres import pack_image_features
from vision.vit import VisionTower

if TYPE_CHECKING:
    from minimax_vl.processor import MiniMaxVL01Processor


class MultiModalProjector(nn.Module):
    """linear_1 -> GELU -> linear_2, with biases (SPEC_NOTES §5.2); randomly initialised before VL training."""

    def __init__(self, vision_hidden: int, text_hidden: int, bias: bool = True) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(vision_hidden, text_hidden, bias=bias)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(text_hidden, text_hidden, bias=bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(features)))


class MiniMaxVL01(nn.Module):
    def __init__(self, config: MiniMaxVL01Config, processor: "MiniMaxVL01Processor | None" = None) -> None:
        super().__init__()
        self.config = config
        on_meta = torch.empty(0).device.type == "meta"
        self.vision_tower = VisionTower(
            config.vision_config,
            vision_feature_layer=config.vision_feature_layer,
            vision_feature_select_strategy=config.vision_feature_select_strategy,
            device="meta" if on_meta else None,
        )
        text_hidden = config.text_config.hidden_size
        self.multi_modal_projector = MultiModalProjector(
            config.vision_config.hidden_size, text_hidden, bias=config.multimodal_projector_bias
        )
        # Learned separator after every row of the tiled feature map; LLaVA-NeXT-style 1/sqrt(C) init.
        self.image_newline = nn.Parameter(torch.randn(text_hidden) * text_hidden**-0.5)
        self.language_model = MiniMaxText01ForCausalLM(config.text_config)
        self.processor = processor
        # Sharded training (FSDP, ZeRO-3) gathers each module's weights when it runs, so every process must run
        # the same modules: with this set, a text-only batch still sends one blank tile through the vision tower
        # and projector, with zero weight in the result. training.distributed sets it; inference never needs it.
        self.run_vision_without_images = False

    def set_activation_checkpointing(self, enabled: bool = True) -> None:
        """Recompute each decoder layer and each ViT block in the backward pass instead of keeping their
        activations (training only; outputs and gradients are unchanged)."""
        self.language_model.model.activation_checkpointing = enabled
        self.vision_tower.set_grad_checkpointing(enabled)

    # ------------------------------------------------------------------ images -> token embeddings
    def encode_images(
        self, pixel_values: Sequence[torch.Tensor], image_sizes: Sequence[Sequence[int]], mode: str | None = None
    ) -> list[torch.Tensor]:
        """Per image `[n_tiles, 3, t, t]` -> per image `[N_i, C_text]` packed image-token embeddings."""
        mode = mode or self.config.process_image_mode
        tiles_per_image = [int(p.shape[0]) for p in pixel_values]
        tiles = torch.cat(list(pixel_values)).to(self.image_newline.device)  # [sum n_i, 3, t, t]
        features = self.multi_modal_projector(self.vision_tower(tiles))  # [sum n_i, g^2, C]
        vision = self.config.vision_config
        return [
            pack_image_features(
                image_features, size, self.config.image_grid_pinpoints, vision.image_size, vision.patch_size,
                self.image_newline, mode=mode,
            )
            for image_features, size in zip(features.split(tiles_per_image), image_sizes)
        ]

    def _blank_image_sum(self) -> torch.Tensor:
        """The sum of one all-zero tile's projected features and image_newline (see `run_vision_without_images`)."""
        size = self.config.vision_config.image_size
        tile = torch.zeros(1, self.config.vision_config.num_channels, size, size, device=self.image_newline.device)
        return self.multi_modal_projector(self.vision_tower(tile)).sum() + self.image_newline.sum()

    def embed_inputs(
        self,
        input_ids: torch.Tensor,
        pixel_values: Sequence[torch.Tensor] | None = None,
        image_sizes: Sequence[Sequence[int]] | None = None,
        image_mode: str | None = None,
    ) -> torch.Tensor:
        """Token embeddings with image features scattered, in order, into the `<image>` positions."""
        embeds = self.language_model.model.embed_tokens(input_ids)  # [B, T, C]
        image_positions = input_ids == self.config.image_token_index
        expected = int(image_positions.sum())
        if pixel_values is None or len(pixel_values) == 0:
            if expected:
                raise ValueError(f"the prompt has {expected} image tokens but no pixel_values were given")
            if self.run_vision_without_images:
                return embeds + 0.0 * self._blank_image_sum()
            return embeds
        if image_sizes is None or len(image_sizes) != len(pixel_values):
            raise ValueError("pass image_sizes with one (height, width) per image, as the processor returns them")
        features = torch.cat(self.encode_images(pixel_values, image_sizes, image_mode))  # [sum N_i, C]
        if features.shape[0] != expected:
            raise ValueError(
                f"the prompt has {expected} image tokens but the images give {features.shape[0]} features; "
                "build inputs with MiniMaxVL01Processor, which expands each <image> to its exact token count"
            )
        return embeds.masked_scatter(image_positions.unsqueeze(-1), features.to(embeds.dtype))

    def forward(
        self,
        input_ids: torch.Tensor,
        pixel_values: Sequence[torch.Tensor] | None = None,
        image_sizes: Sequence[Sequence[int]] | None = None,
        *,
        image_mode: str | None = None,
        **text_kwargs: Any,
    ) -> CausalLMOutput:
        """`text_kwargs` go to MiniMaxText01ForCausalLM.forward (attention_mask, labels, cu_seqlens, cache, ...)."""
        inputs_embeds = self.embed_inputs(input_ids, pixel_values, image_sizes, image_mode)
        return self.language_model(inputs_embeds=inputs_embeds, **text_kwargs)

    # ------------------------------------------------------------------ construction and checkpoints
    @classmethod
    def from_preset(cls, name: str, seed: int = 0, **config_overrides: Any) -> "MiniMaxVL01":
        """A randomly initialised model with its processor (the shipped small tokenizer for small presets)."""
        from minimax_vl.processor import MiniMaxVL01Processor

        config = MiniMaxVL01Config.from_preset(name, **config_overrides)
        torch.manual_seed(seed)
        return cls(config, processor=MiniMaxVL01Processor.for_config(config)).eval()

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: torch.dtype | None = None, device=None) -> "MiniMaxVL01":
        from minimax_vl.weights import load_vl_model

        return load_vl_model(cls, Path(path), dtype=dtype, device=device)

    def save_pretrained(self, path: str | Path, max_shard_size: int | str = "5GB") -> None:
        from minimax_vl.weights import save_vl_model

        save_vl_model(self, Path(path), max_shard_size=max_shard_size)

    # ------------------------------------------------------------------ generation
    def prefill(self, image=None, **kwargs):
        """Encodes the conversation up to the question (system turn, user turn start, image) for reuse."""
        from minimax_vl.engine import vl_prefill

        return vl_prefill(self, image, **kwargs)

    @torch.no_grad()
    def generate(self, image=None, prompt: str | None = None, **kwargs):
        """`generate(image, prompt, max_new_tokens=..., **sampling) -> str`: the short answer. A model that reads
        first (the demo model) writes the image's transcription, then "Answer: ..."; `show_reading=True` returns
        that whole reply. Also `generate(prefix_state, prompt)` to reuse an encoded image, and
        `generate(input_ids=..., pixel_values=..., image_sizes=...)` -> token ids."""
        from minimax_vl.engine import vl_generate

        return vl_generate(self, image, prompt, **kwargs)

    def stream(self, image=None, prompt: str | None = None, **kwargs) -> Iterator[str]:
        """Like generate, yielding the answer in text pieces as they are decided (`show_reading=True`: the whole
        reply, transcription first)."""
        from minimax_vl.engine import vl_stream

        return vl_stream(self, image, prompt, **kwargs)


def parameter_counts(model: MiniMaxVL01) -> dict[str, int]:
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    return {
        "vision_tower": count(model.vision_tower),
        "multi_modal_projector": count(model.multi_modal_projector),
        "image_newline": model.image_newline.numel(),
        "language_model": count(model.language_model),
        "total": count(model),
    }
