"""The shared datasets as the benchmarks split them, how a benchmark is told its seeds, and how it
hands its results over.

- KolektorSDD (``../shared/datasets/kolektorsdd``): its own train (140 normal, 29 anomaly) and test
  (100 normal, 21 anomaly) splits, no physical item in both; every anomaly has a crack mask, stored
  single-channel 0/255.
- cookies (``../shared/datasets/cookies``): the 63 training images of the getting-started template
  manifest (32 anomalies with colour masks) and the 22 separate test images (14 normal, 8 anomaly).

Only reads the datasets; masks are handed out as colour arrays (one anomaly label per dataset).
"""
from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
DEFAULT_ROOTS = {"kolektorsdd": SHARED / "kolektorsdd",
                 "cookies": Path(os.environ.get("LOOKOUT_COOKIES_DIR") or SHARED / "cookies")}
# The anomaly label and colour each dataset's masks get in a segmentation manifest or engine Item.
LABEL_COLOURS = {"kolektorsdd": {"crack": "#FF0000"}, "cookies": {"cracked": "#23A436"}}


@dataclass(frozen=True)
class Picture:
    """One labelled image: its file, "normal" or "anomaly", and its mask file if it has one."""

    path: Path
    label: str
    mask: Path | None = None


def kolektorsdd(root: Path, split: str) -> list[Picture]:
    """``split`` is "train" or "test": the dataset's own folders; anomalies carry their mask."""
    if not (root / split / "anomaly").is_dir():
        raise FileNotFoundError(f"KolektorSDD is not at {root} (no {split}/anomaly/)")
    return [Picture(path, label, root / "masks" / split / path.name if label == "anomaly" else None)
            for label in ("normal", "anomaly") for path in sorted((root / split / label).glob("*.png"))]


def cookies(root: Path, split: str) -> list[Picture]:
    """"train": the template manifest's 63 images (masks as it names them); "test": test-images/."""
    files = root / "dataset-files"
    manifest = files / "manifests" / "template.manifest"
    if not manifest.is_file():
        raise FileNotFoundError(f"the cookies dataset is not at {root} (no {manifest.relative_to(root)})")
    if split == "test":
        return [Picture(p, "anomaly" if "anomaly" in p.stem else "normal")
                for p in sorted((root / "test-images").glob("*.jpg"))]
    pictures = []
    for raw in manifest.read_text().splitlines():
        line = json.loads(raw)
        mask = files / line["anomaly-mask-ref"] if "anomaly-mask-ref" in line else None
        pictures.append(Picture(files / line["source-ref"], line["anomaly-label-metadata"]["class-name"], mask))
    return pictures


SPLITS = {"kolektorsdd": kolektorsdd, "cookies": cookies}


def load_split(dataset: str, split: str, root: Path | None = None) -> list[Picture]:
    return SPLITS[dataset](root or DEFAULT_ROOTS[dataset], split)


def rgb(path: Path) -> np.ndarray:
    """An image as (H, W, 3) uint8 RGB (greyscale replicated)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def colour_mask(dataset: str, path: Path) -> np.ndarray:
    """A mask as the (H, W, 3) uint8 colour mask a manifest or engine Item wants: the dataset's one
    label colour on black. KolektorSDD's 0/255 masks are recoloured; colour masks pass unchanged."""
    with Image.open(path) as mask:
        if mask.mode in ("1", "L", "I", "I;16"):
            colour = next(iter(LABEL_COLOURS[dataset].values()))
            marked = np.asarray(mask.convert("L")) > 127
            out = np.zeros((*marked.shape, 3), np.uint8)
            out[marked] = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
            return out
        return np.asarray(mask.convert("RGB"))


def seed_list(text: str) -> list[int]:
    """``--seeds``: comma-separated non-negative whole numbers or inclusive ranges (``0,1,2``, ``0-9``,
    ``0-4,7``), each seed once, in the order given."""
    seeds: list[int] = []
    try:
        for word in (w.strip() for w in text.split(",")):
            if not word:
                continue
            low, _, high = word.partition("-")
            seeds.extend(range(int(low), int(high) + 1) if high else [int(low)])
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of whole numbers or ranges "
                                         "A-B") from None
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: name one or more seeds, each 0 or more")
    return list(dict.fromkeys(seeds))


def write_results(results: dict[str, Any], path: Path | None, echo: bool = True) -> None:
    """Close a benchmark's results: the load average at the end, printed as JSON (unless `echo` is
    False: a benchmark that prints a summary of its own) and, if asked, saved."""
    results["machine"]["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    text = json.dumps(results, indent=2)
    if echo:
        print(text)
    if path:
        path.write_text(text + "\n")
