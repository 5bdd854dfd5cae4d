"""Images -> normalised tiles for the ViT: MiniMax-VL-01's dynamic resolution and the fixed stage-I mode.

anyres (SPEC_NOTES §5.3), for a tile size t (336 released; small presets use their own `image_size`):
  1. pick the grid resolution (H, W) for the image's (h, w) (`anyres.select_best_resolution`);
  2. resize keeping the aspect ratio to fit (H, W) (bicubic), paste centred on a black H x W canvas;
  3. cut the canvas into t x t tiles, row-major;
  4. prepend a thumbnail: the whole image resized to t x t *without* keeping the aspect ratio;
  5. scale to [0, 1] and normalise with the CLIP mean / std.
fixed (stage I, SPEC_NOTES §7.2): only the thumbnail, one t x t tile.

Rounding follows the released processor: the resized side is floor(H * w / h) (or floor(W * h / w)) and the
paste offset floor((W - new_w) / 2). Where the released code would resize to zero pixels (aspect ratios
beyond ~1:2000, e.g. 1 x 10000) the side is kept at 1 pixel instead of failing. Such images keep no feature
row (wide) or column (tall) after unpadding, exactly as released: a wide one is its g^2 thumbnail tokens, a
tall one also gets a newline for each of its empty rows; `anyres.num_image_tokens` counts the same way.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from . import anyres
from .anyres import Size
from .config import VisionConfig
from .image_io import DEFAULT_MAX_PIXELS, ImageLike, load_image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_BICUBIC = Image.Resampling.BICUBIC
# Released `preprocessor_config.json` names the fixed mode "resize".
_RELEASED_MODE_NAMES = {"anyres": "anyres", "fixed": "resize"}


def resize_and_pad(image: Image.Image, target: Size) -> Image.Image:
    """Aspect-preserving bicubic resize to fit `target` (height, width), centred on a black canvas of that size."""
    target_h, target_w = target
    width, height = image.size
    if width * target_h > target_w * height:  # wider than the target: fill the width, pad top and bottom
        new_w, new_h = target_w, max(1, target_w * height // width)
    else:  # fill the height, pad left and right
        new_w, new_h = max(1, target_h * width // height), target_h
    canvas = Image.new("RGB", (target_w, target_h), (0, 0, 0))
    canvas.paste(image.resize((new_w, new_h), _BICUBIC), ((target_w - new_w) // 2, (target_h - new_h) // 2))
    return canvas


def cut_tiles(canvas: Image.Image, tile_size: int) -> np.ndarray:
    """An RGB canvas whose sides are multiples of the tile -> uint8 tiles `[rows*cols, 3, t, t]`, row-major."""
    pixels = np.asarray(canvas)  # [H, W, 3]
    rows, cols = pixels.shape[0] // tile_size, pixels.shape[1] // tile_size
    tiles = pixels.reshape(rows, tile_size, cols, tile_size, 3)  # [rows, t, cols, t, 3]
    return tiles.transpose(0, 2, 4, 1, 3).reshape(rows * cols, 3, tile_size, tile_size)  # [n, 3, t, t]


def thumbnail(image: Image.Image, tile_size: int) -> np.ndarray:
    """The whole image squashed to t x t (aspect ratio not kept, as released) -> uint8 `[1, 3, t, t]`."""
    pixels = np.asarray(image.resize((tile_size, tile_size), _BICUBIC))  # [t, t, 3]
    return pixels.transpose(2, 0, 1)[None]


def normalize(tiles: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 `[n, 3, t, t]` -> float32 (x / 255 - mean) / std, the same arithmetic as torchvision's
    ToTensor + Normalize."""
    pixels = torch.from_numpy(np.ascontiguousarray(tiles)).to(torch.float32).div(255)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return pixels.sub(mean_t).div(std_t)


