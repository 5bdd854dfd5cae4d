"""Unusual and broken image files, through the processor and the whole model.

Broken inputs must stop at the processor with `ImageLoadError` (a ValueError naming the problem); unusual but
valid ones (colour modes, bit depths, palettes, animation, degenerate sizes) must reach the language model and
give finite logits. The files are written here, in the formats they claim to be.
"""
import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from vision.image_io import ImageLoadError


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_header_only(width: int, height: int) -> bytes:
    """A well-formed PNG header claiming width x height RGB pixels, with no pixel data (a decompression-bomb
    probe: only the header may be read)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IEND", b"")


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _gradient(height, width):
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256], -1).astype(np.uint8)


def _bad_files(tmp_path):
    valid_png = _encode(Image.fromarray(_gradient(64, 80)), "PNG")
    files = {
        "zero bytes": b"",
        "truncated png": valid_png[: len(valid_png) // 2],
        "text named .png": b"this is not an image, just some text in a file called picture.png\n",
        "20000x20000 header": _png_header_only(20000, 20000),
    }
    paths = {}
    for name, data in files.items():
        path = tmp_path / (name.replace(" ", "_") + ".png")
        path.write_bytes(data)
        paths[name] = path
    return paths


@pytest.mark.parametrize("name", ["zero bytes", "truncated png", "text named .png", "20000x20000 header"])
@pytest.mark.parametrize("as_bytes", [False, True], ids=["path", "bytes"])
def test_broken_files_raise_image_load_error(tiny_model, tmp_path, name, as_bytes):
    path = _bad_files(tmp_path)[name]
    source = path.read_bytes() if as_bytes else str(path)
    with pytest.raises(ImageLoadError) as error:
        tiny_model.processor(images=[source], text="What is this? <image>")
    message = str(error.value)
    expected_words = {
        "zero bytes": "empty",
        "truncated png": "truncated",
        "text named .png": "not a readable image",
        "20000x20000 header": "too large",
    }[name]
    assert expected_words in message, message


def _valid_unusual_files(tmp_path):
    rgb = _gradient(90, 120)
    cmyk = Image.fromarray(rgb).convert("CMYK")
    deep = Image.fromarray((np.arange(70 * 50, dtype=np.uint16).reshape(70, 50) * 17).astype(np.uint16))
    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    frames = [Image.fromarray(np.full((40, 60, 3), v, dtype=np.uint8)).convert("P") for v in (30, 200, 120)]
    files = {
        "cmyk.jpg": (_encode(cmyk, "JPEG", quality=90), "CMYK"),
        "16bit.png": (_encode(deep, "PNG"), "I;16"),
        "palette_alpha.png": (_encode(palette, "PNG", transparency=0), "P"),
        "animated.gif": (_encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0),
                         "P"),
        "1x1.png": (_encode(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"), "RGB"),
        "1x10000.png": (_encode(Image.fromarray(_gradient(1, 10000)), "PNG"), "RGB"),  # 1 row, 10000 columns
        "10000x1.png": (_encode(Image.fromarray(_gradient(10000, 1)), "PNG"), "RGB"),
    }
    paths = {}
    for name, (data, mode) in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        with Image.open(path) as check:  # the file really is what its name says
            assert check.mode.startswith(mode), (name, check.mode)
            if name == "palette_alpha.png":
                assert "transparency" in check.info
            if name == "animated.gif":
                assert check.n_frames == 3
        paths[name] = path
    return paths


def test_unusual_valid_images_give_finite_logits(tiny_model, tmp_path):
    paths = _valid_unusual_files(tmp_path)
    image_id = tiny_model.config.image_token_index
    for name, path in paths.items():
        inputs = tiny_model.processor(images=[str(path)], text=f"Describe {name}: <image>")
        tiles = inputs["pixel_values"][0]
        assert tiles.shape[1:] == (3, 56, 56) and torch.isfinite(tiles).all(), name
        with torch.no_grad():
            logits = tiny_model(inputs["input_ids"], inputs["pixel_values"], inputs["image_sizes"]).logits
        assert logits.shape[1] == inputs["input_ids"].shape[1], name
        assert torch.isfinite(logits).all(), name
        assert int((inputs["input_ids"] == image_id).sum()) >= 16, name  # at least the thumbnail's tokens
    # All of them in one prompt, too.
    inputs = tiny_model.processor(images=[str(p) for p in paths.values()], text="<image>" * len(paths))
    with torch.no_grad():
        logits = tiny_model(inputs["input_ids"], inputs["pixel_values"], inputs["image_sizes"]).logits
    assert torch.isfinite(logits).all()
    assert [list(s) for s in inputs["image_sizes"]] == [[90, 120], [70, 50], [90, 120], [40, 60], [1, 1],
                                                        [1, 10000], [10000, 1]]
