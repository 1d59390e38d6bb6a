"""A loaded model and the one thread that runs its inferences: what hosting a model means, both for
the API's StartModel (hosting.py) and for the edge agent (emulator/edge/agent.py).

This module imports neither the web stack nor torch (the engine loads on the inference thread), so
the edge agent can use it without Flask.

Requests are decoded on the callers' threads; only the inference itself queues for the model's
thread. That thread loads the model, and then runs every prediction of it with all cores (torch's
intra-op threads), so a lone request is as fast as the machine allows. ``batch`` is the number of
requests it runs together: it takes up to that many waiting requests (never waiting for more) and
predicts them as one batch. A batch prediction can differ from a lone one in the last bits of a
float (the kernels sum in another order); verdicts and confidences agree to ~1e-6.

Why one thread per model rather than a worker thread per unit of parallelism: torch gives every
thread that runs it a pool of OpenMP threads, and libgomp makes all pools sleep between parallel
regions as soon as more OpenMP threads exist than cores. Two workers on a 2-core machine therefore
made even a lone request ~40% slower (every one of its ~100 parallel regions waited for a futex
wake-up), for no gain in throughput: the cores were already busy.
"""
from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import engine

# Batches larger than this are no faster per image on a CPU and only hold more memory.
MAX_BATCH = 4


class NotHosted(Exception):
    """The model stopped being hosted while a request was using it."""


class Overloaded(Exception):
    """As many requests as the model may hold are already waiting for it."""


@dataclass
class _Request:
    image: np.ndarray
    result: Future[engine.Prediction] = field(default_factory=Future)


class HostedModel:
    """A loaded engine model and the thread that runs its inferences."""

    def __init__(self, directory: Path, units: int, name: str, device: str | None = None,
                 max_waiting: int | None = None) -> None:
        """Load the model on its new inference thread and warm it up; raises what loading raised.

        units: requests predicted together at most (capped at MAX_BATCH).
        device: passed to ``engine.load_model`` when given (None: the engine's default, the CPU).
        max_waiting: requests that may wait for the inference thread before ``predict`` refuses
            more with Overloaded (None: no limit; the API's hosting relies on its HTTP threads).
        """
        self.units = units
        self._batch = min(units, MAX_BATCH)
        self._device = device
        self._max_waiting = max_waiting
        self._waiting = 0
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
            if self._max_waiting is not None and self._waiting >= self._max_waiting:
                raise Overloaded
            self._waiting += 1
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
            options = {} if self._device is None else {"device": self._device}
            self.model = engine.load_model(directory, **options)
            self.model.warmup(self._batch)  # tracing happens here, so the first requests are not slower
        except BaseException as exc:  # noqa: BLE001 - handed to the thread that asked for the load
            loaded.set_exception(exc)
            return
        loaded.set_result(self.model)
        while (first := self._take()) is not None:
            batch, last = [first], False
            while len(batch) < self._batch and not last:
                try:
                    waiting = self._take(block=False)
                except queue.Empty:
                    break
                if waiting is None:
                    last = True
                else:
                    batch.append(waiting)
            self._run(batch)
            if last:
                return

    def _take(self, block: bool = True) -> _Request | None:
        """The next queued request (None: close() was called); it no longer counts as waiting."""
        request = self._requests.get(block)
        if request is not None:
            with self._lock:
                self._waiting -= 1
        return request

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
