"""`VisionConfig`: the ViT's hyper-parameters, in the released `clip_vision_model` schema.

MiniMax-VL-01's vision tower is a CLIP-style ViT-L/14 at 336 px with exact GELU (SPEC_NOTES §5.1). The field
names are those of the released `config.json` `vision_config` block, so `from_dict(released["vision_config"])`
reads it directly and `to_dict()` writes it back. Feature selection (`vision_feature_layer`,
`vision_feature_select_strategy`) is a top-level field of the VL config in the released schema, so it is not
here: `VisionTower` takes it as constructor arguments.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

MODEL_TYPE = "clip_vision_model"
SUPPORTED_ACTIVATIONS = ("gelu", "quick_gelu")


@dataclass(frozen=True)
class VisionConfig:
    """Hyper-parameters of the CLIP-style ViT. Defaults are the released MiniMax-VL-01 values (`vit-303m`).

    `image_size` is also the tile size of dynamic-resolution processing: small presets tile at their own size.
    """

    image_size: int = 336
    patch_size: int = 14
    hidden_size: int = 1024
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    intermediate_size: int = 4096
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-5
    num_channels: int = 3
    attention_dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("image_size", "patch_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "num_channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"VisionConfig.{name} must be a positive integer, got {value!r}")
        if self.image_size % self.patch_size:
            raise ValueError(
                f"VisionConfig.image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size}); "
                "pick an image size that the patches tile exactly"
            )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"VisionConfig.hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads})"
            )
        if self.hidden_act not in SUPPORTED_ACTIVATIONS:
            raise ValueError(
                f"VisionConfig.hidden_act {self.hidden_act!r} is not supported; use one of {SUPPORTED_ACTIVATIONS} "
                "('gelu' is MiniMax-VL-01's exact GELU, 'quick_gelu' is OpenAI CLIP's)"
            )
        if not self.layer_norm_eps > 0:
            raise ValueError(f"VisionConfig.layer_norm_eps must be > 0, got {self.layer_norm_eps!r}")
        if not 0.0 <= self.attention_dropout < 1.0:
            raise ValueError(f"VisionConfig.attention_dropout must be in [0, 1), got {self.attention_dropout!r}")

    # Derived sizes -------------------------------------------------------------------------------------------
    @property
    def grid_size(self) -> int:
        """Patches per side of one tile (24 for 336/14)."""
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        """Patch tokens per tile (576 for 336/14): the per-tile feature count after dropping CLS."""
        return self.grid_size**2

    @property
    def num_positions(self) -> int:
        """Rows of the learned position table: CLS + patches (577 for 336/14)."""
        return self.num_patches + 1

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    # Serialisation -------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The released `vision_config` schema (with `model_type`), JSON-ready."""
        return {"model_type": MODEL_TYPE, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "VisionConfig":
        """Reads a `clip_vision_model` dict (e.g. the released `config.json["vision_config"]`).

        Fields that do not shape the tower are ignored: `projection_dim` (the CLIP projection head has no
        weights in the checkpoint), initialiser settings, and transformers bookkeeping (`architectures`,
        `torch_dtype`, ...). A different `model_type` is an error, since its weights would not map.
        """
        model_type = data.get("model_type", MODEL_TYPE)
        if model_type != MODEL_TYPE:
            raise ValueError(
                f"vision_config has model_type {model_type!r}; only {MODEL_TYPE!r} (a CLIP ViT) is supported"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def from_preset(cls, name: str) -> "VisionConfig":
        """A named configuration; see `PRESETS` for the list."""
        if name not in PRESETS:
            raise KeyError(f"unknown vision preset {name!r}; available: {sorted(PRESETS)}")
        return PRESETS[name]


PRESETS: dict[str, VisionConfig] = {
    # The released MiniMax-VL-01 ViT (SPEC_NOTES §5.1): 303.5 M parameters without post-LN.
    "vit-303m": VisionConfig(),
    # Test-sized: 4x4 patches per 56-px tile, fast enough for parity tests.
    "tiny": VisionConfig(image_size=56, patch_size=14, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=128),
    # CPU-trainable (FINDINGS: ~5 M-parameter VLMs train at ~19 images/s with this tower): 10x10 patches per tile.
    "vit-small-cpu": VisionConfig(image_size=160, patch_size=16, hidden_size=192, num_hidden_layers=4,
                                  num_attention_heads=3, intermediate_size=768),
    # A step up for longer CPU runs: 14x14 patches per 224-px tile.
    "vit-medium-cpu": VisionConfig(image_size=224, patch_size=16, hidden_size=256, num_hidden_layers=6,
                                   num_attention_heads=4, intermediate_size=1024),
}
