"""Image and mask validation/conversion, and the resize to the working resolution.

All input checking lives here so every entry point (fit, predict, evaluate) rejects the same inputs
with the same messages. Conversions that lose nothing a defect detector needs are done silently
(greyscale -> RGB, RGBA -> RGB, 16-bit -> 8-bit); anything ambiguous (float images, odd channel
counts) is rejected with EngineError naming the item.
"""
from __future__ import annotations

import math
import re

import numpy as np
import torch
import torch.nn.functional as F

from .errors import EngineError

MIN_SIDE = 64  # LFV accepts 64x64 .. 4096x4096
MAX_SIDE = 4096
_HEX = re.compile(r"^#?([0-9a-fA-F]{6})$")
BACKGROUND_HEX = "#FFFFFF"


def labelled_image(item: object, index: int, role: str) -> tuple[str, np.ndarray] | None:
    """Check one input item of fit/evaluate. None for an unlabelled item (ignored everywhere);
    otherwise how messages name it and its image as RGB uint8."""
    from .types import Item

    if not isinstance(item, Item):
        raise EngineError(f"item {index}: expected engine.Item, got {type(item).__name__}")
    if item.label is None:
        return None
    what = f"{role} {index} ({item.name})" if item.name else f"{role} {index}"
    if item.label not in ("normal", "anomaly"):
        raise EngineError(f"{what}: label must be 'normal', 'anomaly' or None, got {item.label!r}")
    return what, to_rgb_uint8(item.image, what)


def to_rgb_uint8(image: object, what: str) -> np.ndarray:
    """Return ``image`` as a contiguous (H, W, 3) uint8 array or raise EngineError mentioning ``what``."""
    if not isinstance(image, np.ndarray):
        raise EngineError(f"{what}: image must be a numpy array, got {type(image).__name__}")
    a = image
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3:
        raise EngineError(f"{what}: image must be (H, W, 3) RGB, got shape {image.shape}")
    if a.dtype == np.uint16:
        # 16-bit PNGs: keep the 8 most significant bits (what any viewer shows).
        a = (a >> 8).astype(np.uint8)
    elif a.dtype != np.uint8:
        raise EngineError(
            f"{what}: image dtype must be uint8 (or uint16), got {a.dtype}; decode the file to 8-bit RGB"
        )
    c = a.shape[2]
    if c == 1:
        a = np.repeat(a, 3, axis=2)
    elif c == 4:
        a = a[:, :, :3]
    elif c != 3:
        raise EngineError(f"{what}: image must have 1, 3 or 4 channels, got {c}")
    h, w = a.shape[:2]
    if min(h, w) < MIN_SIDE or max(h, w) > MAX_SIDE:
        raise EngineError(
            f"{what}: image is {w}x{h}; width and height must be between {MIN_SIDE} and {MAX_SIDE} pixels"
        )
    return np.ascontiguousarray(a)


def parse_hex(colour: str, what: str) -> tuple[int, int, int]:
    """'#RRGGBB' (case-insensitive, '#' optional) -> (r, g, b)."""
    m = _HEX.match(str(colour).strip()) if isinstance(colour, str) else None
    if not m:
        raise EngineError(f"{what}: colour {colour!r} is not of the form #RRGGBB")
    v = m.group(1)
    return int(v[0:2], 16), int(v[2:4], 16), int(v[4:6], 16)


def normalise_hex(colour: str, what: str) -> str:
    """Canonical upper-case '#RRGGBB'."""
    r, g, b = parse_hex(colour, what)
    return f"#{r:02X}{g:02X}{b:02X}"


# A mask colour within this many levels (per channel) of background or of a label colour is snapped
# to it: resampling and antialiasing blend colours at region borders.
_COLOUR_SNAP = 40


def _checked_mask(mask: object, shape: tuple[int, int], what: str) -> np.ndarray:
    """The (H, W, 3) uint8 RGB view of a mask of the image's ``shape`` (alpha dropped), or EngineError."""
    if not isinstance(mask, np.ndarray):
        raise EngineError(f"{what}: mask must be a numpy array, got {type(mask).__name__}")
    m = mask
    if m.ndim == 3 and m.shape[2] == 4:
        m = m[:, :, :3]
    if m.ndim != 3 or m.shape[2] != 3:
        raise EngineError(f"{what}: mask must be (H, W, 3) RGB, got shape {mask.shape}")
    if m.dtype != np.uint8:
        raise EngineError(f"{what}: mask dtype must be uint8, got {m.dtype}")
    if m.shape[:2] != tuple(shape):
        raise EngineError(
            f"{what}: mask is {m.shape[1]}x{m.shape[0]} but the image is {shape[1]}x{shape[0]}"
        )
    return m


