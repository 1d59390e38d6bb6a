"""Helpers for engine tests: a synthetic textured product with drawn defects.

Normal images are a woven-fabric-like texture (two sinusoid families + noise, small random phase
shifts so no two are identical). Defects are drawn on top: a dark scratch (line) or a red stain
(disc), with the exact defect mask kept as ground truth. Sizes are small (128x128) and fits use a
reduced resolution / memory bank so the whole engine suite stays fast on 2 CPU cores.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from engine import FitOptions, Item

SIZE = 128
STAIN = "#E0201C"
SCRATCH = "#1C3FE0"


def texture(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """A normal sample: fabric-like texture in beige tones."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    px, py = rng.uniform(0, 2 * np.pi, 2)
    t = 0.5 + 0.22 * np.sin(xx * 0.55 + px) * np.sin(yy * 0.55 + py) + 0.08 * np.sin((xx + yy) * 0.21 + px)
    t = t + rng.normal(0, 0.035, (size, size)).astype(np.float32)
    base = np.array([200, 170, 120], dtype=np.float32)
    img = np.clip(t[..., None] * base[None, None, :] * 1.3, 0, 255)
    return img.astype(np.uint8)


def draw_defect(img: np.ndarray, rng: np.random.Generator, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Draw a defect of ``kind`` ('stain' or 'scratch'); return (image, boolean defect mask)."""
    size = img.shape[0]
    yy, xx = np.mgrid[0:size, 0:size]
    if kind == "stain":
        cy, cx = rng.integers(24, size - 24, 2)
        r = rng.uniform(7, 11)
        m = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        colour = np.array([150, 30, 25], dtype=np.float32)
    else:
        y0, x0 = rng.integers(20, size - 20, 2)
        ang = rng.uniform(0, np.pi)
        length = rng.uniform(30, 50)
        dy, dx = np.sin(ang), np.cos(ang)
        # distance to the segment
        t = np.clip((yy - y0) * dy + (xx - x0) * dx, -length / 2, length / 2)
        dist = np.hypot(yy - (y0 + t * dy), xx - (x0 + t * dx))
        m = dist <= 2.2
        colour = np.array([35, 30, 30], dtype=np.float32)
    out = img.astype(np.float32)
    out[m] = 0.25 * out[m] + 0.75 * colour
    return out.astype(np.uint8), m


def make_items(n_normal: int, n_anomaly: int, seed: int, masks: bool = False, kinds=("stain", "scratch")):
    """Items plus the boolean ground-truth defect masks (None for normals)."""
    rng = np.random.default_rng(seed)
    items, truth = [], []
    for i in range(n_normal):
        items.append(Item(texture(rng), "normal", None, f"normal-{i}"))
        truth.append(None)
    colours = {"stain": STAIN, "scratch": SCRATCH}
    for i in range(n_anomaly):
        kind = kinds[i % len(kinds)]
        img, m = draw_defect(texture(rng), rng, kind)
        mask = None
        if masks:
            mask = np.full((SIZE, SIZE, 3), 255, dtype=np.uint8)
            c = colours[kind]
            mask[m] = [int(c[1:3], 16), int(c[3:5], 16), int(c[5:7], 16)]
        items.append(Item(img, "anomaly", mask, f"anomaly-{kind}-{i}"))
        truth.append(m)
    return items, truth


def fast_options(**kw) -> FitOptions:
    """Options that keep synthetic fits to a couple of seconds on 2 cores."""
    base = dict(seed=0, resolution=160, min_resolution=160, memory_bank_size=512, max_bank_candidates=20000)
    base.update(kw)
    return FitOptions(**base)


def cookies_dir() -> Path:
    """The shared cookies dataset, located relative to the repository (or LOOKOUT_COOKIES_DIR)."""
    env = os.environ.get("LOOKOUT_COOKIES_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "cookies"


def kolektor_dir() -> Path:
    """The shared KolektorSDD development set (or LOOKOUT_KOLEKTOR_DIR)."""
    env = os.environ.get("LOOKOUT_KOLEKTOR_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "kolektorsdd"
