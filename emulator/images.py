"""Image checks shared by dataset import, training and DetectAnomalies.

Lookout for Vision accepts PNG and JPEG files of at most 8 MB whose sides are 64..4096 pixels
(limits.md). Every entry point decodes untrusted bytes through `decode_image`, so they all reject
the same files with the same wording, and none of them can be made to allocate a decompression
bomb: the dimensions in the header are checked before a single pixel is decoded.
"""
from __future__ import annotations

import io
from collections.abc import Iterable

from PIL import Image, UnidentifiedImageError

MIN_SIDE = 64
MAX_SIDE = 4096
MAX_IMAGE_BYTES = 8 * 1024 * 1024
SUPPORTED_FORMATS = ("PNG", "JPEG")

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


def decode_image(data: bytes, source: str, formats: Iterable[str] = SUPPORTED_FORMATS) -> Image.Image:
    """Check and fully decode an image file; raise ImageError naming `source` otherwise.

    `formats` narrows what is accepted (masks must be PNG). The image is returned in its own mode
    (a palette mask keeps its palette): convert it to what you need.
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
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{source} is not a readable {found} image: {exc}") from None
    width, height = image.size
    check_dimensions(width, height, source)
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{source} is a corrupt or truncated {found} image: {exc}") from None
    return image