def decode_mask(
    mask: object, shape: tuple[int, int], palette: list[tuple[int, int, int]], what: str
) -> np.ndarray:
    """RGB mask -> (H, W) uint8 label index map: 0 = background, i+1 = palette[i].

    White and black are both background (LFV masks use white; Ground Truth PNGs often black).
    Colours within a small tolerance of a known colour are snapped to it (resampling/antialias at
    region borders); any other colour is an error, since silently dropping a label would train a
    wrong model.
    """
    m = _checked_mask(mask, shape, what)
    colours = [(255, 255, 255), (0, 0, 0)] + list(palette)
    ref = np.array(colours, dtype=np.int16)  # (K, 3)
    # Pack RGB into one int so np.unique is a fast 1-D sort (row-wise unique is ~50x slower).
    packed = (m[..., 0].astype(np.int32) << 16) | (m[..., 1].astype(np.int32) << 8) | m[..., 2]
    upacked, inverse = np.unique(packed.ravel(), return_inverse=True)
    uniq = np.stack([(upacked >> 16) & 255, (upacked >> 8) & 255, upacked & 255], 1)
    d = np.abs(uniq[:, None, :].astype(np.int16) - ref[None, :, :]).max(axis=2)  # (U, K)
    nearest = d.argmin(axis=1)
    bad = d[np.arange(len(uniq)), nearest] > _COLOUR_SNAP
    if bad.any():
        shown = ", ".join("#{:02X}{:02X}{:02X}".format(*(int(x) for x in u)) for u in uniq[bad][:5])
        raise EngineError(
            f"{what}: mask contains colour(s) {shown} that are neither background (white/black) nor "
            "one of the anomaly label colours"
        )
    lut = np.maximum(nearest - 1, 0).astype(np.uint8)  # white->0, black->0, palette i -> i+1
    return lut[inverse.reshape(-1)].reshape(shape)


def defect_pixels(mask: object, shape: tuple[int, int], what: str) -> np.ndarray:
    """(H, W) bool: the mask's pixels in any colour but background (white or black, snapped as in
    ``decode_mask``). For measuring a classification model's map, which knows no label colours."""
    m = _checked_mask(mask, shape, what).astype(np.int16)
    return (np.abs(m - 255).max(axis=2) > _COLOUR_SNAP) & (m.max(axis=2) > _COLOUR_SNAP)


def working_size(width: int, height: int, resolution: int, min_resolution: int) -> tuple[int, int]:
    """(work_w, work_h): the native size when it has at most twice the pixels of a 4:3 image whose
    longer side is ``resolution``, else downscaled to that pixel count; shorter side >= ``min_resolution``
    when possible (small images are upscaled so the /8 grid keeps enough cells); both multiples of 16
    so the /8 and /16 feature grids align exactly.

    A pixel budget rather than a cap on the longer side: the cost of a prediction is proportional to
    the pixel count, and an elongated image would otherwise be shrunk far more than a 4:3 one of the
    same cost. Native size up to twice the budget: resampling blurs defects a few pixels wide, and on
    KolektorSDD's thin cracks (256x640) native size beat 208x528 and 160x384 in cross-validation."""
    budget = 0.75 * resolution * resolution
    area = width * height
    scale = 1.0 if area <= 2 * budget else math.sqrt(budget / area)
    if min(width, height) * scale < min_resolution:
        scale = min_resolution / min(width, height)
    # Extreme aspect ratios (e.g. 4096x64): never let the long side exceed 2x ``resolution``,
    # which would blow up time and memory; the short side then stays below min_resolution.
    scale = min(scale, 2 * resolution / max(width, height))
    w = max(32, int(round(width * scale / 16)) * 16)
    h = max(32, int(round(height * scale / 16)) * 16)
    return w, h


def to_tensor_batch(images: list[np.ndarray], work_w: int, work_h: int) -> torch.Tensor:
    """uint8 (H, W, 3) images -> float (B, 3, work_h, work_w) in [0, 1] (channels_last), antialiased resize.

    torch's resize (not PIL) so fit and predict use bit-identical preprocessing on any machine.
    """
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)  # channels_last uint8 view
    if x.shape[-2:] != (work_h, work_w):
        # uint8 antialiased resize has a fast vectorised CPU kernel (~4x faster than float).
        x = F.interpolate(x, size=(work_h, work_w), mode="bilinear", align_corners=False, antialias=True)
    return x.float().div_(255.0)
