"""Whether a project can be trained now, and if not, why (for the console's "Train model" button).

The answer comes from the very check CreateModel runs (`emulator.services.training_plan.plan_training`: the
documented minimums of limits.md and model-create-dataset.md, dataset states, mask colours), so the
button is enabled exactly when CreateModel would accept the request.
"""
from __future__ import annotations

from dataclasses import dataclass

from emulator.api.errors import ServiceError
from emulator.backend import Backend
from emulator.services.training_plan import plan_training


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str = ""


def training_readiness(backend: Backend, project: str) -> Readiness:
    try:
        plan_training(backend, project)
    except ServiceError as refused:
        return Readiness(False, refused.message)
    return Readiness(True)
