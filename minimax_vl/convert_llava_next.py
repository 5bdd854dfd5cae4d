"""transformers' LLaVA-NeXT (CLIP vision tower + transformers' `minimax` text model) -> MiniMaxVL01.

    import transformers
    from minimax_vl.convert_llava_next import from_llava_next
    theirs = transformers.LlavaNextForConditionalGeneration(llava_next_config)   # or .from_pretrained(...)
    ours = from_llava_next(theirs)                                                # same weights, our modules

MiniMax-VL-01 is LLaVA-NeXT's architecture with a MiniMax-Text-01 language model (SPEC_NOTES §5), so a
`LlavaNextForConditionalGeneration` whose `text_config` is a `MiniMaxConfig` and whose `vision_config` is a
`CLIPVisionConfig` is the same network; this module moves its weights and settings into ours.

Key layout (read from an instantiated transformers 5.24 model, not guessed) -> our module names:

    model.language_model.embed_tokens.weight        -> language_model.model.embed_tokens.weight
    model.language_model.norm.weight                -> language_model.model.norm.weight
    model.language_model.layers.{i}.*               -> language_model.model.layers.{i}.*   (text_backbone.convert
                                                       rules: fused experts unfused, mlp -> block_sparse_moe,
                                                       derived lightning decay buffers dropped)
    lm_head.weight                                  -> language_model.lm_head.weight
    model.multi_modal_projector.*                   -> multi_modal_projector.*
    model.image_newline                             -> image_newline
    model.vision_tower.*  (CLIP, no `vision_model.`) -> vision_tower.*  (timm, via vision.convert.released_to_timm;
                                                       `post_layernorm` is skipped: it is not on the feature path)

Settings: the text config is read by `MiniMaxText01Config.from_dict` (which understands transformers' schema;
a config without a partial-rotary field rotates the whole head, so `rotary_dim = head_dim`), the vision
config by `VisionConfig.from_dict`, and the LLaVA-NeXT fields map one to one. Things our model cannot express
(several feature layers, a non-CLIP tower, a non-MiniMax text model) are refused with a clear error.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from minimax_vl.config import MiniMaxVL01Config
from text_backbone.config import MiniMaxText01Config
from text_backbone.convert import transformers_to_released
from text_backbone.weights_io import KeyMap, Rename, convert_state_dict
from vision.config import VisionConfig
from vision.convert import released_to_timm

HF_VISION_PREFIX = "model.vision_tower."
HF_TEXT_PREFIX = "model.language_model."
RELEASED_VISION_PREFIX = "vision_model."  # released CLIP names, as `vision.convert` takes them
OUR_VISION_PREFIX = "vision_tower."


class LlavaNextConversionError(ValueError):
    """The transformers model or state dict is not a LLaVA-NeXT that MiniMaxVL01 can represent."""


def _as_dict(config: Any) -> dict[str, Any]:
    return config.to_dict() if hasattr(config, "to_dict") else dict(config)


def config_from_llava_next(hf_config: Any) -> MiniMaxVL01Config:
    """A `LlavaNextConfig` (object or dict) -> `MiniMaxVL01Config` with the same settings."""
    raw = _as_dict(hf_config)
    text, vision = _as_dict(raw.get("text_config") or {}), _as_dict(raw.get("vision_config") or {})
    if text.get("model_type") != "minimax":
        raise LlavaNextConversionError(
            f"the LLaVA-NeXT text model is {text.get('model_type')!r}; only transformers' 'minimax' "
            "(MiniMax-Text-01) converts to MiniMaxVL01"
        )
    if vision.get("model_type") != "clip_vision_model":
        raise LlavaNextConversionError(
            f"the LLaVA-NeXT vision tower is {vision.get('model_type')!r}; only 'clip_vision_model' converts"
        )
    feature_layer = raw.get("vision_feature_layer", -2)
    if not isinstance(feature_layer, int):
        raise LlavaNextConversionError(
            f"vision_feature_layer={feature_layer!r} concatenates several layers; MiniMaxVL01 takes one layer"
        )
    image_token = raw.get("image_token_index", raw.get("image_token_id"))
    return MiniMaxVL01Config(
        vision_config=VisionConfig.from_dict(vision),
        text_config=MiniMaxText01Config.from_dict(text),
        image_token_index=int(image_token),
        projector_hidden_act=raw.get("projector_hidden_act", "gelu"),
        multimodal_projector_bias=bool(raw.get("multimodal_projector_bias", True)),
        vision_feature_layer=feature_layer,
        vision_feature_select_strategy=raw.get("vision_feature_select_strategy", "default"),
        image_grid_pinpoints=[list(p) for p in raw["image_grid_pinpoints"]],
        process_image_mode="anyres",
    )


def llava_next_key_map() -> KeyMap:
    """Rules from a LlavaNextForConditionalGeneration state dict to our names, vision keys as released CLIP
    names under `vision_tower.` (the caller converts those to timm)."""
    text_layers = transformers_to_released(source_prefix=HF_TEXT_PREFIX, target_prefix="language_model.model.")
    return KeyMap((
        Rename(HF_TEXT_PREFIX + "embed_tokens.weight", "language_model.model.embed_tokens.weight"),
        Rename(HF_TEXT_PREFIX + "norm.weight", "language_model.model.norm.weight"),
        Rename("lm_head.weight", "language_model.lm_head.weight"),
        Rename("model.multi_modal_projector.{rest}", "multi_modal_projector.{rest}"),
        Rename("model.image_newline", "image_newline"),
        Rename(HF_VISION_PREFIX + "{rest}", OUR_VISION_PREFIX + RELEASED_VISION_PREFIX + "{rest}"),
    )) + text_layers


def convert_llava_next_state_dict(state_dict: Mapping[str, torch.Tensor], config: MiniMaxVL01Config
                                  ) -> dict[str, torch.Tensor]:
    """LLaVA-NeXT state dict -> a state dict for `MiniMaxVL01(config)` (timm names for the vision tower)."""
    converted = convert_state_dict(state_dict, llava_next_key_map())
    vision_released = {k[len(OUR_VISION_PREFIX):]: v for k, v in converted.items() if k.startswith(OUR_VISION_PREFIX)}
    out = {k: v for k, v in converted.items() if not k.startswith(OUR_VISION_PREFIX)}
    vision_timm = released_to_timm(vision_released, config.vision_config)
    out.update({OUR_VISION_PREFIX + k: v for k, v in vision_timm.items()})
    return out


def from_llava_next(model_or_state_dict: Any, hf_config: Any | None = None, *, processor=None):
    """A `MiniMaxVL01` with the weights of a transformers `LlavaNextForConditionalGeneration`.

    Pass the model itself, or its state dict together with its config. Every key must be used and every
    parameter filled: missing, unexpected and mis-shaped keys are reported together. The result is in eval
    mode, on CPU, with `processor` attached (None: set one before `generate`). Parameters take the source's
    floating-point dtype; derived buffers (lightning decay rates, RoPE tables) stay float32.
    """
    from minimax_vl.model import MiniMaxVL01

    if isinstance(model_or_state_dict, torch.nn.Module):
        hf_config = model_or_state_dict.config if hf_config is None else hf_config
        state_dict = model_or_state_dict.state_dict()
    else:
        if hf_config is None:
            raise LlavaNextConversionError("a state dict needs its LlavaNextConfig: pass hf_config")
        state_dict = model_or_state_dict
    config = config_from_llava_next(hf_config)
    ours = convert_llava_next_state_dict(state_dict, config)
    model = MiniMaxVL01(config, processor=processor)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(ours))
    unexpected = sorted(set(ours) - set(expected))
    misshaped = [f"{k}: source {tuple(ours[k].shape)}, model {tuple(expected[k].shape)}"
                 for k in sorted(set(ours) & set(expected)) if ours[k].shape != expected[k].shape]
    if missing or unexpected or misshaped:
        lines = ["the LLaVA-NeXT weights do not match the converted MiniMaxVL01 config:"]
        if missing:
            lines.append(f"  missing ({len(missing)}): " + ", ".join(missing))
        if unexpected:
            lines.append(f"  unexpected ({len(unexpected)}): " + ", ".join(unexpected))
        lines += [f"  mis-shaped {m}" for m in misshaped]
        lines.append("pass a LlavaNextForConditionalGeneration (with lm_head) whose text model is transformers' "
                     "MiniMax and whose vision tower is CLIP")
        raise LlavaNextConversionError("\n".join(lines))
    model.load_state_dict(ours, strict=True)
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.data = param.data.to(ours[name].dtype)
    return model.eval()
