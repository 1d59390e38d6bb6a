"""Hosted models: loaded once, kept in memory, served by one inference worker per inference unit.

The registry is the in-memory half of a model's hosting state (the database holds the status).
``host`` starts loading a model on the registry's own loader thread, not on the shared job pool, so
that StartModel stays quick while long training jobs run. ``get`` returns the loaded model, waiting
for a load in progress, or None when the model is not (or no longer) meant to be hosted; a request
racing a StopModel therefore never reloads a model that is being stopped.

Each inference unit is an inference worker thread of the hosted model. Requests are decoded on the
HTTP threads and only the inference itself queues for a worker, so the units bound the parallel work
on the model, as inference units bound a model's throughput in the cloud. Auto-scaling is the
thread pool's: workers start as concurrent requests need them, up to MaxInferenceUnits (which is
MinInferenceUnits when StartModel gave no maximum), and stay until the model stops.
"""
from __future__ import annotations

import importlib
import logging
import threading
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from emulator.jobs import on_startup

if TYPE_CHECKING:
    import engine
    from emulator.backend import Backend

log = logging.getLogger(__name__)

ModelKey = tuple[str, int]  # (project, version)


class NotHosted(Exception):
    """The model stopped being hosted while a request was using it."""


class HostedModel:
    """A loaded engine model and its inference workers."""

    def __init__(self, model: "engine.Model", units: int, name: str) -> None:
        self.model = model
        self.units = units
        self._workers = ThreadPoolExecutor(max_workers=units, thread_name_prefix=f"lookout-infer-{name}")

    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) of the training images; DetectAnomalies requires exactly this size."""
        return self.model.image_size

    @property
    def is_segmentation(self) -> bool:
        return self.model.is_segmentation

    def predict(self, image: np.ndarray) -> "engine.Prediction":
        """Run inference on a free worker (an exception in the model is re-raised here, not lost)."""
        try:
            inference = self._workers.submit(self.model.predict, image)
        except RuntimeError:  # the pool is shut down: a StopModel won the race with this request
            raise NotHosted from None
        return inference.result()

    def close(self) -> None:
        """Finish the requests in flight, then release the workers."""
        self._workers.shutdown(wait=True)


def _load(directory: Path, units: int, name: str) -> HostedModel:
    import engine

    hosted = HostedModel(engine.load_model(directory), units, name)
    width, height = hosted.image_size
    hosted.predict(np.zeros((height, width, 3), dtype=np.uint8))  # warm up: the first request is not slower
    return hosted


class HostingRegistry:
    """The models a backend is hosting, keyed by (project, version)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hosted: dict[ModelKey, Future[HostedModel]] = {}
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lookout-hosting")

    def host(self, key: ModelKey, directory: Path, units: int) -> Future[HostedModel]:
        """Start loading the model (if it is not already hosted); the future completes when it serves."""
        with self._lock:
            found = self._hosted.get(key)
            if found is None:
                found = self._loader.submit(_load, directory, units, f"{key[0]}-{key[1]}")
                self._hosted[key] = found
            return found

    def get(self, key: ModelKey) -> HostedModel | None:
        """The hosted model, waiting for a load in progress; None if it is not hosted or failed to load."""
        with self._lock:
            found = self._hosted.get(key)
        if found is None or found.exception() is not None:
            return None
        return found.result()

    def stop(self, key: ModelKey) -> None:
        """Stop hosting: new requests see None at once; requests in flight finish first."""
        with self._lock:
            found = self._hosted.pop(key, None)
        if found is not None and found.exception() is None:
            found.result().close()

    def stop_later(self, key: ModelKey) -> Future[None]:
        """`stop` on the loader thread, after any load queued before it (StopModel returns at once)."""
        return self._loader.submit(self.stop, key)


@on_startup
def import_engine_early(backend: "Backend") -> None:
    """With trained models to start, import the engine (PyTorch: seconds) in the background as the
    server starts, so that StartModel does not wait for it; the server accepts requests meanwhile.
    (Not a daemon thread: an interpreter must not exit in the middle of importing PyTorch.)"""
    if backend.store.query_one("SELECT 1 FROM models WHERE status IN ('TRAINED', 'HOSTING_FAILED') LIMIT 1"):
        threading.Thread(target=importlib.import_module, args=("engine",), name="lookout-engine-import").start()


_REGISTRIES: "weakref.WeakKeyDictionary[Backend, HostingRegistry]" = weakref.WeakKeyDictionary()
_REGISTRIES_LOCK = threading.Lock()


def registry(backend: "Backend") -> HostingRegistry:
    """The hosting registry of a backend (several emulators can share one process, e.g. in tests)."""
    with _REGISTRIES_LOCK:
        found = _REGISTRIES.get(backend)
        if found is None:
            found = _REGISTRIES[backend] = HostingRegistry()
        return found
