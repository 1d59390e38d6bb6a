"""Hosted models: loaded once, kept in memory, each served by an inference thread of its own.

The registry is the in-memory half of a model's hosting state (the database holds the status).
``host`` starts loading a model from the registry's own loader thread, not from the shared job
pool, so that StartModel stays quick while long training jobs run. ``get`` returns the loaded
model, waiting for a load in progress, or None when the model is not (or no longer) meant to be
hosted; a request racing a StopModel therefore never reloads a model that is being stopped.

Requests are decoded on the HTTP threads; only the inference itself queues for the model's thread
(emulator/inference.py says why one thread per model). Inference units are the number of requests
that thread runs together, so units bound the parallel work on the model as they bound a model's
throughput in the cloud. Auto-scaling is that batching: up to MaxInferenceUnits (which is
MinInferenceUnits when StartModel gave no maximum; at most inference.MAX_BATCH) requests share a
batch when that many wait.
"""
from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from emulator.api.statuses import ModelStatus
from emulator.backend import Backend, per_backend
from emulator.inference import HostedModel, NotHosted

log = logging.getLogger(__name__)

ModelKey = tuple[str, int]  # (project, version)
# NotHosted is part of this module's interface: DetectAnomalies catches it as hosting.NotHosted.
__all__ = ["HostedModel", "HostingRegistry", "ModelKey", "NotHosted", "registry"]


class HostingRegistry:
    """The models a backend is hosting, keyed by (project, version)."""

    def __init__(self, device: str | None = None) -> None:
        self._device = device  # where hosted models compute (the server's --device)
        self._lock = threading.Lock()
        self._hosted: dict[ModelKey, Future[HostedModel]] = {}
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lookout-hosting")

    def host(self, key: ModelKey, locate: Callable[[], Path], units: int) -> Future[HostedModel]:
        """Start loading the model (if it is not already hosted); the future completes when it serves.
        `locate` returns the model's engine folder; it runs on the loader thread, since it may first
        fetch the artifact from the object store."""
        with self._lock:
            found = self._hosted.get(key)
            if found is None:
                found = self._loader.submit(
                    lambda: HostedModel(locate(), units, f"{key[0]}-{key[1]}", self._device))
                self._hosted[key] = found
            return found

    def get(self, key: ModelKey) -> HostedModel | None:
        """The hosted model, waiting for a load in progress; None if it is not hosted or failed to load."""
        with self._lock:
            found = self._hosted.get(key)
        if found is None or found.exception() is not None:
            return None
        return found.result()

    def serving(self) -> int:
        """How many models are loaded and serving (/metrics; loads in progress or failed not counted)."""
        with self._lock:
            loads = list(self._hosted.values())
        return sum(1 for load in loads if load.done() and not load.cancelled() and load.exception() is None)

    def stop(self, key: ModelKey) -> None:
        """Stop hosting: new requests see None at once; requests in flight finish first."""
        with self._lock:
            found = self._hosted.pop(key, None)
        if found is not None and found.exception() is None:
            found.result().close()

    def stop_later(self, key: ModelKey) -> Future[None]:
        """`stop` on the loader thread, after any load queued before it (StopModel returns at once)."""
        return self._loader.submit(self.stop, key)


def import_engine_early(backend: Backend) -> None:
    """With trained models to start, import the engine (PyTorch: seconds) in the background as the
    server starts, so that StartModel does not wait for it; the server accepts requests meanwhile.
    (Not a daemon thread: an interpreter must not exit in the middle of importing PyTorch.)"""
    if backend.store.models.any_in((ModelStatus.TRAINED, ModelStatus.HOSTING_FAILED)):
        threading.Thread(target=importlib.import_module, args=("engine.model",),
                         name="lookout-engine-import").start()


@per_backend
def registry(backend: Backend) -> HostingRegistry:
    """The hosting registry of a backend."""
    return HostingRegistry(backend.settings.device)
