"""MiniMax-VL-01's vision side: the CLIP-style ViT (timm), its weight names, and dynamic-resolution images.

    config = VisionConfig.from_preset("vit-303m")        # or "tiny", "vit-small-cpu", "vit-medium-cpu"
    tower = VisionTower(config)                           # [N, 3, S, S] tiles -> [N, (S/p)^2, C] features
    processor = ImageProcessor.for_vision_config(config)  # images -> tiles + LLM token counts
    batch = processor(["photo.jpg"])
    features = tower(batch["pixel_values"][0])            # projector, then anyres.pack_image_features

Never imports `text_backbone` or `minimax_vl`; `minimax_vl` composes this package with the text model.
"""
from .anyres import (
    MINIMAX_VL_01_GRID_PINPOINTS,
    anyres_grid_shape,
    default_grid_pinpoints,
    num_image_tokens,
    num_tiles,
    pack_image_features,
    scale_grid_pinpoints,
    select_best_resolution,
    unpad,
)
from .config import PRESETS, VisionConfig
from .convert import VisionCheckpointError, released_to_timm, timm_to_released
from .image_io import DEFAULT_MAX_PIXELS, ImageLoadError, load_image
from .image_processing import CLIP_MEAN, CLIP_STD, ImageProcessor
from .vit import VisionTower

__all__ = [
    "CLIP_MEAN", "CLIP_STD", "DEFAULT_MAX_PIXELS", "MINIMAX_VL_01_GRID_PINPOINTS", "PRESETS",
    "ImageLoadError", "ImageProcessor", "VisionCheckpointError", "VisionConfig", "VisionTower",
    "anyres_grid_shape", "default_grid_pinpoints", "load_image", "num_image_tokens", "num_tiles",
    "pack_image_features", "released_to_timm", "scale_grid_pinpoints", "select_best_resolution",
    "timm_to_released", "unpad",
]
