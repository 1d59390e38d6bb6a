"""Hosted models as desired state: the store says what should be hosted, every inference node loads it.

StartModel and StopModel change only the model's status, which is the desired state: STARTING_HOSTING
and HOSTED mean "host it", STOPPING_HOSTING means "stop it". Every server runs one `Reconciler`
thread that makes its node match: an inference node loads what should be hosted and it lacks, unloads
what should not be hosted, and records what it holds (``model_hostings``: loading, serving or failed)
next to its heartbeat (``nodes``). Every node, whatever its roles, then settles the statuses from
what the live nodes hold (`_settle`, the one place these transitions are written):

    STARTING_HOSTING -> HOSTED           once any live node serves the model
    STARTING_HOSTING | HOSTED -> HOSTING_FAILED
                                         when every live inference node failed to load it
    STOPPING_HOSTING -> TRAINED          once no live node holds it

A node whose heartbeat (every ``--job-heartbeat`` seconds) is older than three heartbeats is dead: its
rows are ignored, and deleted by the first node that notices. A model stays HOSTED while any live node
serves it, as a cloud endpoint does while one of its instances is up; when its only serving node dies,
the others (which hold it too, or load it on their next pass) serve it again, still HOSTED.

The reconciler wakes at once when this node's StartModel or StopModel (or a finished load) asks it
to, on PostgreSQL also when another node's does (LISTEN/NOTIFY on the channel
`store.repositories.HOSTING_CHANNEL`), and otherwise polls the store every second, so a fleet
converges within a second even when a notification is lost; the embedded single node runs the very
same code with one node.

The registry is the in-memory half: one loaded model and its inference thread per hosted model
(emulator/inference.py says why one thread per model). Requests are decoded on the HTTP threads;
only the inference itself queues for the model's thread. Inference units are the number of requests
that thread runs together, so units bound the parallel work on the model as they bound a model's
throughput in the cloud. Auto-scaling is that batching: up to MaxInferenceUnits (which is
MinInferenceUnits when StartModel gave no maximum; at most inference.MAX_BATCH) requests share a
batch when that many wait. In a fleet these units apply per node.
"""
from __future__ import annotations

import importlib
import logging
import math
import os
import secrets
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as LoadTimeout
from dataclasses import dataclass
from pathlib import Path

from emulator.api.statuses import ModelStatus
from emulator.backend import Backend, per_backend
from emulator.config import INFERENCE
from emulator.inference import HostedModel, NotHosted
from emulator.services import artifacts
from emulator.store.records import Model, ModelHosting

log = logging.getLogger(__name__)

ModelKey = tuple[str, int]  # (project, version)
# NotHosted is part of this module's interface: DetectAnomalies catches it as hosting.NotHosted.
__all__ = ["HostedModel", "HostingRegistry", "LoadTimeout", "ModelKey", "NotHosted", "Reconciler", "registry"]

LOADING, SERVING, FAILED = "loading", "serving", "failed"  # what a node holds of a model
POLL_SECONDS = 1.0  # how often a reconciler looks at the store when nothing woke it
DEAD_AFTER_HEARTBEATS = 3
# How long DetectAnomalies waits for this node's own load of a HOSTED model before it gives up.
LOAD_WAIT_SECONDS = 60.0
# How long a stopping node waits for its reconciler and listener threads (a pass in progress, a
# notification wait of LISTEN_TIMEOUT_S) before it leaves the fleet without them.
THREAD_STOP_SECONDS = 10.0
NOT_HOSTED_MESSAGE = "The model is trained and not hosted."
HOSTED_MESSAGE = "The model is hosted and ready for DetectAnomalies."
_WANTED = (ModelStatus.STARTING_HOSTING, ModelStatus.HOSTED)
_SETTLED_HERE = (*_WANTED, ModelStatus.STOPPING_HOSTING)


