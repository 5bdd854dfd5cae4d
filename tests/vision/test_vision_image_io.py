"""load_image on a corpus of awkward and broken inputs, each made here in a tmp dir.

Every input either loads to a correct RGB image (and then goes through the released processor to tiles) or
raises ImageLoadError with a message that says what to do; nothing escapes from inside Pillow.
"""
import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from vision.anyres import pack_image_features
from vision.image_io import ImageLoadError, load_image
from vision.image_processing import ImageProcessor

PROCESSOR = ImageProcessor()  # the released settings: anyres, 336-px tiles, 28 grid shapes


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def noise(height: int, width: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def png_with_header_only(width: int, height: int) -> bytes:
    """A syntactically valid PNG whose header claims width x height but whose data is a few bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    pixels = chunk(b"IDAT", zlib.compress(b"\0" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + pixels + chunk(b"IEND", b"")


def write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def assert_processes(image: Image.Image):
    """The loaded image goes through the released processor, and its tiles are what packing consumes."""
    out = PROCESSOR([image])
    tiles, (height, width), count = out["pixel_values"][0], out["image_sizes"][0], out["num_image_tokens"][0]
    assert (height, width) == (image.height, image.width)
    assert tiles.shape == (PROCESSOR.num_tiles(height, width), 3, 336, 336) and tiles.dtype == torch.float32
    assert torch.isfinite(tiles).all()
    features = torch.zeros(tiles.shape[0], 576, 2)
    packed = pack_image_features(features, (height, width), PROCESSOR.grid_pinpoints, 336, 14, torch.ones(2))
    assert packed.shape[0] == count


# ---- broken inputs: one clear error each ------------------------------------------------------------------------

def test_zero_byte_file(tmp_path):
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(write(tmp_path, "empty.png", b""))
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(b"")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_files(tmp_path, fmt, keep):
    data = encode(noise(64, 64), fmt)
    path = write(tmp_path, f"cut.{fmt.lower()}", data[: int(len(data) * keep)])
    with pytest.raises(ImageLoadError, match="truncated or corrupt") as error:
        load_image(path)
    assert str(path) in str(error.value)
    assert error.value.__cause__ is not None  # Pillow's own error is kept for debugging


def test_file_cut_inside_the_header(tmp_path):
    path = write(tmp_path, "head.png", encode(noise(8, 8), "PNG")[:20])
    with pytest.raises(ImageLoadError, match="truncated or corrupt"):
        load_image(path)


def test_text_file_named_png(tmp_path):
    with pytest.raises(ImageLoadError, match="not a readable image"):
        load_image(write(tmp_path, "notes.png", b"these are not pixels\n" * 10))


def test_decompression_bomb_header_fails_before_decoding(tmp_path, monkeypatch):
    def no_decoding(self):
        raise AssertionError("pixels were decoded")
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(ImageLoadError, match="too large"):  # 400 MP: Pillow's hard guard, reported as ours
        load_image(write(tmp_path, "bomb.png", png_with_header_only(20000, 20000)))
    with pytest.raises(ImageLoadError, match=r"9000x9000 = 81,000,000 pixels, over the limit of 64,000,000"):
        load_image(write(tmp_path, "big.png", png_with_header_only(9000, 9000)))  # below Pillow's, above ours
    with pytest.raises(ImageLoadError, match="over the limit of 100"):
        load_image(encode(noise(20, 20), "PNG"), max_pixels=100)


def test_pixel_limit_applies_to_arrays_and_pil_images_too():
    with pytest.raises(ImageLoadError, match="over the limit"):
        load_image(np.zeros((20, 20, 3), np.uint8), max_pixels=399)
    with pytest.raises(ImageLoadError, match="over the limit"):
        load_image(noise(20, 20), max_pixels=399)
    assert load_image(noise(20, 20), max_pixels=400).size == (20, 20)


def test_paths_that_are_not_files(tmp_path):
    with pytest.raises(ImageLoadError, match="no such image file"):
        load_image(tmp_path / "missing.jpg")
    with pytest.raises(ImageLoadError, match="is a directory"):
        load_image(tmp_path)


def test_unsupported_inputs():
    with pytest.raises(ImageLoadError, match="cannot load an image from a int"):
        load_image(42)
    with pytest.raises(ImageLoadError, match="channels last"):
        load_image(np.zeros((3, 8, 8, 2), np.uint8))
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(np.zeros((0, 5), np.uint8))
    with pytest.raises(ImageLoadError, match=r"values in \[0, 1\], got \[0, 255\]"):
        load_image(np.linspace(0, 255, 48).reshape(4, 4, 3))
    with pytest.raises(ImageLoadError, match="NaN"):
        load_image(np.full((4, 4), np.nan, np.float32))
    with pytest.raises(ImageLoadError, match="convert to uint8"):
        load_image(np.zeros((4, 4), np.int64))


def test_processor_reports_bad_images_with_the_same_error(tmp_path):
    with pytest.raises(ImageLoadError, match="not a readable image"):
        PROCESSOR([noise(40, 40), write(tmp_path, "fake.jpg", b"GIF89a? no")])


# ---- awkward but valid inputs: correct pixels, then tiles --------------------------------------------------------

def test_one_by_one(tmp_path):
    image = load_image(write(tmp_path, "dot.png", encode(Image.new("RGB", (1, 1), (10, 200, 30)), "PNG")))
    assert image.size == (1, 1) and image.getpixel((0, 0)) == (10, 200, 30)
    assert PROCESSOR.num_image_tokens(1, 1) == 576 + 24 * 25  # one tile, upscaled: nothing is padding
    assert_processes(image)


# Too thin for any feature row (column) to survive unpadding. Wide: no grid rows, only the 576 thumbnail
# tokens. Tall: 24 grid rows of zero width, each still ends in a newline (the released count, H_f * (W_f + 1)).
@pytest.mark.parametrize("height, width, tokens", [(1, 10000, 576), (10000, 1, 576 + 24)])
def test_extreme_aspect_ratio_works(tmp_path, height, width, tokens):
    image = load_image(write(tmp_path, "line.png", encode(noise(height, width), "PNG")))
    assert (image.height, image.width) == (height, width)
    assert PROCESSOR.num_image_tokens(height, width) == tokens
    assert_processes(image)


def test_cmyk_jpeg(tmp_path):
    image = load_image(write(tmp_path, "cmyk.jpg", encode(Image.new("CMYK", (32, 32), (255, 0, 0, 0)), "JPEG")))
    assert image.mode == "RGB"
    np.testing.assert_allclose(np.asarray(image)[16, 16], [0, 255, 255], atol=3)  # full cyan; JPEG may round
    assert_processes(image)


def test_16_bit_png_is_stretched_by_its_own_range(tmp_path):
    values = np.linspace(1000, 3000, 48 * 64).reshape(48, 64).astype(np.uint16)  # a narrow slice of 0..65535
    source = Image.fromarray(values)
    assert source.mode == "I;16"
    image = load_image(write(tmp_path, "deep.png", encode(source, "PNG")))
    pixels = np.asarray(image).astype(int)
    assert image.mode == "RGB" and (pixels[..., 0] == pixels[..., 2]).all()
    assert pixels.min() == 0 and pixels.max() == 255
    expected = np.round((values.astype(float) - 1000) * 255 / 2000)
    assert np.abs(pixels[..., 0] - expected).max() == 0
    assert_processes(image)


@pytest.mark.parametrize("mode, values", [("I", np.arange(12, dtype=np.int32) * 1000 - 500),
                                          ("F", np.linspace(-1, 1, 12, dtype=np.float32))])
def test_32_bit_modes_are_stretched(mode, values):
    source = Image.fromarray(values.reshape(3, 4))
    assert source.mode == mode
    pixels = np.asarray(load_image(source))[..., 0]
    assert pixels.min() == 0 and pixels.max() == 255 and (np.diff(pixels.ravel().astype(int)) > 0).all()


def test_constant_deep_image_is_black():
    assert np.asarray(load_image(Image.fromarray(np.full((4, 4), 777, np.uint16)))).max() == 0


def test_palette_png_with_transparency_goes_on_white(tmp_path):
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)  # index 0 red (transparent), index 1 blue
    palette.putpixel((0, 0), 1)
    image = load_image(write(tmp_path, "pal.png", encode(palette, "PNG", transparency=0)))
    assert image.getpixel((0, 0)) == (0, 0, 255) and image.getpixel((2, 2)) == (255, 255, 255)
    assert_processes(image)


def test_rgba_and_la_are_composited_on_white():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (200, 0, 0, 255)
    rgba[0, 1] = (200, 0, 0, 0)
    rgba[1, 0] = (0, 0, 0, 128)
    image = load_image(rgba)
    assert image.getpixel((0, 0)) == (200, 0, 0) and image.getpixel((1, 0)) == (255, 255, 255)
    assert abs(image.getpixel((0, 1))[0] - 127) <= 1  # half-transparent black over white: mid gray
    la = Image.fromarray(np.array([[[0, 0], [0, 255]]], np.uint8), mode="LA")
    assert load_image(la).getpixel((0, 0)) == (255, 255, 255) and load_image(la).getpixel((1, 0)) == (0, 0, 0)


@pytest.mark.parametrize("fmt", ["GIF", "PNG"])  # animated GIF and APNG
def test_animated_images_give_their_first_frame(tmp_path, fmt):
    frames = [Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:])
    assert Image.open(io.BytesIO(data)).n_frames == 2
    image = load_image(write(tmp_path, f"anim.{fmt.lower()}", data))
    assert image.getpixel((4, 4)) == (255, 0, 0)
    assert_processes(image)


def test_exif_orientation_is_applied(tmp_path):
    stored = Image.new("RGB", (40, 20), (255, 0, 0))  # stored sideways: left half red, right half blue
    stored.paste((0, 0, 255), (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    image = load_image(write(tmp_path, "phone.jpg", encode(stored, "JPEG", exif=exif.tobytes(), quality=95)))
    assert image.size == (20, 40)  # upright: portrait
    top, bottom = np.asarray(image)[5, 10], np.asarray(image)[35, 10]
    np.testing.assert_allclose(top, [255, 0, 0], atol=8)  # the stored left (red) is now on top
    np.testing.assert_allclose(bottom, [0, 0, 255], atol=8)
    assert_processes(image)


def test_gray_and_bilevel_images():
    gray = load_image(Image.fromarray(np.array([[0, 128]], np.uint8)))
    assert gray.mode == "RGB" and gray.getpixel((1, 0)) == (128, 128, 128)
    bilevel = load_image(Image.new("1", (3, 3), 1))
    assert bilevel.getpixel((1, 1)) == (255, 255, 255)


def test_array_inputs():
    rgb = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert np.array_equal(np.asarray(load_image(rgb)), rgb)
    assert np.asarray(load_image(rgb[..., 0])).shape == (5, 7, 3)  # HW gray
    assert np.asarray(load_image(rgb[..., :1])).shape == (5, 7, 3)  # HWx1
    floats = rgb.astype(np.float64) / 255
    assert np.array_equal(np.asarray(load_image(floats)), rgb)  # exact round trip through [0, 1]
    assert np.asarray(load_image(np.eye(3, dtype=bool)))[0, 0, 0] == 255


def test_sources_give_identical_images(tmp_path):
    data = encode(noise(9, 13), "PNG")
    path = write(tmp_path, "same.png", data)
    images = [load_image(path), load_image(str(path)), load_image(data), load_image(bytearray(data)),
              load_image(Image.open(io.BytesIO(data)))]
    assert all(np.array_equal(np.asarray(images[0]), np.asarray(other)) for other in images[1:])


def test_result_is_independent_of_a_given_pil_image():
    source = noise(6, 6)
    image = load_image(source)
    image.putpixel((0, 0), (1, 2, 3))
    assert source.getpixel((0, 0)) != (1, 2, 3)
