"""The anomaly-mask PNG writer (emulator.formats.png) against Pillow's decoder."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from emulator.formats.png import encode_rgb


def _decoded(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG" and image.mode == "RGB"
    return np.asarray(image)


@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 5, 3), (576, 768, 3)])
def test_random_pixels_round_trip(shape: tuple[int, int, int]) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    assert np.array_equal(_decoded(encode_rgb(pixels)), pixels)


def test_a_typical_mask_round_trips_and_is_small() -> None:
    mask = np.full((576, 768, 3), 255, dtype=np.uint8)
    mask[100:180, 200:260] = (0x23, 0xA4, 0x36)
    mask[400:410, 0:768] = (0xE0, 0x20, 0x1C)
    data = encode_rgb(mask)
    assert np.array_equal(_decoded(data), mask)
    assert len(data) < 20_000  # 1.3 MB of pixels


def test_only_rgb_uint8_arrays_are_written() -> None:
    for bad in (np.zeros((4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 3), np.float32)):
        with pytest.raises(ValueError, match="expected a"):
            encode_rgb(bad)