@dataclass(frozen=True)
class Load:
    """A model this node loads or has loaded, and the units it was loaded for."""

    future: Future[HostedModel]
    units: int

    def state(self) -> tuple[str, BaseException | None]:
        """LOADING, SERVING or FAILED, with the loading error."""
        if not self.future.done():
            return LOADING, None
        error = self.future.exception()
        return (SERVING, None) if error is None else (FAILED, error)


class HostingRegistry:
    """The models this node hosts, keyed by (project, version)."""

    def __init__(self, device: str | None = None) -> None:
        self._device = device  # where hosted models compute (the server's --device)
        self._lock = threading.Lock()
        self._hosted: dict[ModelKey, Load] = {}
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lookout-hosting")

    def host(self, key: ModelKey, locate: Callable[[], Path], units: int,
             done: Callable[[], None] | None = None) -> Future[HostedModel]:
        """Start loading the model (if it is not already hosted); the future completes when it serves.
        `locate` returns the model's engine folder; it runs on the loader thread, since it may first
        fetch the artifact from the object store. `done` is called when the load ends, either way."""
        with self._lock:
            found = self._hosted.get(key)
            if found is None:
                found = Load(self._loader.submit(
                    lambda: HostedModel(locate(), units, f"{key[0]}-{key[1]}", self._device)), units)
                if done is not None:
                    found.future.add_done_callback(lambda _: done())
                self._hosted[key] = found
            return found.future

    def load_of(self, key: ModelKey) -> Load | None:
        """The model's load on this node, done or in progress (None: this node does not hold it)."""
        with self._lock:
            return self._hosted.get(key)

    def held(self) -> dict[ModelKey, Load]:
        """What this node loads or has loaded now."""
        with self._lock:
            return dict(self._hosted)

    def serving(self) -> int:
        """How many models are loaded and serving (/metrics; loads in progress or failed not counted)."""
        return sum(1 for load in self.held().values() if load.state()[0] == SERVING)

    def stop(self, key: ModelKey) -> None:
        """Stop hosting: ``load_of`` finds nothing from now on, so new requests are refused; requests
        in flight finish first.

        A load in progress is not waited for: it can take as long as fetching a large artifact from
        the object store, and the reconciler that calls this would miss its heartbeats meanwhile (and
        a leaving node its stop deadline). The model is closed when its load ends instead, on the
        loader's thread; a loaded one is closed here and now."""
        with self._lock:
            found = self._hosted.pop(key, None)
        if found is not None:
            found.future.add_done_callback(_close_if_loaded)


def _close_if_loaded(load: Future[HostedModel]) -> None:
    """Close a model whose hosting was stopped, once its load has ended (a failed load holds nothing)."""
    if load.exception() is None:
        load.result().close()


