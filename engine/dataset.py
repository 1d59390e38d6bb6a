"""Training data as the engine uses it: validated images, labels and decoded masks.

All checks of ``fit``'s inputs live here, so a bad item is rejected before any feature is computed,
with a message that names it.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .errors import EngineError
from .images import decode_mask, labelled_image, normalise_hex, parse_hex
from .types import Item


class TrainingData:
    """Validated training data (parallel lists, one entry per labelled item)."""

    def __init__(self) -> None:
        self.images: list[np.ndarray] = []
        self.y: list[int] = []
        self.names: list[str] = []
        self.masks: list[np.ndarray | None] = []  # (H, W) label index maps
        self.labels: list[str] = []
        self.colours: list[str] = []


def _validate_label_colors(label_colors: Mapping[str, str] | None) -> tuple[list[str], list[str]]:
    if label_colors is None:
        return [], []
    if not isinstance(label_colors, Mapping):
        raise EngineError("label_colors must be a mapping of anomaly label -> '#RRGGBB'")
    labels, colours = [], []
    for name, colour in label_colors.items():
        if not isinstance(name, str) or not name.strip():
            raise EngineError(f"label_colors: label names must be non-empty strings, got {name!r}")
        if name.lower() == "background":
            raise EngineError("label_colors: 'background' is implicit (white/black); do not list it")
        c = normalise_hex(colour, f"label_colors[{name!r}]")
        if c in ("#FFFFFF", "#000000"):
            raise EngineError(f"label_colors[{name!r}]: {c} is reserved for background")
        if c in colours:
            raise EngineError(f"label_colors: colour {c} is used by two labels")
        labels.append(name)
        colours.append(c)
    return labels, colours


def prepare(train: Sequence[Item], label_colors: Mapping[str, str] | None) -> TrainingData:
    """Check every labelled item (unlabelled ones are skipped) and decode masks to label indices."""
    if isinstance(train, (str, bytes)) or not isinstance(train, Sequence):
        raise EngineError("train must be a sequence of engine.Item")
    labels, colours = _validate_label_colors(label_colors)
    has_mask = any(isinstance(it, Item) and it.mask is not None and it.label is not None for it in train)
    if has_mask and not labels:
        raise EngineError("training items have masks, so label_colors (anomaly label -> '#RRGGBB') is required")
    palette = [parse_hex(c, "label colour") for c in colours]
    d = TrainingData()
    if has_mask:
        d.labels, d.colours = labels, colours
    ref: tuple[int, int] | None = None
    ref_name = ""
    for i, it in enumerate(train):
        checked = labelled_image(it, i, "training item")
        if checked is None:
            continue
        what, img = checked
        shape = img.shape[:2]
        if ref is None:
            ref, ref_name = shape, what
        elif shape != ref:
            raise EngineError(
                f"{what}: image is {shape[1]}x{shape[0]} but {ref_name} is {ref[1]}x{ref[0]}; all images "
                "of a dataset must have the same size"
            )
        mask = None
        if it.mask is not None and has_mask and it.label == "anomaly":
            mask = decode_mask(it.mask, shape, palette, what)
        d.images.append(img)
        d.y.append(1 if it.label == "anomaly" else 0)
        d.names.append(it.name)
        d.masks.append(mask)
    n_norm = d.y.count(0)
    if n_norm < 2:
        raise EngineError(
            f"training needs at least 2 images labelled 'normal' (got {n_norm}); the model learns what "
            "normal looks like from them"
        )
    return d
