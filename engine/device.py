"""Which torch device the engine computes on: ``auto`` (CUDA when torch sees one), ``cpu`` or ``cuda``.

The choice is a run-time setting, never part of a model: artifacts hold CPU tensors, so a model trained
on a GPU loads and predicts on a CPU-only machine and the other way round. ``LOOKOUT_DEVICE`` in the
environment is the default when the caller names none (the server's ``--device`` sets it explicitly).
"""
from __future__ import annotations

import os

import torch

from .errors import EngineError
from .options import DEVICES as CHOICES

ENV = "LOOKOUT_DEVICE"


def resolve_device(name: str | None = None) -> torch.device:
    """The device for ``name`` (None: ``$LOOKOUT_DEVICE``, else auto); EngineError for an unknown name
    or for ``cuda`` on a machine where torch sees no CUDA device."""
    choice = (name if name is not None else os.environ.get(ENV, "auto")).strip().lower()
    if choice.startswith("cuda:"):
        index = choice.split(":", 1)[1]
        if not index.isdigit():
            raise EngineError(f"device {name!r}: expected cuda or cuda:N")
    elif choice not in CHOICES:
        raise EngineError(f"device {name!r} is not one of {', '.join(CHOICES)}")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice.startswith("cuda"):
        if not torch.cuda.is_available():
            raise EngineError(f"device {choice!r} was asked for but torch sees no CUDA device "
                              "(a CPU-only torch build, or no GPU/driver); use auto or cpu")
        return torch.device(choice)
    return torch.device("cpu")
