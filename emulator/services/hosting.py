"""Hosted models: loaded once, kept in memory, each served by an inference thread of its own.

The registry is the in-memory half of a model's hosting state (the database holds the status).
``host`` starts loading a model from the registry's own loader thread, not from the shared job
pool, so that StartModel stays quick while long training jobs run. ``get`` returns the loaded
model, waiting for a load in progress, or None when the model is not (or no longer) meant to be
hosted; a request racing a StopModel therefore never reloads a model that is being stopped.

Requests are decoded on the HTTP threads; only the inference itself queues for the model's thread.
That thread loads the model, and then runs every prediction of it with all cores (torch's
intra-op threads), so a lone request is as fast as the machine allows. Inference units are the
number of requests it runs together: it takes up to that many waiting requests (never waiting for
more) and predicts them as one batch, so units bound the parallel work on the model as they bound
a model's throughput in the cloud. Auto-scaling is that batching: up to MaxInferenceUnits (which is
MinInferenceUnits when StartModel gave no maximum; at most MAX_BATCH) requests share a batch when
that many wait.
A batch prediction can differ from a lone one in the last bits of a float (the kernels sum in
another order); verdicts and confidences agree to ~1e-6.

Why one thread per model rather than a worker thread per unit: torch gives every thread that runs
it a pool of OpenMP threads, and libgomp makes all pools sleep between parallel regions as soon as
more OpenMP threads exist than cores. Two unit workers on a 2-core machine therefore made even a
lone request ~40% slower (every one of its ~100 parallel regions waited for a futex wake-up), for
no gain in throughput: the cores were already busy.
"""
from __future__ import annotations

import importlib
import logging
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from emulator.api.statuses import ModelStatus
from emulator.backend import Backend, per_backend

if TYPE_CHECKING:
    import engine

log = logging.getLogger(__name__)

ModelKey = tuple[str, int]  # (project, version)
# Batches larger than this are no faster per image on a CPU and only hold more memory.
MAX_BATCH = 4


class NotHosted(Exception):
    """The model stopped being hosted while a request was using it."""


@dataclass
class _Request:
    image: np.ndarray
    result: Future[engine.Prediction] = field(default_factory=Future)


class HostedModel:
    """A loaded engine model and the thread that runs its inferences."""

    def __init__(self, directory: Path, units: int, name: str) -> None:
        """Load the model on its new inference thread and warm it up; raises what loading raised."""
        self.units = units
        self._batch = min(units, MAX_BATCH)
        self._requests: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        loaded: Future[engine.Model] = Future()
        self._thread = threading.Thread(target=self._serve, args=(directory, loaded),
                                        name=f"lookout-infer-{name}", daemon=True)
        self._thread.start()
        self.model = loaded.result()

    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) of the training images; DetectAnomalies requires exactly this size."""
        return self.model.image_size

    @property
    def is_segmentation(self) -> bool:
        return self.model.is_segmentation

    def predict(self, image: np.ndarray) -> engine.Prediction:
        """Queue the image for the inference thread and wait (an exception in the model is re-raised here)."""
        request = _Request(image)
        with self._lock:
            if self._closed:  # a StopModel won the race with this request
                raise NotHosted
            self._requests.put(request)
        return request.result.result()

    def close(self) -> None:
        """Finish the requests already queued, then end the inference thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._requests.put(None)
        self._thread.join()

    def _serve(self, directory: Path, loaded: Future[engine.Model]) -> None:
        import engine

        try:
            self.model = engine.load_model(directory)
            self.model.warmup(self._batch)  # tracing happens here, so the first requests are not slower
        except BaseException as exc:  # noqa: BLE001 - handed to the thread that asked for the load
            loaded.set_exception(exc)
            return
        loaded.set_result(self.model)
        while (first := self._requests.get()) is not None:
            batch, last = [first], False
            while len(batch) < self._batch and not last:
                try:
                    waiting = self._requests.get_nowait()
                except queue.Empty:
                    break
                if waiting is None:
                    last = True
                else:
                    batch.append(waiting)
            self._run(batch)
            if last:
                return

    def _run(self, batch: list[_Request]) -> None:
        try:
            predictions = self.model.predict_batch([request.image for request in batch], batch_size=len(batch))
        except Exception as exc:  # noqa: BLE001 - goes back to the request(s) it belongs to
            if len(batch) == 1:
                batch[0].result.set_exception(exc)
            else:  # one request's failure must not fail the others
                for request in batch:
                    self._run([request])
            return
        for request, prediction in zip(batch, predictions, strict=True):
            request.result.set_result(prediction)


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
                found = self._loader.submit(HostedModel, directory, units, f"{key[0]}-{key[1]}")
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


def import_engine_early(backend: Backend) -> None:
    """With trained models to start, import the engine (PyTorch: seconds) in the background as the
    server starts, so that StartModel does not wait for it; the server accepts requests meanwhile.
    (Not a daemon thread: an interpreter must not exit in the middle of importing PyTorch.)"""
    if backend.store.query_one("SELECT 1 FROM models WHERE status IN (?, ?) LIMIT 1",
                               (ModelStatus.TRAINED, ModelStatus.HOSTING_FAILED)):
        threading.Thread(target=importlib.import_module, args=("engine.model",),
                         name="lookout-engine-import").start()


@per_backend
def registry(backend: Backend) -> HostingRegistry:
    """The hosting registry of a backend."""
    return HostingRegistry()
