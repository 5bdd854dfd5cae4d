"""Save and load MiniMaxVL01 in the released checkpoint layout (SPEC_NOTES §6.1).

    language_model.model.* / language_model.lm_head.weight    the text backbone, released names
    vision_tower.vision_model.*                                CLIP names (our tower is a timm ViT: converted)
    multi_modal_projector.linear_{1,2}.{weight,bias}
    image_newline

Beside the weights: config.json, generation_config.json and the processor files (tokenizer.json,
tokenizer_config.json with the chat template, preprocessor_config.json), so a saved folder is what the
released remote code and vLLM expect.

Loading builds the model on the meta device and streams the text tensors into it one at a time; the vision
tower (0.3 B parameters at full size) is read as one small state dict and converted from CLIP names.
"""
from __future__ import annotations

from pathlib import Path

import torch

from minimax_vl.config import MiniMaxVL01Config
from text_backbone.convert import TRANSFORMERS_DERIVED_BUFFERS
from text_backbone.weights_io import Drop, KeyMap, Rename, load_into_module, load_state_dict, save_safetensors
from vision.convert import VisionCheckpointError, released_to_timm, timm_to_released

VISION_PREFIX = "vision_tower."


def released_state_dict(model) -> dict[str, torch.Tensor]:
    """The model's weights under released names (vision tower converted from timm to CLIP names)."""
    state = model.state_dict()
    vision = {k[len(VISION_PREFIX):]: v for k, v in state.items() if k.startswith(VISION_PREFIX)}
    out = {k: v for k, v in state.items() if not k.startswith(VISION_PREFIX)}
    out.update({VISION_PREFIX + k: v for k, v in timm_to_released(vision, model.config.vision_config).items()})
    return out


def save_vl_model(model, path: Path, *, max_shard_size: int | str = "5GB") -> None:
    path.mkdir(parents=True, exist_ok=True)
    save_safetensors(released_state_dict(model), path, max_shard_size=max_shard_size, metadata={"format": "pt"})
    model.config.save(path / "config.json")
    if model.processor is not None:
        model.processor.save_pretrained(path)
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None:
        generation_config.save(path)


def _non_vision_rules() -> KeyMap:
    drop_buffers = [Drop(f"language_model.model.layers.{{layer}}.self_attn.{b}") for b in TRANSFORMERS_DERIVED_BUFFERS]
    return KeyMap((Drop(VISION_PREFIX + "{rest}"), *drop_buffers))


HALF_DTYPES = (torch.float16, torch.bfloat16)


def load_vl_model(cls, path: Path, *, dtype: torch.dtype | None = None, device=None):
    from minimax_vl.processor import MiniMaxVL01Processor

    config = MiniMaxVL01Config.load(path)
    device = torch.device(device or "cpu")
    with torch.device("meta"):
        model = cls(config)
    # 1. Everything but the vision tower, streamed tensor by tensor.
    load_into_module(model, path, key_map=_non_vision_rules(), dtype=dtype, device=device,
                     allow_missing=[VISION_PREFIX + "*"])
    # 2. The vision tower: read its tensors only (every other key is dropped unread), convert, assign.
    vision_only = KeyMap((Rename(VISION_PREFIX + "{rest}", "{rest}"), Drop("language_model.{rest}"),
                          Drop("multi_modal_projector.{rest}"), Drop("image_newline")))
    released = load_state_dict(path, key_map=vision_only, device=device)
    try:
        timm_state = released_to_timm(released, config.vision_config)
    except VisionCheckpointError as err:  # its names lack the prefix: say where they came from
        raise VisionCheckpointError(f"checkpoint {path}: the vision tower's tensors (keys under "
                                    f"'{VISION_PREFIX}') do not fit: {err}") from None
    if dtype is not None:
        timm_state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in timm_state.items()}
    model.vision_tower.load_state_dict(timm_state, strict=True, assign=True)
    if dtype is None and device.type == "cpu" and any(p.dtype in HALF_DTYPES for p in model.parameters()):
        # Half-precision checkpoints (the shipped demo model is stored in fp16 to stay small) compute in fp32
        # on CPUs: half matmuls there are several times slower (../shared/FINDINGS.md). Pass dtype= to keep them.
        model.float()
    if (path / "tokenizer.json").exists() and (path / "preprocessor_config.json").exists():
        model.processor = MiniMaxVL01Processor.from_pretrained(path)
    if (path / "generation_config.json").exists():
        from text_backbone.generation import GenerationConfig

        model.generation_config = GenerationConfig.load(path)
    return model.eval()