class Reconciler:
    """Makes this node hold what the store says should be hosted, keeps its heartbeat and settles the
    hosting statuses; see the module docstring. One per backend, on a thread of its own."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        # Unique per process start: a restarted server is a new node, and its old rows age out.
        self.node_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self._roles = backend.settings.roles
        self._heartbeat = backend.settings.job_heartbeat_seconds
        self._last_beat = -math.inf
        self._wake = threading.Event()
        self._passes = threading.Condition()
        self._begun = self._finished = 0  # reconciliation passes begun and finished on the thread
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._listener: threading.Thread | None = None

    def start(self) -> None:
        """Join the fleet: register, reconcile once (loads begin, a stop a crash interrupted completes),
        then keep reconciling on a thread until the backend closes."""
        store = self._backend.store
        if store.database.is_sqlite:
            # One server per data dir (emulator.datadir): any node the database lists died with its process.
            store.hostings.forget_dead(0)
        self._beat()
        log.info("hosting node %s started (roles: %s)", self.node_id, ",".join(self._roles))
        self.reconcile()
        self._thread = threading.Thread(target=self._run, name="lookout-reconciler", daemon=True)
        self._thread.start()
        if not store.database.is_sqlite:
            self._listener = threading.Thread(target=self._listen, name="lookout-hosting-listener", daemon=True)
            self._listener.start()
        self._backend.on_close(self.stop)

    def wake(self) -> None:
        """Reconcile now (StartModel, StopModel, a finished load)."""
        self._wake.set()

    def reconcile_now(self, timeout: float) -> None:
        """Reconcile now and wait (up to `timeout` seconds) until a pass that began after this call has
        finished: what this node holds then matches what the store said (a request for a model not
        loaded here). Returns at once once the node is stopping: no pass will come."""
        with self._passes:
            target = self._begun + 1
        self.wake()
        with self._passes:
            self._passes.wait_for(lambda: self._finished >= target or self._stopping.is_set(), timeout)

    def stop(self) -> None:
        """Leave the fleet: unload everything and remove this node's rows, so that nothing waits for
        its heartbeat to age."""
        self._stopping.set()
        self._wake.set()
        with self._passes:
            self._passes.notify_all()  # requests waiting in reconcile_now
        for thread in (self._thread, self._listener):
            if thread is not None:
                thread.join(THREAD_STOP_SECONDS)
                if thread.is_alive():
                    log.warning("hosting node %s: thread %s did not stop within %.0f s; leaving without it",
                                self.node_id, thread.name, THREAD_STOP_SECONDS)
        hosts = registry(self._backend)
        for key in hosts.held():
            hosts.stop(key)
        try:
            self._backend.store.hostings.leave(self.node_id)
        except Exception:  # noqa: BLE001 - the database is away: the node's rows age out instead
            log.exception("hosting node %s could not remove its rows; they count until its heartbeat ages",
                          self.node_id)

    def _run(self) -> None:
        while True:
            self._wake.wait(min(POLL_SECONDS, self._heartbeat))
            self._wake.clear()
            if self._stopping.is_set():
                return
            with self._passes:
                self._begun += 1
            try:
                if time.monotonic() - self._last_beat >= self._heartbeat:
                    self._beat()
                self.reconcile()
            except Exception:  # noqa: BLE001 - the database is away for a moment: register again, look again
                log.exception("hosting reconciliation on node %s failed", self.node_id)
                self._last_beat = -math.inf
            with self._passes:
                self._finished += 1
                self._passes.notify_all()

    def _listen(self) -> None:
        """Wake on every announcement of another node's StartModel or StopModel (PostgreSQL NOTIFY); the
        poll covers the time a lost connection takes to come back."""
        while not self._stopping.is_set():
            try:
                self._backend.store.hostings.listen(self.wake, self._stopping)
            except Exception as exc:  # noqa: BLE001 - the database is away: listen again after a heartbeat
                log.warning("hosting node %s lost its notification connection (%s); polling meanwhile",
                            self.node_id, exc)
                self._stopping.wait(self._heartbeat)

    def _beat(self) -> None:
        hostings = self._backend.store.hostings
        hostings.beat(self.node_id, self._roles, self._heartbeat)
        self._last_beat = time.monotonic()
        dead = hostings.forget_dead(DEAD_AFTER_HEARTBEATS)
        if dead:
            log.warning("hosting nodes that missed %d heartbeats dropped out: %s", DEAD_AFTER_HEARTBEATS,
                        ", ".join(dead))

    def reconcile(self) -> None:
        """One pass: load and unload on an inference node, then settle the statuses."""
        store = self._backend.store
        models = store.models.all_in(_SETTLED_HERE)
        holdings = store.hostings.live(DEAD_AFTER_HEARTBEATS)
        if INFERENCE in self._roles and self._converge(models, holdings):
            holdings = store.hostings.live(DEAD_AFTER_HEARTBEATS)
        nodes = store.hostings.live_nodes(DEAD_AFTER_HEARTBEATS)
        _settle(self._backend, models, holdings, {node.node_id for node in nodes if INFERENCE in node.roles})

    def _converge(self, models: list[Model], holdings: list[ModelHosting]) -> bool:
        """Load what should be hosted, unload what should not, record it; whether a row changed."""
        hosts, hostings = registry(self._backend), self._backend.store.hostings
        wanted = {(m.project, m.version): m.max_inference_units or 1 for m in models if m.status in _WANTED}
        mine = {(h.project, h.version): h for h in holdings if h.node_id == self.node_id}
        held = hosts.held()
        changed = False
        for key, load in list(held.items()):
            # Not wanted; or started again with other units, or after it failed (StartModel cleared the
            # failure): unloaded, and loaded again below if wanted.
            if key not in wanted or load.units != wanted[key] or (load.state()[0] == FAILED and key not in mine):
                hosts.stop(key)
                del held[key]
        for key in mine.keys() - wanted.keys():
            hostings.drop(self.node_id, *key)
            changed = True
        for key, units in wanted.items():
            if key not in held:
                hosts.host(key, self._locator(key), units, self.wake)
            load = hosts.held()[key]
            state, error = load.state()
            message = None if error is None else client_reason(self._backend, error)
            row = mine.get(key)
            if row is None or (row.state, row.message) != (state, message):
                if state == FAILED:
                    log.error("hosting %s v%s failed on node %s", *key, self.node_id, exc_info=error)
                hostings.put(self.node_id, *key, state, message)
                changed = True
        return changed

    def _locator(self, key: ModelKey) -> Callable[[], Path]:
        project, version = key
        return lambda: artifacts.local_engine(self._backend, project, version)


def client_reason(backend: Backend, error: BaseException) -> str:
    """A loading error for clients: the engine names the files it could not read, shown relative to
    the data dir, never the server's own paths (the log has them whole)."""
    data_dir = backend.settings.data_dir
    return str(error).replace(f"{data_dir.resolve()}{os.sep}", "").replace(f"{data_dir}{os.sep}", "")


