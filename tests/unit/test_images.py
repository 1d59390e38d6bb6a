"""Image checks (emulator.formats.image_files): formats by content, the 64..4096 and 8 MB limits, bombs, corruption,
and the pixels training and DetectAnomalies read."""
from __future__ import annotations

import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from emulator.formats.image_files import MAX_IMAGE_BYTES, ImageError, decode_image, open_image, rgb_pixels, sniff_format


def encoded(size: tuple[int, int] = (64, 64), fmt: str = "PNG", mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, fmt)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares `width` x `height` but carries almost no data (a decompression bomb's header)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def refusal(data: bytes, **kwargs: object) -> str:
    with pytest.raises(ImageError) as err:
        decode_image(data, "s3://bucket/pic.png", **kwargs)  # type: ignore[arg-type]
    assert str(err.value).startswith("s3://bucket/pic.png ")
    return str(err.value)


@pytest.mark.parametrize(("fmt", "mode", "size"), [
    ("PNG", "RGB", (64, 64)), ("PNG", "L", (4096, 64)), ("PNG", "RGBA", (100, 70)), ("JPEG", "RGB", (64, 4096)),
    ("PNG", "P", (80, 80)),
])
def test_accepted_images_are_fully_decoded(fmt: str, mode: str, size: tuple[int, int]) -> None:
    image = decode_image(encoded(size, fmt, mode), "s3://bucket/pic")
    assert image.size == size and image.format == fmt and image.mode == mode  # palette masks keep their palette
    assert image.getpixel((0, 0)) is not None


def test_format_comes_from_the_content() -> None:
    assert sniff_format(encoded(fmt="PNG")) == "PNG"
    assert sniff_format(encoded(fmt="JPEG")) == "JPEG"
    assert sniff_format(encoded(fmt="GIF")) is None
    assert "not a PNG or JPEG image" in refusal(encoded(fmt="GIF"))
    assert "not a PNG or JPEG image" in refusal(encoded(fmt="BMP"))
    assert "not a PNG image" in refusal(encoded(fmt="JPEG"), formats=("PNG",))


@pytest.mark.parametrize("size", [(63, 64), (64, 63), (4097, 64), (64, 4097)])
def test_dimensions_outside_64_to_4096_are_refused(size: tuple[int, int]) -> None:
    message = refusal(encoded(size))
    assert f"{size[0]}x{size[1]}" in message and "between 64 and 4096" in message


def test_files_over_8_mb_are_refused_before_decoding() -> None:
    assert "at most 8388608 bytes" in refusal(encoded() + b"\0" * MAX_IMAGE_BYTES)


def test_truncated_and_corrupt_files_are_refused() -> None:
    data = encoded((256, 256), "PNG")
    assert "corrupt or truncated" in refusal(data[: len(data) // 2])
    assert "not a readable PNG image" in refusal(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)


@pytest.mark.parametrize(("width", "height", "reason"), [
    (100_000, 100_000, "more pixels than"),  # Pillow's own bomb limit trips while reading the header
    (5_000, 5_000, "5000x5000"),  # below Pillow's limit: our dimension check stops it before decoding
])
def test_decompression_bombs_are_refused_without_decoding(width: int, height: int, reason: str) -> None:
    started = time.perf_counter()
    assert reason in refusal(png_header_only(width, height))
    assert time.perf_counter() - started < 1.0


def _photo(mode: str = "RGB", size: tuple[int, int] = (96, 80)) -> Image.Image:
    """A smooth gradient with detail, so JPEG's chroma subsampling and IDCT have work to do."""
    ys, xs = np.mgrid[0:size[1], 0:size[0]]
    rgb = np.stack([xs * 255 // size[0], ys * 255 // size[1], (xs * ys) % 251], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb, "RGB").convert(mode)


@pytest.mark.parametrize(("mode", "options"), [
    ("RGB", {"quality": 95, "subsampling": 0}), ("RGB", {"quality": 75, "subsampling": 2}),
    ("RGB", {"progressive": True}), ("L", {}), ("CMYK", {}),
])
def test_jpeg_pixels_are_pillows_pixels(mode: str, options: dict[str, object]) -> None:
    """rgb_pixels decodes JPEGs with torchvision for speed; a model must see Pillow's pixels all the same."""
    buffer = io.BytesIO()
    _photo(mode).save(buffer, "JPEG", **options)
    data = buffer.getvalue()
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    pixels = rgb_pixels(open_image(data, "pic.jpg"), data, "pic.jpg")
    assert pixels.shape == (80, 96, 3) and pixels.dtype == np.uint8 and pixels.flags.c_contiguous
    assert np.array_equal(pixels, expected)


def test_png_pixels_include_palettes_with_transparency() -> None:
    palette = _photo().convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    palette.info["transparency"] = 0
    buffer = io.BytesIO()
    palette.save(buffer, "PNG")
    data = buffer.getvalue()
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGBA").convert("RGB"))
    assert np.array_equal(rgb_pixels(open_image(data, "mask.png"), data, "mask.png"), expected)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_pixels_are_refused(fmt: str) -> None:
    buffer = io.BytesIO()
    _photo(size=(256, 256)).save(buffer, fmt)
    data = buffer.getvalue()[:-400]
    with pytest.raises(ImageError, match=rf"^pic is a corrupt or truncated {fmt} image: "):
        rgb_pixels(open_image(data, "pic"), data, "pic")


def test_open_image_reads_only_the_header() -> None:
    data = encoded((300, 200), "PNG")
    image = open_image(data[:100], "pic.png")  # the header alone: enough to know the size
    assert image.size == (300, 200) and image.format == "PNG"


def test_16_bit_grayscale_is_scaled_not_clipped():
    """Industrial cameras write 16-bit grayscale PNGs; Pillow's RGB conversion clips them at 255."""
    ramp = np.tile(np.linspace(0, 65535, 256).round().astype(np.uint16), (64, 1))
    buffer = io.BytesIO()
    Image.fromarray(ramp).save(buffer, "PNG")
    data = buffer.getvalue()
    pixels = rgb_pixels(open_image(data, "ramp.png"), data, "ramp.png")
    assert pixels.shape == (64, 256, 3) and pixels.dtype == np.uint8
    expected = (ramp.astype(np.uint32) * 255 + 32767) // 65535
    assert (pixels[:, :, 0] == expected).all() and (pixels[:, :, 1] == pixels[:, :, 2]).all()
    assert abs(float(pixels.mean()) - 127.5) < 1


@pytest.mark.parametrize("mode", ["L", "RGB", "P", "LA", "RGBA"])
def test_8_bit_pixels_are_unchanged(mode):
    """The 16-bit path leaves 8-bit images exactly as Pillow's RGB conversion gives them."""
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    data = buffer.getvalue()
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert (rgb_pixels(open_image(data, "x.png"), data, "x.png") == expected).all()
