"""Model artifact: ``model.json`` (configuration, thresholds, report) + ``tensors.safetensors``.

Loading never executes code from the artifact: JSON is parsed as data and tensors come from
safetensors (a flat header + raw buffers). The backbone trunk weights are stored too, so an artifact
keeps working if the weights package changes or disappears.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .errors import EngineError
from .model import FORMAT, FORMAT_VERSION, Model

CONFIG_NAME = "model.json"
TENSORS_NAME = "tensors.safetensors"
_MAX_JSON = 64 * 1024 * 1024


def save_model(model: Model, directory: str | Path) -> None:
    """Write the artifact; files are written under temporary names and renamed into place."""
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    config = dict(model.config)
    config["training"] = model.training_report
    if model.test_metrics is not None:
        config["test_metrics"] = model.test_metrics.to_dict()
    tensors = {k: v.contiguous() for k, v in model.tensors.items()}
    tmp_t, tmp_c = d / (TENSORS_NAME + ".tmp"), d / (CONFIG_NAME + ".tmp")
    save_file(tensors, str(tmp_t), metadata={"format": FORMAT})
    tmp_c.write_text(json.dumps(config, indent=1, sort_keys=True, allow_nan=False))
    os.replace(tmp_t, d / TENSORS_NAME)
    os.replace(tmp_c, d / CONFIG_NAME)


def load_model(directory: str | Path) -> Model:
    """Load an artifact written by ``Model.save``; EngineError if it is missing or malformed."""
    from safetensors.torch import load_file

    from .metrics import Metrics

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
    if config.get("format_version") != FORMAT_VERSION:
        raise EngineError(
            f"{cpath} has format_version {config.get('format_version')!r}; this engine reads {FORMAT_VERSION}"
        )
    try:
        tensors: dict[str, torch.Tensor] = load_file(str(tpath))
    except Exception as exc:  # noqa: BLE001 - corrupt file is a user-visible artifact problem
        raise EngineError(f"cannot read {tpath}: {exc}") from exc
    test_metrics = config.pop("test_metrics", None)
    try:
        model = Model(config, tensors)
    except EngineError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise EngineError(f"{d}: malformed model artifact ({type(exc).__name__}: {exc})") from exc
    if isinstance(test_metrics, dict):
        try:
            model.test_metrics = Metrics(**test_metrics)
        except TypeError:
            model.test_metrics = None
    return model
