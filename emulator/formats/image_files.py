"""Image checks shared by dataset import, training and DetectAnomalies.

Lookout for Vision accepts PNG and JPEG files of at most 8 MB whose sides are 64..4096 pixels
(limits.md). Every entry point reads untrusted bytes through `open_image` (then `decode_image` or
`rgb_pixels`), so they all reject the same files with the same wording, and none of them can be
made to allocate a decompression bomb: the dimensions in the header are checked before a single
pixel is decoded.
"""
from __future__ import annotations

import io
import warnings
from collections.abc import Iterable

import numpy as np
from PIL import Image, UnidentifiedImageError

MIN_SIDE = 64
MAX_SIDE = 4096
MAX_IMAGE_BYTES = 8 * 1024 * 1024
SUPPORTED_FORMATS = ("PNG", "JPEG")
# The media type of each format: what DetectAnomalies' ContentType names and what S3 and browsers get.
CONTENT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg"}
FORMAT_OF_CONTENT_TYPE = {media_type: name for name, media_type in CONTENT_TYPES.items()}

# The file signatures of the supported formats: the format is what the bytes say, not the name.
_SIGNATURES = {"PNG": b"\x89PNG\r\n\x1a\n", "JPEG": b"\xff\xd8\xff"}


class ImageError(ValueError):
    """A file the service rejects. The message names the file and says what is wrong with it."""


def sniff_format(data: bytes) -> str | None:
    """'PNG' or 'JPEG' when `data` starts with that format's signature, else None."""
    for name, signature in _SIGNATURES.items():
        if data.startswith(signature):
            return name
    return None


def check_file_size(size: int, source: str) -> None:
    """Reject a file over 8 MB (callers that can learn the size cheaply call this before downloading)."""
    if size > MAX_IMAGE_BYTES:
        raise ImageError(f"{source} is {size} bytes; an image may be at most {MAX_IMAGE_BYTES} bytes (8 MB).")


def check_dimensions(width: int, height: int, source: str) -> None:
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise ImageError(f"{source} is {width}x{height} pixels; width and height must each be between "
                         f"{MIN_SIDE} and {MAX_SIDE} pixels.")


def _describe(formats: tuple[str, ...]) -> str:
    return " or ".join(formats)


def open_image(data: bytes, source: str, formats: Iterable[str] = SUPPORTED_FORMATS) -> Image.Image:
    """Check an image file from its header alone (no pixel is decoded); raise ImageError naming `source`.

    Checks the 8 MB limit, the format by content (`formats` narrows what is accepted: masks must be
    PNG), a readable header and the 64..4096 pixel sides.
    """
    allowed = tuple(formats)
    check_file_size(len(data), source)
    found = sniff_format(data)
    if found not in allowed:
        raise ImageError(f"{source} is not a {_describe(allowed)} image (the file content is checked, "
                         "not its name).")
    try:
        image = Image.open(io.BytesIO(data), formats=[found])
    except Image.DecompressionBombError:
        raise ImageError(f"{source} declares more pixels than the maximum of {MAX_SIDE}x{MAX_SIDE}.") from None
    except UnidentifiedImageError:  # its message names Python's in-memory file object, of no use to anyone
        raise ImageError(f"{source} is not a readable {found} image: its header can't be decoded.") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{source} is not a readable {found} image: {exc}") from None
    width, height = image.size
    check_dimensions(width, height, source)
    return image


def decode_image(data: bytes, source: str, formats: Iterable[str] = SUPPORTED_FORMATS) -> Image.Image:
    """Check and fully decode an image file; raise ImageError naming `source` otherwise.

    The image is returned in its own mode (a palette mask keeps its palette): convert it to what
    you need, or use `rgb_pixels` for the pixels of a photo.
    """
    image = open_image(data, source, formats)
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{source} is a corrupt or truncated {image.format} image: {exc}") from None
    return image


def rgb_pixels(image: Image.Image, data: bytes, source: str) -> np.ndarray:
    """The pixels of an image from `open_image` as a (H, W, 3) uint8 RGB array.

    Training and DetectAnomalies both read images through here, so a model sees the same pixels at
    both ends. JPEGs (nearly every photo) are decoded by torchvision's libjpeg-turbo straight into an
    array: the same library as Pillow's with the same settings, so the same pixels (tests compare
    them), in about half the time of Pillow's decode plus its conversion copies - 6 instead of
    12 ms for a 576x768 photo, on the path of every DetectAnomalies call. Other files go through
    Pillow (a palette image with transparency via RGBA, as Pillow requires).
    """
    if image.format == "JPEG":
        return _jpeg_pixels(data, source)
    try:
        return np.asarray(as_rgb(image))
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{source} is a corrupt or truncated {image.format} image: {exc}") from None


# Pillow's modes for 16-bit grayscale PNGs (what industrial cameras write). Its RGB conversion clips
# them at 255 instead of scaling, which turned a ramp into a nearly white image.
_WIDE_GRAY_MODES = frozenset({"I;16", "I;16B", "I;16L", "I"})


def _wide_gray_pixels(image: Image.Image) -> np.ndarray:
    """A 16-bit grayscale image scaled to 8 bits (0..65535 onto 0..255, rounded), as RGB."""
    wide = np.asarray(image).astype(np.uint32)
    gray = ((np.clip(wide, 0, 65535) * 255 + 32767) // 65535).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def as_rgb(image: Image.Image) -> Image.Image:
    """`image` in RGB mode; a palette image with transparency goes through RGBA, as Pillow requires
    (converting it directly works but warns). A 16-bit grayscale image is scaled, not clipped."""
    if image.mode in _WIDE_GRAY_MODES:
        return Image.fromarray(_wide_gray_pixels(image), "RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def _jpeg_pixels(data: bytes, source: str) -> np.ndarray:
    import torch  # only training and hosting read pixels; both have loaded torch already
    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():
        # torchvision 0.29 announces that its image codecs will move to TorchCodec.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            pixels = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
        except RuntimeError as exc:  # the reason follows the C++ source location
            reason = str(exc).rsplit(", ", 1)[-1]
            raise ImageError(f"{source} is a corrupt or truncated JPEG image: {reason}") from None
    # A numpy copy, not a torch one: torch would start an OpenMP pool on this (HTTP) thread.
    return np.ascontiguousarray(pixels.numpy().transpose(1, 2, 0))
