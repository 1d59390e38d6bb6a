"""Service functions, one module per resource, and the background jobs they start.

Nothing here registers itself: ``create_app`` builds the app's operation registry from `registry()`
and hands `RECOVERY_HOOKS` to the backend it starts.
"""
from __future__ import annotations

from emulator.api.registry import OperationRegistry
from emulator.backend import RecoveryHook
from emulator.services import (
    artifacts,
    datasets,
    detection,
    hosting,
    model_lifecycle,
    packaging,
    projects,
    tags,
    training_job,
)

# Run in this order when a backend starts: dataset jobs first (models waiting for them follow), then
# models (hosting needs the engine, whose import starts early; artifacts only on this node's disk are
# published first), then packaging jobs.
RECOVERY_HOOKS: tuple[RecoveryHook, ...] = (
    datasets.resume_interrupted_jobs,
    hosting.import_engine_early,
    training_job.resume_training,
    artifacts.publish_local_artifacts,
    hosting.start_reconciler,
    packaging.resume_packaging,
)


def registry() -> OperationRegistry:
    """Every operation's service function."""
    return OperationRegistry(module.operations for module in (projects, datasets, tags, model_lifecycle, detection,
                                                              packaging))
