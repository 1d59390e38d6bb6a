"""Model artifact files: ``model.json`` (configuration, thresholds, report) + ``tensors.safetensors``.

This module only reads and writes the two files (it knows nothing of Model, which builds on it).
Loading never executes code from the artifact: JSON is parsed as data and tensors come from
safetensors (a flat header + raw buffers). The backbone trunk weights are stored too, so an artifact
keeps working if the weights package changes or disappears.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from .errors import EngineError

FORMAT = "lookout-emulator-engine-model"
# 2: parts stored under their own names ("bank.entries", config["heads"]); 1 is upgraded on load.
FORMAT_VERSION = 2
CONFIG_NAME = "model.json"
TENSORS_NAME = "tensors.safetensors"
_MAX_JSON = 64 * 1024 * 1024


def write(directory: str | Path, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Write the artifact; files are written under temporary names and renamed into place."""
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    config = {**config, "format": FORMAT, "format_version": FORMAT_VERSION}
    tmp_t, tmp_c = d / (TENSORS_NAME + ".tmp"), d / (CONFIG_NAME + ".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp_t), metadata={"format": FORMAT})
    tmp_c.write_text(json.dumps(config, indent=1, sort_keys=True, allow_nan=False))
    os.replace(tmp_t, d / TENSORS_NAME)
    os.replace(tmp_c, d / CONFIG_NAME)


def read(directory: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(config, tensors) of an artifact in the current layout; EngineError if missing or malformed."""
    from safetensors.torch import load_file

    d = Path(directory)
    cpath, tpath = d / CONFIG_NAME, d / TENSORS_NAME
    if not cpath.is_file() or not tpath.is_file():
        raise EngineError(f"{d} is not a model artifact (expected {CONFIG_NAME} and {TENSORS_NAME})")
    if cpath.stat().st_size > _MAX_JSON:
        raise EngineError(f"{cpath} is implausibly large")
    try:
        config = json.loads(cpath.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise EngineError(f"{cpath} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise EngineError(f"{cpath} is not a {FORMAT} artifact")
    version = config.get("format_version")
    if version not in (1, FORMAT_VERSION):
        raise EngineError(f"{cpath} has format_version {version!r}; this engine reads 1 and {FORMAT_VERSION}")
    try:
        tensors: dict[str, torch.Tensor] = load_file(str(tpath))
    except Exception as exc:  # noqa: BLE001 - corrupt file is a user-visible artifact problem
        raise EngineError(f"cannot read {tpath}: {exc}") from exc
    if version == 1:
        config, tensors = _upgrade_v1(config, tensors)
    return config, tensors


# Version 1 kept every part's tensors at the top level under these names.
_V1_TENSORS = {
    "feat_mean": "bank.mean", "feat_std": "bank.std", "bank": "bank.entries",
    "head_mean": "supervised.mean", "head_scale": "supervised.scale", "head_coef": "supervised.coef",
    "patch_mean": "patch.mean", "patch_scale": "patch.scale", "patch_coef": "patch.coef",
    "patch_intercept": "patch.intercept",
}


def _upgrade_v1(config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """Models saved by earlier releases keep loading (and predict exactly as before)."""
    tensors = {_V1_TENSORS.get(k, k): v for k, v in tensors.items()}
    entries = tensors.get("bank.entries")
    heads: dict[str, Any] = {"bank": {"size": int(entries.shape[0])} if entries is not None else {}}
    if "supervised.coef" in tensors and "head_intercept" in config:
        heads["supervised"] = {"intercept": config.pop("head_intercept")}
    if "patch.coef" in tensors:
        heads["patch"] = {"labels": int(tensors["patch.coef"].shape[0] - 1)}
    if "combo" in config:
        heads["combined"] = config.pop("combo")
    return {**config, "heads": heads, "format_version": FORMAT_VERSION}, tensors
