"""`load_image`: anything image-like -> an upright 8-bit RGB `PIL.Image`, or one clear `ImageLoadError`.

Accepted inputs: a path (str / PathLike), encoded bytes, a `PIL.Image`, or a numpy array (channels last:
HxW gray, HxWx1, HxWx3 RGB, HxWx4 RGBA; dtype uint8, bool, or float with values in [0, 1]).

Rules, in order:
1. Size first, before any pixel is decoded: an image of more than `max_pixels` pixels (default 64 MP) is
   refused from its header alone (decompression bombs). Pillow's own bomb guard (2 x `Image.MAX_IMAGE_PIXELS`,
   about 179 MP) still applies above that; raise it too if you raise `max_pixels` beyond it.
2. Animated images (GIF, APNG, WebP): the first frame.
3. EXIF orientation is applied (a phone photo stored sideways comes out upright).
4. Modes -> RGB:
   * with transparency (RGBA, LA, PA, premultiplied RGBa/La, or P/L/RGB with a transparency entry):
     composited on white, since documents and charts with transparent backgrounds are meant to be seen on white;
   * 1, L, P: gray / palette expanded to RGB; CMYK, YCbCr and other colour modes: Pillow's `convert("RGB")`;
   * 16/32-bit integer and float modes (I;16*, I, F): stretched to 8 bits by the image's own range,
     value -> round(255 * (value - min) / (max - min)); a constant image becomes black; NaN/inf become 0.
     These are usually scientific or medical images whose meaningful range is their own, not the dtype's.
5. No minimum size: a 1x1 image is valid (the processor upscales it). Extreme aspect ratios (1x10000) load
   normally; see `image_processing` for how tiling treats them.

Truncated or corrupt files, non-image files, empty input, unsupported types and arrays all raise
`ImageLoadError` (a `ValueError`) whose message says what was wrong and what to do; Pillow's exception is
kept as `__cause__`.
"""
from __future__ import annotations

import io
import os
import warnings
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 64_000_000

ImageLike = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, Image.Image, np.ndarray]

_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_HIGH_DEPTH_PREFIXES = ("I", "F")  # I, I;16, I;16B, I;16L, I;16N, F


class ImageLoadError(ValueError):
    """An input could not be turned into an RGB image; the message says why and what to do."""


def load_image(source: ImageLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Returns a new, fully decoded, upright RGB image (see the module doc for the rules)."""
    if isinstance(source, Image.Image):
        return _finish(source, "the PIL image", max_pixels)
    if isinstance(source, np.ndarray):
        return _finish(_image_from_array(source), f"the {source.dtype} array", max_pixels)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageLoadError("the image input is empty (0 bytes); pass the encoded file contents")
        stream, what = io.BytesIO(bytes(source)), f"the {len(source)}-byte input"
    elif isinstance(source, (str, os.PathLike)):
        stream, what = os.fspath(source), f"file {os.fspath(source)!r}"
        _check_path(stream)
    else:
        raise ImageLoadError(
            f"cannot load an image from a {type(source).__name__}; pass a path, encoded bytes, a PIL image "
            "or a numpy array"
        )
    with _open_lazily(stream, what) as image:
        return _finish(image, what, max_pixels)


def _check_path(path: str) -> None:
    if not os.path.exists(path):
        raise ImageLoadError(f"no such image file: {path!r}; check the path")
    if os.path.isdir(path):
        raise ImageLoadError(f"{path!r} is a directory, not an image file")
    if os.path.getsize(path) == 0:
        raise ImageLoadError(f"image file {path!r} is empty (0 bytes); re-export or re-download it")


def _open_lazily(stream: str | io.BytesIO, what: str) -> Image.Image:
    """Reads the header only; pixels are decoded later by `load()`."""
    try:
        with warnings.catch_warnings():
            # Between 1x and 2x Pillow's limit Pillow only warns; our own `max_pixels` check decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(stream)
    except Image.DecompressionBombError as error:
        raise ImageLoadError(
            f"{what} is too large to decode safely ({error}); downscale it first"
        ) from error
    except UnidentifiedImageError as error:
        raise ImageLoadError(
            f"{what} is not a readable image: its format is not recognised, or the file is cut short or "
            "corrupt (or it is another kind of file with an image extension); check that it is a complete "
            "PNG, JPEG, GIF, WebP, BMP or TIFF file"
        ) from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageLoadError(
            f"cannot read {what}: {error}; the file is probably truncated or corrupt, re-export or re-download it"
        ) from error


def _finish(image: Image.Image, what: str, max_pixels: int) -> Image.Image:
    width, height = image.size
    if width == 0 or height == 0:
        raise ImageLoadError(f"{what} has no pixels (size {width}x{height})")
    if width * height > max_pixels:
        raise ImageLoadError(
            f"{what} is {width}x{height} = {width * height:,} pixels, over the limit of {max_pixels:,} "
            "(a guard against decompression bombs); downscale it, or raise max_pixels if you trust the source"
        )
    try:
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)  # animated: the first frame
        image.load()
        upright = ImageOps.exif_transpose(image)  # always a new image, so the result never aliases the input
        return _to_rgb(upright)
    except (ImageLoadError, MemoryError):
        raise
    except Exception as error:  # Pillow reports corrupt data with many exception types
        raise ImageLoadError(
            f"cannot decode {what}: {error}. The file is probably truncated or corrupt; re-export or "
            "re-download it"
        ) from error


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode.startswith(_HIGH_DEPTH_PREFIXES):
        return _stretch_to_8_bits(image).convert("RGB")
    if mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode == "RGB":
        return image
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as error:
        raise ImageLoadError(f"images of mode {mode!r} cannot be converted to RGB; convert it to RGB first") from error


def _stretch_to_8_bits(image: Image.Image) -> Image.Image:
    values = np.asarray(image).astype(np.float64)  # [H, W]
    finite = np.isfinite(values)
    low, high = (values[finite].min(), values[finite].max()) if finite.any() else (0.0, 0.0)
    if high > low:
        scaled = np.round((values - low) * (255.0 / (high - low)))
    else:
        scaled = np.zeros_like(values)
    scaled[~finite] = 0
    return Image.fromarray(scaled.astype(np.uint8))


def _image_from_array(array: np.ndarray) -> Image.Image:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise ImageLoadError(
            f"cannot read an image from an array of shape {array.shape}; expected HxW (gray), HxWx3 (RGB) or "
            "HxWx4 (RGBA) with channels last (transpose CHW arrays first)"
        )
    if array.size == 0:
        raise ImageLoadError(f"the image array is empty (shape {array.shape})")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageLoadError("the float image array contains NaN or infinite values")
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            raise ImageLoadError(
                f"float image arrays must hold values in [0, 1], got [{low:g}, {high:g}]; "
                "divide 0..255 data by 255 (or pass it as uint8)"
            )
        array = np.round(array * 255.0).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise ImageLoadError(
            f"image arrays must be uint8, bool or float in [0, 1], got {array.dtype}; convert to uint8 first"
        )
    return Image.fromarray(np.ascontiguousarray(array))
