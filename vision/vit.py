"""`VisionTower`: MiniMax-VL-01's CLIP-style ViT, built from timm's `VisionTransformer`.

Shapes: pixel_values `[N, 3, S, S]` (one row per tile), features `[N, P, C]` with P = (S/p)^2 patch tokens
(P + 1 with the CLS token under strategy "full"), C = hidden_size.

CLIP's ViT is timm's ViT with a few switches (SPEC_NOTES §5.1): a class token and a learned absolute position table
over 1 + (S/p)^2 positions, a bias-free conv patch embedding, a LayerNorm before the blocks (CLIP's
`pre_layrnorm`, timm's `norm_pre`), qkv with bias, and the activation of the released config (exact GELU).
The feature path stops at an encoder layer's output: CLIP's `post_layernorm` only feeds the pooled CLS
embedding, which the VLM never uses, so the tower has no final norm at all (and no classifier head).

The module *is* the timm model (a subclass), so its state-dict names are timm's and timm's tooling
(`set_grad_checkpointing`, `no_weight_decay`, `group_matcher`) applies unchanged; `forward` is replaced by the
feature path. `vision/convert.py` maps these names to and from the released CLIP names.
"""
from __future__ import annotations

from functools import partial
from typing import Mapping

import torch
from timm.layers import QuickGELU
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from .config import VisionConfig

SELECT_STRATEGIES = ("default", "full")
_ACTIVATIONS = {"gelu": nn.GELU, "quick_gelu": QuickGELU}


def feature_block_index(vision_feature_layer: int, num_hidden_layers: int) -> int:
    """Index of the block whose output is CLIP's `hidden_states[vision_feature_layer]`.

    CLIP's `hidden_states` has `num_hidden_layers + 1` entries: entry 0 is the embedding output (after
    pre-LN), entry k is the output of block k-1. So -1 -> the last block, -2 -> the one before it.
    """
    n_states = num_hidden_layers + 1
    index = vision_feature_layer + n_states if vision_feature_layer < 0 else vision_feature_layer
    if not 1 <= index < n_states:
        raise ValueError(
            f"vision_feature_layer={vision_feature_layer} does not select an encoder layer of a "
            f"{num_hidden_layers}-layer ViT; use 1..{num_hidden_layers} or -{num_hidden_layers}..-1 "
            "(the embedding output, hidden_states[0], is not supported)"
        )
    return index - 1


class VisionTower(VisionTransformer):
    """CLIP ViT features for a batch of tiles: `forward([N, 3, S, S]) -> [N, (S/p)^2, C]`.

    Args:
        config: the tower's hyper-parameters.
        vision_feature_layer: which CLIP hidden state to return (released: -1, the last block's output).
        vision_feature_select_strategy: "default" drops the CLS token (released), "full" keeps it first.
        device, dtype: where to build the parameters. `device="meta"` builds without allocating or
            initialising anything (for loading big checkpoints); otherwise timm's ViT initialisation is used.
    """

    def __init__(
        self,
        config: VisionConfig,
        *,
        vision_feature_layer: int = -1,
        vision_feature_select_strategy: str = "default",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if vision_feature_select_strategy not in SELECT_STRATEGIES:
            raise ValueError(
                f"vision_feature_select_strategy {vision_feature_select_strategy!r} is not supported; "
                f"use one of {SELECT_STRATEGIES}"
            )
        block_index = feature_block_index(vision_feature_layer, config.num_hidden_layers)
        on_meta = torch.device(device).type == "meta" if device is not None else False
        super().__init__(
            img_size=config.image_size,
            patch_size=config.patch_size,
            in_chans=config.num_channels,
            num_classes=0,  # no head: the VLM's projector consumes the features
            global_pool="",
            embed_dim=config.hidden_size,
            depth=config.num_hidden_layers,
            num_heads=config.num_attention_heads,
            mlp_ratio=config.intermediate_size / config.hidden_size,
            qkv_bias=True,
            class_token=True,
            pos_embed="learn",
            no_embed_class=False,  # the position table has a row for CLS, as in CLIP
            pre_norm=True,  # CLIP's pre_layrnorm; timm also drops the patch-embed bias with it
            final_norm=False,  # CLIP's post_layernorm is never on the feature path
            attn_drop_rate=config.attention_dropout,
            norm_layer=partial(nn.LayerNorm, eps=config.layer_norm_eps),
            act_layer=_ACTIVATIONS[config.hidden_act],
            weight_init="skip" if on_meta else "",
            device=device,
            dtype=dtype,
        )
        mlp_width = self.blocks[0].mlp.fc1.out_features
        if mlp_width != config.intermediate_size:  # timm derives the MLP width from a float ratio
            raise ValueError(
                f"intermediate_size {config.intermediate_size} cannot be expressed as timm's mlp_ratio for "
                f"hidden_size {config.hidden_size} (got {mlp_width}); choose a multiple-friendly width"
            )
        self.config = config
        self.vision_feature_layer = vision_feature_layer
        self.vision_feature_select_strategy = vision_feature_select_strategy
        self._feature_block = block_index

    @property
    def num_features_per_tile(self) -> int:
        """Tokens per tile that `forward` returns: (S/p)^2, plus one for CLS under strategy "full"."""
        return self.config.num_patches + (self.vision_feature_select_strategy == "full")

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """`[N, 3, S, S]` normalised tiles -> `[N, P, C]` features of the selected layer (see class doc)."""
        self._check_pixel_values(pixel_values)
        pixel_values = pixel_values.to(self.patch_embed.proj.weight.dtype)
        # stop_early skips the blocks after the selected one (e.g. the last block for layer -2).
        [(patch_tokens, prefix_tokens)] = self.forward_intermediates(
            pixel_values,
            indices=[self._feature_block],
            return_prefix_tokens=True,
            norm=False,
            stop_early=True,
            output_fmt="NLC",
            intermediates_only=True,
        )  # [N, P, C], [N, 1, C]
        if self.vision_feature_select_strategy == "full":
            return torch.cat([prefix_tokens, patch_tokens], dim=1)  # [N, 1 + P, C]
        return patch_tokens

    def load_released_state_dict(self, state_dict: Mapping[str, torch.Tensor], *, assign: bool = False) -> None:
        """Loads CLIP-named weights (`vision_model.…`, no `vision_tower.` prefix); strict, see `convert.py`."""
        from .convert import released_to_timm

        self.load_state_dict(released_to_timm(state_dict, self.config), strict=True, assign=assign)

    def _check_pixel_values(self, pixel_values: torch.Tensor) -> None:
        size, channels = self.config.image_size, self.config.num_channels
        if pixel_values.ndim != 4 or pixel_values.shape[1:] != (channels, size, size):
            raise ValueError(
                f"VisionTower expects pixel_values of shape [N, {channels}, {size}, {size}] (tiles of the "
                f"config's image_size), got {tuple(pixel_values.shape)}; run images through the ImageProcessor "
                "with the same tile size first"
            )
        if not pixel_values.is_floating_point():
            raise TypeError(
                f"pixel_values must be a floating-point tensor of normalised pixels, got {pixel_values.dtype}"
            )
