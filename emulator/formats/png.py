"""Anomaly masks as PNG files, written directly (not through Pillow) because it is on the hot path.

Every segmentation DetectAnomalies answer carries its mask as an RGB PNG. The masks are mostly one
colour, so each row is stored with PNG's "Up" filter (the difference to the row above: all zeros
wherever a row repeats) and deflated at the fastest level: ~3 ms for 576x768 where Pillow, which
tries every filter on every row, took ~8 ms at its fastest level, for files of the same size.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_FILTER_NONE, _FILTER_UP = 0, 2


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def encode_rgb(pixels: np.ndarray) -> bytes:
    """A (H, W, 3) uint8 array as an 8-bit RGB PNG file."""
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"expected a (H, W, 3) uint8 array, got {pixels.shape} {pixels.dtype}")
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, width * 3)
    filtered = np.empty((height, 1 + width * 3), dtype=np.uint8)
    filtered[0, 0], filtered[1:, 0] = _FILTER_NONE, _FILTER_UP
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # modulo 256, as the filter is defined
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bits, truecolour, no interlace
    return (_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(filtered.tobytes(), 1))
            + _chunk(b"IEND", b""))