def _settle(backend: Backend, models: list[Model], holdings: list[ModelHosting], inference_nodes: set[str]) -> None:
    """The hosting status transitions, from what the live nodes hold (see the module docstring).
    Guarded updates: every node runs this, and whichever applies a transition first wins."""
    held: defaultdict[ModelKey, list[ModelHosting]] = defaultdict(list)
    for holding in holdings:
        held[(holding.project, holding.version)].append(holding)
    transition = backend.store.models.transition
    for model in models:
        key = (model.project, model.version)
        rows = held.get(key, [])
        if model.status == ModelStatus.STOPPING_HOSTING:
            if not rows:
                transition(*key, (ModelStatus.STOPPING_HOSTING,), ModelStatus.TRAINED, NOT_HOSTED_MESSAGE,
                           min_inference_units=None, max_inference_units=None)
        elif any(row.state == SERVING for row in rows):
            if model.status == ModelStatus.STARTING_HOSTING:
                transition(*key, (ModelStatus.STARTING_HOSTING,), ModelStatus.HOSTED, HOSTED_MESSAGE)
        else:
            failed = {row.node_id: row.message for row in rows if row.state == FAILED}
            if inference_nodes and inference_nodes <= failed.keys():
                reason = failed[min(inference_nodes)]
                transition(*key, _WANTED, ModelStatus.HOSTING_FAILED,
                           f"Hosting failed: the model could not be loaded ({reason}). Start it again, or train "
                           "a new version.")


def import_engine_early(backend: Backend) -> None:
    """With trained models to start, import the engine (PyTorch: seconds) in the background as the
    server starts, so that StartModel does not wait for it; the server accepts requests meanwhile.
    (Not a daemon thread: an interpreter must not exit in the middle of importing PyTorch.)"""
    if INFERENCE in backend.settings.roles and backend.store.models.any_in(
            (ModelStatus.TRAINED, ModelStatus.HOSTING_FAILED)):
        threading.Thread(target=importlib.import_module, args=("engine.model",),
                         name="lookout-engine-import").start()


def start_reconciler(backend: Backend) -> None:
    """Recovery hook: join the fleet (hosted models are loaded again, a stop in progress completes)."""
    reconciler(backend).start()


@per_backend
def registry(backend: Backend) -> HostingRegistry:
    """The hosting registry of a backend."""
    return HostingRegistry(backend.settings.device)


@per_backend
def reconciler(backend: Backend) -> Reconciler:
    """The hosting reconciler of a backend."""
    return Reconciler(backend)
