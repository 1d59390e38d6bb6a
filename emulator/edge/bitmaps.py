"""RGB888 bitmaps in and out of the Edge Agent API: in the message, or in POSIX shared memory.

A Bitmap is interleaved RGB888 (red, green, blue bytes per pixel, rows top to bottom), between 64x64
and 4096x4096 pixels (edge-agent-reference-detect-anomalies.md). A shared memory handle names a
POSIX shared memory object (what shm_open opens: Python's ``SharedMemory(...).name``, with or
without the leading slash) and the region of it, ``size`` bytes from ``offset``, that holds the
pixels. Everything that is wrong with a bitmap or a handle is a BitmapError whose message says what
was expected; the agent answers it with INVALID_ARGUMENT.
"""
from __future__ import annotations

import mmap
import os
from typing import Any

import numpy as np

MIN_SIDE, MAX_SIDE = 64, 4096
CHANNELS = 3
_ENCODED = {b"\x89PNG": "a PNG file", b"\xff\xd8\xff": "a JPEG file"}


class BitmapError(ValueError):
    """The bitmap or shared memory handle cannot be used; the message says why."""


def check_size(width: int, height: int, what: str = "bitmap") -> int:
    """The byte size of a width x height RGB888 bitmap, or BitmapError when it is out of range."""
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise BitmapError(f"The {what} is {width}x{height} pixels; DetectAnomalies takes bitmaps from "
                          f"{MIN_SIDE}x{MIN_SIDE} to {MAX_SIDE}x{MAX_SIDE} pixels.")
    return width * height * CHANNELS


def read_bitmap(bitmap: Any) -> np.ndarray:
    """A request's Bitmap as an (H, W, 3) uint8 RGB array."""
    width, height = bitmap.width, bitmap.height
    expected = check_size(width, height)
    source = bitmap.WhichOneof("data")
    if source == "byte_data":
        data = bitmap.byte_data
        if len(data) != expected:
            raise BitmapError(_wrong_length(len(data), width, height, expected, data))
        return np.frombuffer(data, dtype=np.uint8).reshape(height, width, CHANNELS)
    if source == "shared_memory_handle":
        return read_shared(bitmap.shared_memory_handle, expected).reshape(height, width, CHANNELS)
    raise BitmapError("The bitmap has no pixels: set byte_data or shared_memory_handle.")


def _wrong_length(length: int, width: int, height: int, expected: int, data: bytes) -> str:
    message = (f"The bitmap's byte_data has {length} bytes, but a {width}x{height} RGB888 bitmap has {expected} "
               f"(3 bytes per pixel, interleaved R, G, B).")
    encoded = next((name for magic, name in _ENCODED.items() if data.startswith(magic)), None)
    if encoded:
        return message + f" The data is {encoded}: send the decoded pixels, not the file."
    if length == width * height * 4:
        return message + " That is 4 bytes per pixel: drop the alpha channel."
    return message


def read_shared(handle: Any, expected: int) -> np.ndarray:
    """A copy of `expected` bytes from the handle's region of shared memory."""
    with _Region(handle, expected, writable=False) as region:
        return np.array(region.view, dtype=np.uint8, copy=True)


def check_shared(handle: Any, expected: int) -> None:
    """Fail now, before any inference, if the mask cannot be written where the handle says."""
    with _Region(handle, expected, writable=True):
        pass


def write_shared(handle: Any, data: np.ndarray) -> None:
    """Write the mask's bytes at the start of the handle's region."""
    with _Region(handle, data.nbytes, writable=True) as region:
        region.view[:] = data.reshape(-1)


class _Region:
    """The first `expected` bytes of a handle's region, mapped for the duration of a `with`."""

    def __init__(self, handle: Any, expected: int, writable: bool) -> None:
        self.name = handle.name
        self.offset, self.size, self.expected, self.writable = handle.offset, handle.size, expected, writable
        if not self.name:
            raise BitmapError("The shared memory handle has no name.")
        if self.size < expected:
            raise BitmapError(f"The shared memory handle's size is {self.size} bytes; the bitmap needs {expected}.")

    def __enter__(self) -> _Region:
        fd = _open(self.name, os.O_RDWR if self.writable else os.O_RDONLY)
        try:
            length = os.fstat(fd).st_size
            if self.offset + self.expected > length:
                raise BitmapError(f"The shared memory object {self.name} has {length} bytes; offset {self.offset} "
                                  f"plus the bitmap's {self.expected} bytes does not fit in it.")
            access = mmap.ACCESS_WRITE if self.writable else mmap.ACCESS_READ
            self._map = mmap.mmap(fd, length, access=access)
        finally:
            os.close(fd)
        self.view = np.frombuffer(self._map, dtype=np.uint8, count=self.expected, offset=self.offset)
        return self

    def __exit__(self, *exc: object) -> None:
        del self.view  # the map cannot close while a view of it exists
        self._map.close()


def _open(name: str, flags: int) -> int:
    """shm_open(3) the named object (the leading slash is optional, as for Python's SharedMemory)."""
    from _posixshmem import shm_open  # CPython's own binding, what multiprocessing.shared_memory uses

    path = name if name.startswith("/") else "/" + name
    if "/" in path[1:] or len(path) > 255:
        raise BitmapError(f"{name!r} is not a valid POSIX shared memory name (one component, at most 255 bytes).")
    try:
        return int(shm_open(path, flags, 0))
    except FileNotFoundError:
        raise BitmapError(f"There is no shared memory object named {name!r}.") from None
    except OSError as exc:
        raise BitmapError(f"Cannot open the shared memory object {name!r}: {exc.strerror or exc}.") from None