@dataclass(frozen=True)
class ImageProcessor:
    """Turns images into ViT tiles and says how many LLM tokens each image becomes.

    `__call__(images)` returns {"pixel_values": [tensor [n_i, 3, t, t], ...], "image_sizes": [[h, w], ...],
    "num_image_tokens": [N_i, ...]}; tile i of image k is `pixel_values[k][i]`, the thumbnail first.
    `grid_pinpoints` are (height, width) pairs, each a multiple of `tile_size`; default: the released 28-entry
    grid at this tile size.
    """

    mode: str = "anyres"
    tile_size: int = anyres.RELEASED_TILE_SIZE
    patch_size: int = 14
    grid_pinpoints: tuple[Size, ...] | None = None
    image_mean: tuple[float, float, float] = CLIP_MEAN
    image_std: tuple[float, float, float] = CLIP_STD
    max_image_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        if self.mode not in anyres.MODES:
            raise ValueError(f"ImageProcessor mode {self.mode!r} is not supported; use one of {anyres.MODES}")
        if self.tile_size <= 0 or self.patch_size <= 0 or self.tile_size % self.patch_size:
            raise ValueError(
                f"tile_size ({self.tile_size}) must be a positive multiple of patch_size ({self.patch_size})"
            )
        pinpoints = (anyres.default_grid_pinpoints(self.tile_size) if self.grid_pinpoints is None
                     else anyres.validate_grid_pinpoints(self.grid_pinpoints, self.tile_size))
        for name in ("image_mean", "image_std"):
            values = tuple(float(v) for v in getattr(self, name))
            if len(values) != 3:
                raise ValueError(f"ImageProcessor.{name} needs 3 values (R, G, B), got {values}")
            object.__setattr__(self, name, values)
        if min(self.image_std) <= 0:
            raise ValueError(f"ImageProcessor.image_std must be positive, got {self.image_std}")
        object.__setattr__(self, "grid_pinpoints", tuple(pinpoints))

    @classmethod
    def for_vision_config(cls, config: VisionConfig, *, mode: str = "anyres", **overrides: Any) -> "ImageProcessor":
        """Tiles at the tower's own image size (`config.image_size`, `config.patch_size`), with the released
        grid shapes scaled to that tile size unless `grid_pinpoints` is given."""
        return cls(mode=mode, tile_size=config.image_size, patch_size=config.patch_size, **overrides)

    # Counting (pure; also used by the model side) ----------------------------------------------------------------
    def num_image_tokens(self, height: int, width: int) -> int:
        return anyres.num_image_tokens(height, width, tile_size=self.tile_size, patch_size=self.patch_size,
                                       grid_pinpoints=self.grid_pinpoints, mode=self.mode)

    def num_tiles(self, height: int, width: int) -> int:
        return anyres.num_tiles(height, width, tile_size=self.tile_size, grid_pinpoints=self.grid_pinpoints,
                                mode=self.mode)

    # Processing -------------------------------------------------------------------------------------------------
    def preprocess(self, image: ImageLike) -> tuple[torch.Tensor, Size]:
        """One image -> (normalised tiles `[n, 3, t, t]`, original (height, width))."""
        image = load_image(image, max_pixels=self.max_image_pixels)
        size = (image.height, image.width)
        tiles = [thumbnail(image, self.tile_size)]
        if self.mode == "anyres":
            target = anyres.select_best_resolution(size, self.grid_pinpoints)
            tiles.append(cut_tiles(resize_and_pad(image, target), self.tile_size))
        return normalize(np.concatenate(tiles), self.image_mean, self.image_std), size

    def __call__(self, images: ImageLike | Sequence[ImageLike]) -> dict[str, list]:
        """One image or a list of images (paths, bytes, PIL images, arrays) -> tiles, sizes and token counts."""
        if not isinstance(images, (list, tuple)):
            images = [images]
        pixel_values, image_sizes, token_counts = [], [], []
        for image in images:
            tiles, (height, width) = self.preprocess(image)
            pixel_values.append(tiles)
            image_sizes.append([height, width])
            token_counts.append(self.num_image_tokens(height, width))
        return {"pixel_values": pixel_values, "image_sizes": image_sizes, "num_image_tokens": token_counts}

    # Serialisation (released preprocessor_config.json names) --------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "process_image_mode": _RELEASED_MODE_NAMES[self.mode],
            "size": [self.tile_size, self.tile_size],
            "patch_size": self.patch_size,
            "image_grid_pinpoints": [list(p) for p in self.grid_pinpoints],
            "image_mean": list(self.image_mean),
            "image_std": list(self.image_std),
            "max_image_pixels": self.max_image_pixels,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ImageProcessor":
        """Reads a released-style `preprocessor_config.json` dict; keys it does not know are ignored.

        `process_image_mode` "anyres" or "resize"/"fixed"; `size` an int, [w, h], or {"height", "width"}
        (square only); pinpoints are read as (height, width), which for the symmetric released list is the same.
        """
        fields: dict[str, Any] = {}
        if "process_image_mode" in data:
            mode = data["process_image_mode"]
            names = {"anyres": "anyres", "resize": "fixed", "fixed": "fixed"}
            if mode not in names:
                raise ValueError(
                    f"process_image_mode {mode!r} is not supported; use 'anyres' or 'resize' (fixed 't x t')"
                )
            fields["mode"] = names[mode]
        if "size" in data:
            fields["tile_size"] = _square_size(data["size"])
        if "image_grid_pinpoints" in data:
            fields["grid_pinpoints"] = tuple(tuple(p) for p in data["image_grid_pinpoints"])
        for key in ("patch_size", "image_mean", "image_std", "max_image_pixels"):
            if key in data:
                fields[key] = data[key]
        return cls(**fields)

    def replace(self, **changes: Any) -> "ImageProcessor":
        """A copy with some settings changed (e.g. `mode="fixed"` for stage I). A new `tile_size` needs
        `grid_pinpoints=None` (the default grid at that size) or pinpoints scaled with `scale_grid_pinpoints`."""
        return dataclasses.replace(self, **changes)


def _square_size(size: Any) -> int:
    if isinstance(size, int):
        return size
    if isinstance(size, Mapping):
        if "height" in size and "width" in size:
            height, width = size["height"], size["width"]
        elif "shortest_edge" in size:
            height = width = size["shortest_edge"]
        else:
            raise ValueError(f"cannot read a tile size from size={dict(size)}; use {{'height': t, 'width': t}}")
    else:
        width, height = size
    if height != width:
        raise ValueError(f"only square tiles are supported, got size {size!r}")
    return int(height)
