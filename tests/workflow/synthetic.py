"""Tiny synthetic "cookies" in the layouts the client examples read, so their tests train in seconds.

A normal image is a round biscuit with chocolate chips on a tray; an anomaly has a dark crack
across it, and its mask marks the crack in the cookies dataset's label colour.
"""
from __future__ import annotations

import json
import math
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

SIZE = 96
CRACK_COLOUR = (0x23, 0xA4, 0x36)  # "cracked" in the real cookies masks


def cookie(rng: random.Random, cracked: bool) -> tuple[Image.Image, Image.Image | None]:
    """One image, and for a cracked cookie its mask (crack pixels in CRACK_COLOUR on black)."""
    image = Image.new("RGB", (SIZE, SIZE), (200 + rng.randint(-6, 6), 200, 205))
    draw = ImageDraw.Draw(image)
    cx, cy, r = SIZE // 2 + rng.randint(-3, 3), SIZE // 2 + rng.randint(-3, 3), 34
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(190 + rng.randint(-8, 8), 140, 80))
    for _ in range(7):
        a, d = rng.uniform(0, 6.28), rng.uniform(0, r - 8)
        x, y = cx + d * math.cos(a), cy + d * math.sin(a)
        draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=(70, 40, 20))
    mask = None
    if cracked:
        start = (cx - r + 6, cy + rng.randint(-20, 20))
        end = (cx + r - 6, cy + rng.randint(-20, 20))
        middle = (cx + rng.randint(-6, 6), cy + rng.randint(-12, 12))
        draw.line([start, middle, end], fill=(35, 20, 10), width=4)
        mask = Image.new("RGB", (SIZE, SIZE))
        ImageDraw.Draw(mask).line([start, middle, end], fill=CRACK_COLOUR, width=4)
    return image.filter(ImageFilter.GaussianBlur(0.6)), mask


def write_folder_layout(root: Path, counts: dict[str, int], seed: int = 0) -> Path:
    """Images under ``root/<split>/<label>/`` for counts such as ``{"train/normal": 10, "extra": 3}``."""
    rng = random.Random(seed)
    for folder, count in counts.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            cracked = folder.endswith("anomaly") or (folder == "extra" and i % 2 == 1)
            cookie(rng, cracked)[0].save(root / folder / f"{folder.replace('/', '-')}-{i}.jpg", quality=95)
    return root


def write_cookies_layout(root: Path, normal: int, anomaly: int, test: int, seed: int = 0) -> Path:
    """The getting-started cookies layout: training images, masks, template.manifest, test-images."""
    rng = random.Random(seed)
    files = root / "dataset-files"
    for folder in ("training-images", "mask-images", "manifests"):
        (files / folder).mkdir(parents=True, exist_ok=True)
    (root / "test-images").mkdir(parents=True, exist_ok=True)
    lines = []
    for label, count in (("normal", normal), ("anomaly", anomaly)):
        for i in range(1, count + 1):
            image, mask = cookie(rng, label == "anomaly")
            image.save(files / "training-images" / f"{label}-{i}.jpg", quality=95)
            entry = {"source-ref": f"training-images/{label}-{i}.jpg", "anomaly-label": 1,
                     "anomaly-label-metadata": {"class-name": label, "human-annotated": "yes",
                                                "type": "groundtruth/image-classification", "job-name": "synthetic"}}
            if mask is not None:
                mask.save(files / "mask-images" / f"{label}-{i}.png")
                entry["anomaly-mask-ref"] = f"mask-images/{label}-{i}.png"
                entry["anomaly-mask-ref-metadata"] = {
                    "internal-color-map": {"0": {"class-name": "cracked", "hex-color": "#23A436"}},
                    "type": "groundtruth/semantic-segmentation", "human-annotated": "yes", "job-name": "synthetic"}
            lines.append(json.dumps(entry))
    (files / "manifests" / "template.manifest").write_text("\n".join(lines) + "\n")
    for i in range(1, test + 1):
        label = "anomaly" if i % 2 else "normal"
        cookie(rng, label == "anomaly")[0].save(root / "test-images" / f"test-{label}-{i}.jpg", quality=95)
    return root
