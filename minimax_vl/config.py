"""MiniMaxVL01Config: vision tower + projector + text backbone, in the released `config.json` schema (SPEC_NOTES §5.6).

    cfg = MiniMaxVL01Config.from_preset("tiny")            # test-sized, random weights, CPU
    cfg = MiniMaxVL01Config.from_preset("minimax-vl-01")   # the released model (build it on the meta device)
    cfg = MiniMaxVL01Config.load("path/to/checkpoint")     # reads config.json
    cfg = MiniMaxVL01Config.from_preset("demo").with_vision(image_size=112, patch_size=14, max_tiles_per_side=3)
"""
from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from text_backbone.config import MiniMaxText01Config, deepnorm_alpha
from vision.anyres import default_grid_pinpoints, scale_grid_pinpoints
from vision.config import VisionConfig


def _released_grid_pinpoints() -> list[list[int]]:
    return [list(p) for p in default_grid_pinpoints()]


@dataclass
class MiniMaxVL01Config:
    vision_config: VisionConfig = field(default_factory=VisionConfig)
    text_config: MiniMaxText01Config = field(default_factory=MiniMaxText01Config)
    image_token_index: int = 200025
    projector_hidden_act: str = "gelu"
    multimodal_projector_bias: bool = True
    vision_feature_layer: int = -1
    vision_feature_select_strategy: str = "default"
    image_grid_pinpoints: list[list[int]] = field(default_factory=_released_grid_pinpoints)
    # "anyres": tiles + thumbnail (stage II onwards); "fixed": one tile-sized resize (stage I alignment).
    process_image_mode: str = "anyres"
    ignore_index: int = -100  # a field of the released config.json, kept so it round-trips; losses use IGNORE_INDEX
    model_type: str = "minimax_vl_01"

    def __post_init__(self) -> None:
        if isinstance(self.vision_config, dict):
            self.vision_config = VisionConfig.from_dict(self.vision_config)
        if isinstance(self.text_config, dict):
            self.text_config = MiniMaxText01Config.from_dict(self.text_config)
        problems = []
        if self.projector_hidden_act != "gelu":
            problems.append(f"projector_hidden_act {self.projector_hidden_act!r} is not supported; the released model uses 'gelu'")
        if self.vision_feature_select_strategy not in ("default", "full"):
            problems.append(f"vision_feature_select_strategy must be 'default' (drop CLS) or 'full', got "
                            f"{self.vision_feature_select_strategy!r}")
        depth = self.vision_config.num_hidden_layers
        if not -depth <= self.vision_feature_layer <= depth or self.vision_feature_layer == 0:
            problems.append(f"vision_feature_layer must index a block output (1..{depth} or -{depth}..-1), "
                            f"got {self.vision_feature_layer}")
        if not 0 <= self.image_token_index < self.text_config.vocab_size:
            problems.append(f"image_token_index {self.image_token_index} is outside the vocabulary "
                            f"(size {self.text_config.vocab_size})")
        if self.process_image_mode not in ("anyres", "fixed"):
            problems.append(f"process_image_mode must be 'anyres' or 'fixed', got {self.process_image_mode!r}")
        tile = self.vision_config.image_size
        self.image_grid_pinpoints = [list(map(int, p)) for p in self.image_grid_pinpoints]
        bad = [p for p in self.image_grid_pinpoints if len(p) != 2 or p[0] % tile or p[1] % tile or min(p) <= 0]
        if bad or not self.image_grid_pinpoints:
            problems.append(f"image_grid_pinpoints must be non-empty [h, w] multiples of the tile size {tile}; bad: {bad}")
        if problems:
            raise ValueError("invalid MiniMaxVL01Config: " + "; ".join(problems))

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "MiniMaxVL01Config":
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        values = PRESETS[name]()
        values.update(overrides)
        return cls(**values)

    def with_vision(self, *, max_tiles_per_side: int | None = None, **vision_fields: Any) -> "MiniMaxVL01Config":
        """A copy with some `VisionConfig` fields replaced, and the anyres grid kept consistent with them.

            MiniMaxVL01Config.from_preset("demo").with_vision(image_size=112, patch_size=14)

        `image_size` is the tile size (and `patch_size` the ViT's patch), so the grid pinpoints, which are
        multiples of the tile, follow it: with `max_tiles_per_side` they are rebuilt as every grid of up to
        that many tiles per side (`default_grid_pinpoints`, at most side^2 tiles); without it the same tile
        grids are kept at the new tile size. The language model and every other field are unchanged (copied).
        """
        known = {f.name for f in dataclasses.fields(VisionConfig)}
        unknown = sorted(set(vision_fields) - known)
        if unknown:
            raise ValueError(f"with_vision: {unknown} are not VisionConfig fields; known fields: {sorted(known)}")
        vision = dataclasses.replace(self.vision_config, **vision_fields)
        tile = vision.image_size
        if max_tiles_per_side is not None:
            if max_tiles_per_side < 1:
                raise ValueError(f"max_tiles_per_side must be at least 1, got {max_tiles_per_side}")
            grid = default_grid_pinpoints(tile, max_tiles=max_tiles_per_side**2, max_tiles_per_side=max_tiles_per_side)
        else:
            grid = scale_grid_pinpoints(self.image_grid_pinpoints, self.vision_config.image_size, tile)
        return dataclasses.replace(self, vision_config=vision, text_config=copy.deepcopy(self.text_config),
                                   image_grid_pinpoints=[list(p) for p in grid])

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["vision_config"] = self.vision_config.to_dict()
        out["text_config"] = self.text_config.to_dict()
        out["architectures"] = ["MiniMaxVL01ForConditionalGeneration"]
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "MiniMaxVL01Config":
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        if "text_config" not in values or "vision_config" not in values:
            raise ValueError("a MiniMax-VL-01 config.json needs both 'text_config' and 'vision_config'")
        values["model_type"] = "minimax_vl_01"
        return cls(**values)

    def save(self, path: str | Path) -> None:
        from text_backbone.weights_io import write_json

        write_json(Path(path), self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "MiniMaxVL01Config":
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        if not path.exists():
            raise FileNotFoundError(f"no config.json at {path}: a MiniMax-VL-01 checkpoint folder needs one")
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON ({err})") from None
        return cls.from_dict(raw)


def _tiny() -> dict[str, Any]:
    vision = VisionConfig.from_preset("tiny")
    text = MiniMaxText01Config.from_preset("tiny", vocab_size=4096)
    return dict(vision_config=vision, text_config=text, image_token_index=_shipped_image_token_id(),
                image_grid_pinpoints=[list(p) for p in default_grid_pinpoints(vision.image_size, max_tiles=6, max_tiles_per_side=3)])


def _demo(tile: int = 96, patch: int = 16, vision_width: int = 192, vision_depth: int = 4, text_width: int = 256,
          attn_types: tuple[int, ...] = (0, 1, 0, 1), experts: int = 4, expert_width: int = 512) -> dict[str, Any]:
    """The CPU-trained demo model (`minimax_vl.DEMO_MODEL`), chosen with `benchmarks/demo_preset.py`.

    Same machinery as the released model at a small scale: a 4-block ViT tiling 96-px tiles (6x6 patches of
    16 px), up to 2x2 tiles plus the thumbnail, so a 192-px chart is read at 192 px (192 image tokens with the
    row separators); a 4-layer 256-wide decoder alternating lightning and softmax attention (1:1 instead of 7:1:
    with 4 layers, 7:1 would have no softmax layer, and looking up a named label needs exact retrieval), 4 experts
    top-2, DeepNorm post-norm.
    """
    vision = VisionConfig(image_size=tile, patch_size=patch, hidden_size=vision_width, num_hidden_layers=vision_depth,
                          num_attention_heads=vision_width // 64, intermediate_size=4 * vision_width)
    layers = len(attn_types)
    alpha = deepnorm_alpha(layers)
    text = MiniMaxText01Config(
        vocab_size=3072, hidden_size=text_width, num_hidden_layers=layers, num_attention_heads=text_width // 64,
        num_key_value_heads=max(1, text_width // 128), head_dim=64, intermediate_size=expert_width,
        num_local_experts=experts, num_experts_per_tok=2, attn_type_list=list(attn_types), rotary_dim=32,
        block_size=64, max_position_embeddings=4096, layernorm_full_attention_alpha=alpha,
        layernorm_linear_attention_alpha=alpha, layernorm_mlp_alpha=alpha)
    return dict(vision_config=vision, text_config=text, image_token_index=_shipped_image_token_id(),
                image_grid_pinpoints=[list(p) for p in default_grid_pinpoints(tile, max_tiles=4, max_tiles_per_side=2)])


def _released() -> dict[str, Any]:
    text = MiniMaxText01Config.from_preset("minimax-text-01", max_position_embeddings=8192)
    return dict(vision_config=VisionConfig.from_preset("vit-303m"), text_config=text)


def _shipped_image_token_id() -> int:
    """Id of `<image>` in the small tokenizer shipped for the small presets."""
    from minimax_vl.tokenizer import shipped_tokenizer

    return shipped_tokenizer().image_token_id


PRESETS = {"tiny": _tiny, "demo": _demo, "minimax-vl-01": _released}
