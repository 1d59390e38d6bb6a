"""The Lookout for Vision Edge Agent: model packages served over gRPC (edge-agent-reference*.md).

Each folder of the components directory is a model component, named after the folder and holding
what a packaging job wrote for it (package.py). Components go through the documented states:

    STOPPED --StartModel--> STARTING --(loaded)--> RUNNING --StopModel--> STOPPING --> STOPPED
    STARTING --(cannot load)--> FAILED --StartModel--> STARTING ...

StartModel answers STARTING at once and the package is checked, unpacked and loaded on the agent's
loader thread (clients poll DescribeModel); StopModel answers once the model has stopped. A package
that cannot be read is listed as FAILED with the reason in its status message. The directory is
looked at again on each ListModels, DescribeModel and StartModel, so components copied in (or new
versions of them) appear without a restart; a running model keeps the version it loaded.

Each running model has one inference thread (emulator/inference.py) in front of which at most
``queue_size`` requests wait; more are refused with RESOURCE_EXHAUSTED at once rather than queued
without bound. Nothing here imports the web stack; torch loads with the first model.
"""
from __future__ import annotations

import functools
import logging
import os
import socket
import stat
import tempfile
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError

from emulator.edge import DEFAULT_QUEUE_SIZE, DEFAULT_SOCKET
from emulator.edge import edge_agent_pb2 as pb2
from emulator.edge import edge_agent_pb2_grpc as pb2_grpc
from emulator.edge.bitmaps import CHANNELS, BitmapError, check_shared, read_bitmap, write_shared
from emulator.edge.package import COMPONENT_NAME, Package, PackageError, read_package, unpack_engine
from emulator.inference import HostedModel, NotHosted, Overloaded
from emulator.process import install_stop_signals, wait_then_stop

log = logging.getLogger(__name__)

# The engine normalises scores so that 0.5 is the decision threshold of every model.
ANOMALY_THRESHOLD = 0.5
# RPCs handled at once; more are refused by gRPC with RESOURCE_EXHAUSTED instead of waiting unseen.
RPC_THREADS = 32
# A 4096x4096 RGB888 bitmap (the documented maximum) is 48 MiB; gRPC's default limit is 4 MiB.
MAX_MESSAGE = 64 * 1024 * 1024
STOPPED, STARTING, RUNNING, FAILED, STOPPING = pb2.STOPPED, pb2.STARTING, pb2.RUNNING, pb2.FAILED, pb2.STOPPING
_UNIX_PATH_MAX = 107  # sun_path holds 108 bytes with the terminating NUL


class AgentError(Exception):
    """The agent cannot start as asked (socket in use, unknown --start component, ...)."""


class DeviceError(Exception):
    """The device the agent was asked to run models on is not there (or the engine cannot use it)."""


class RpcError(Exception):
    """An RPC's documented failure: its gRPC status code and a message for the client."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class AgentOptions:
    """How the agent runs its models (the CLI's edge-agent options)."""

    components_dir: Path
    device: str = "cpu"  # cpu, cuda, or auto (CUDA when torch sees a GPU)
    queue_size: int = DEFAULT_QUEUE_SIZE  # requests that may wait for each running model
    batch: int = 1  # waiting requests a model predicts together (up to inference.MAX_BATCH)
    max_running: int | None = None  # models that may run at once (None: as many as memory allows)


class Component:
    """A model component: its package, status, status message and (when RUNNING) its loaded model."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.package: Package | None = None
        self.status: pb2.ModelStatus = STOPPED
        self.message = "The model is stopped."
        self.hosted: HostedModel | None = None

    @property
    def idle(self) -> bool:
        return self.status in (STOPPED, FAILED)

    def update(self, read: Package | PackageError) -> None:
        """Take the package found on disk (an idle component only)."""
        if isinstance(read, PackageError):
            self.package, self.status, self.message = None, FAILED, str(read)
        elif read != self.package:  # new, fixed or replaced: whatever failed before no longer applies
            self.package, self.status, self.message = read, STOPPED, "The model is stopped."

    def fields(self) -> dict[str, Any]:
        arn = self.package.model_arn if self.package else ""
        return {"model_component": self.name, "lookout_vision_model_arn": arn, "status": self.status,
                "status_message": self.message}


@dataclass(frozen=True)
class Malformed:
    """A request whose bytes are not its protobuf message (what ``add_service`` hands the RPC instead)."""

    message: str


def _parser(message_class: Any) -> Callable[[bytes], Any]:
    """The request deserializer of one RPC: the message, or Malformed when the bytes do not parse.
    gRPC answers INTERNAL, and logs a traceback, for every request whose deserializer raises; a
    client's malformed bytes are its own error (INVALID_ARGUMENT), not the agent's."""
    def parse(data: bytes) -> Any:
        try:
            return message_class.FromString(data)
        except DecodeError:
            return Malformed(f"The request is not a valid {message_class.DESCRIPTOR.full_name} message.")
    return parse


def add_service(service: EdgeAgent, server: grpc.Server) -> None:
    """Serve ``service`` on ``server`` as the generated add_EdgeAgentServicer_to_server does, but with
    request parsing that cannot fail (``_parser``)."""
    descriptor = pb2.DESCRIPTOR.services_by_name["EdgeAgent"]
    handlers = {method.name: grpc.unary_unary_rpc_method_handler(
        getattr(service, method.name),
        request_deserializer=_parser(getattr(pb2, method.input_type.name)),
        response_serializer=getattr(pb2, method.output_type.name).SerializeToString)
        for method in descriptor.methods}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(descriptor.full_name, handlers),))
    server.add_registered_method_handlers(descriptor.full_name, handlers)


F = TypeVar("F", bound=Callable[..., Any])


def _rpc(method: F) -> F:
    """Turn RpcError into the RPC's status; an unexpected exception is INTERNAL (and logged)."""
    @functools.wraps(method)
    def handler(self: EdgeAgent, request: Any, context: grpc.ServicerContext) -> Any:
        if isinstance(request, Malformed):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
        try:
            return method(self, request, context)
        except RpcError as error:
            context.abort(error.code, error.message)
        except Exception as exc:  # a bug of ours: keep the traceback, tell the client
            log.exception("%s failed", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"Internal error in {method.__name__} ({type(exc).__name__}).")
    return handler  # type: ignore[return-value]


class EdgeAgent(pb2_grpc.EdgeAgentServicer):
    """The EdgeAgent service over a components directory."""

    def __init__(self, options: AgentOptions) -> None:
        self.options = options
        self._lock = threading.Lock()
        self._components: dict[str, Component] = {}
        # One load at a time: loads are CPU-bound, and torch must not be imported by two threads at once.
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lookout-edge-loader")
        self.refresh()

    # ----------------------------------------------------------------------------- components
    def refresh(self) -> None:
        """Look at the components directory again (idle components take what is there now)."""
        try:
            folders = sorted(child for child in self.options.components_dir.iterdir()
                             if child.is_dir() and not child.name.startswith("."))
        except OSError as exc:
            log.warning("cannot list the components directory %s: %s", self.options.components_dir, exc)
            folders = []
        found: dict[str, Package | PackageError] = {}
        for folder in folders:
            found[folder.name] = _read_component(folder)
        with self._lock:
            for name, read in found.items():
                component = self._components.setdefault(name, Component(name))
                if component.idle:
                    component.update(read)
            for name in [name for name, component in self._components.items()
                         if name not in found and component.idle]:
                del self._components[name]

    def _component(self, name: str, refresh: bool = True) -> Component:
        check_component_name(name)
        if refresh:
            self.refresh()
        with self._lock:
            component = self._components.get(name)
        if component is None:
            raise RpcError(grpc.StatusCode.NOT_FOUND,
                           f"There is no model component {name} in {self.options.components_dir}.")
        return component

    def start(self, name: str) -> pb2.ModelStatus:
        """StartModel: STARTING now, RUNNING or FAILED once the loader is done."""
        component = self._component(name)
        with self._lock:
            if not component.idle:
                raise RpcError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"Model component {name} is {pb2.ModelStatus.Name(component.status)}; StartModel "
                               "needs a STOPPED or FAILED model.")
            running = sum(not other.idle for other in self._components.values())
            limit = self.options.max_running
            if limit is not None and running >= limit:
                raise RpcError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"{running} models are already running or starting, the most this agent runs at "
                               f"once (--max-running {limit}); stop one first.")
            package, unreadable = component.package, component.message
            component.status, component.message = STARTING, "The model is starting."
        self._loader.submit(self._load, component, package, unreadable)
        return STARTING

    def _load(self, component: Component, package: Package | None, unreadable: str) -> None:
        try:
            if package is None:
                raise PackageError(unreadable)
            hosted, device = self._host(component.name, package)
        except (PackageError, DeviceError) as exc:
            self._failed(component, str(exc))
        except MemoryError:
            self._failed(component, "There is not enough memory to load the model.")
        except Exception as exc:  # noqa: BLE001 - becomes the model's FAILED status message
            import engine

            if not isinstance(exc, engine.EngineError):
                log.exception("loading model component %s failed", component.name)
            self._failed(component, f"The model could not be loaded: {exc}")
        else:
            with self._lock:
                component.hosted, component.status = hosted, RUNNING
                component.message = (f"The model is running ({package.model_type}, {package.image_size[0]}x"
                                     f"{package.image_size[1]}, version {package.version}, on {device}).")
            log.info("model component %s is running", component.name)

    def _host(self, name: str, package: Package) -> tuple[HostedModel, str]:
        """The package loaded and serving, and the device it runs on."""
        with tempfile.TemporaryDirectory(prefix="lookout-edge-") as scratch:
            engine_dir = unpack_engine(package, Path(scratch))  # first: a bad package fails without torch
            device = resolve_device(self.options.device)
            hosted = HostedModel(engine_dir, units=self.options.batch, name=name, device=device,
                                 max_waiting=self.options.queue_size)
        kind = "segmentation" if hosted.is_segmentation else "classification"
        if (kind, hosted.image_size) != (package.model_type, package.image_size):
            hosted.close()
            raise PackageError(f"The engine artifact of {package.folder} is a {kind} model of "
                               f"{hosted.image_size[0]}x{hosted.image_size[1]} images, but the manifest says "
                               f"{package.model_type}, {package.image_size[0]}x{package.image_size[1]}.")
        return hosted, device or "cpu"

    def _failed(self, component: Component, message: str) -> None:
        log.warning("model component %s failed to start: %s", component.name, message)
        with self._lock:
            component.status, component.message = FAILED, message

    def stop(self, name: str) -> pb2.ModelStatus:
        """StopModel: answers STOPPED once requests already queued are done and the model is unloaded."""
        component = self._component(name, refresh=False)
        with self._lock:
            if component.status != RUNNING:
                raise RpcError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"Model component {name} is {pb2.ModelStatus.Name(component.status)}; StopModel "
                               "needs a RUNNING model.")
            component.status, component.message = STOPPING, "The model is stopping."
            hosted, component.hosted = component.hosted, None
        if hosted is not None:
            hosted.close()
        with self._lock:
            component.status, component.message = STOPPED, "The model is stopped."
        return STOPPED

    def close(self) -> None:
        """Stop every model (after a load in progress)."""
        self._loader.shutdown(wait=True)
        with self._lock:
            hosted = [component.hosted for component in self._components.values() if component.hosted]
            for component in self._components.values():
                component.hosted, component.status, component.message = None, STOPPED, "The model is stopped."
        for model in hosted:
            model.close()

    # ----------------------------------------------------------------------------------- RPCs
    @_rpc
    def StartModel(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802 - the RPC's name
        return pb2.StartModelResponse(status=self.start(request.model_component))

    @_rpc
    def StopModel(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return pb2.StopModelResponse(status=self.stop(request.model_component))

    @_rpc
    def ListModels(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        self.refresh()
        with self._lock:
            models = [pb2.ModelMetadata(**component.fields()) for _, component in sorted(self._components.items())]
        return pb2.ListModelsResponse(models=models)

    @_rpc
    def DescribeModel(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        component = self._component(request.model_component)
        with self._lock:
            return pb2.DescribeModelResponse(model_description=pb2.ModelDescription(**component.fields()))

    @_rpc
    def DetectAnomalies(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        name = request.model_component
        check_component_name(name)
        with self._lock:
            known = name in self._components
        component = self._component(name, refresh=not known)
        with self._lock:
            status, hosted = component.status, component.hosted
        if status != RUNNING or hosted is None:
            raise RpcError(grpc.StatusCode.FAILED_PRECONDITION,
                           f"Model component {name} is {pb2.ModelStatus.Name(status)}; DetectAnomalies needs a RUNNING "
                           "model (call StartModel, then DescribeModel until the status is RUNNING).")
        if not request.HasField("bitmap"):
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "The request has no bitmap.")
        width, height = hosted.image_size
        mask_to = mask_handle(request) if hosted.is_segmentation else None
        try:
            image = read_bitmap(request.bitmap)
            if image.shape[:2] != (height, width):
                raise BitmapError(f"The bitmap is {image.shape[1]}x{image.shape[0]} pixels, but model component "
                                  f"{name} was trained on {width}x{height} images; send bitmaps of that size.")
            if mask_to is not None:
                check_shared(mask_to, width * height * CHANNELS)
        except BitmapError as exc:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        try:
            prediction = hosted.predict(image)
        except Overloaded:
            raise RpcError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                           f"Model component {name} already has {self.options.queue_size} requests waiting: the agent "
                           "cannot keep up with the rate of DetectAnomalies calls; retry later.") from None
        except NotHosted:
            raise RpcError(grpc.StatusCode.FAILED_PRECONDITION,
                           f"Model component {name} was stopped while the request waited.") from None
        result = pb2.DetectAnomalyResult(is_anomalous=prediction.is_anomalous, confidence=prediction.confidence,
                                         anomaly_score=prediction.score, anomaly_threshold=ANOMALY_THRESHOLD)
        if prediction.mask is not None:
            result.anomalies.extend(
                pb2.Anomaly(name=label, pixel_anomaly=pb2.PixelAnomaly(total_percentage_area=area, hex_color=colour))
                for label, colour, area in prediction.anomalies)
            if mask_to is None:
                result.anomaly_mask.CopyFrom(pb2.Bitmap(width=width, height=height,
                                                        byte_data=prediction.mask.tobytes()))
            else:
                try:
                    write_shared(mask_to, prediction.mask)
                except BitmapError as exc:  # the caller changed its shared memory meanwhile
                    raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
                written = pb2.SharedMemoryHandle(name=mask_to.name, offset=mask_to.offset,
                                                 size=prediction.mask.nbytes)
                result.anomaly_mask.CopyFrom(pb2.Bitmap(width=width, height=height, shared_memory_handle=written))
        return pb2.DetectAnomaliesResponse(detect_anomaly_result=result)


def _read_component(folder: Path) -> Package | PackageError:
    """A component folder's package, or why it cannot be used: whatever is wrong with one folder
    (even a bug of ours reading it) is that component's FAILED status, never every RPC's error."""
    if not COMPONENT_NAME.fullmatch(folder.name):
        return PackageError(f"{_shown(folder.name)} is not a valid component name (1 to 128 letters, digits, "
                            "'-', '_' or '.', as packaging jobs name components); rename the folder.")
    try:
        return read_package(folder)
    except PackageError as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - isolated to this component, logged for the operator
        log.exception("reading model component %s failed", folder.name)
        return PackageError(f"The package in {folder} could not be read ({type(exc).__name__}).")


def check_component_name(name: str) -> None:
    """INVALID_ARGUMENT unless ``name`` could name a component (see package.COMPONENT_NAME); the
    message echoes at most the start of it, so that a huge name cannot swell the error past what
    gRPC's metadata may carry (a 100 KB name turned NOT_FOUND into RESOURCE_EXHAUSTED)."""
    if not name:
        raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "model_component is required.")
    if not COMPONENT_NAME.fullmatch(name):
        raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                       f"model_component {_shown(name)} ({len(name)} characters) is not a valid component name: "
                       "1 to 128 letters, digits, '-', '_' or '.'.")


_SHOWN_CHARS = 64  # the most of a client's or folder's name that a message repeats


def _shown(name: str) -> str:
    """``name`` quoted for a message, cut to its first _SHOWN_CHARS characters."""
    return repr(name[:_SHOWN_CHARS] + ("..." if len(name) > _SHOWN_CHARS else ""))


def mask_handle(request: Any) -> Any | None:
    """Where the caller wants the mask: anomaly_mask_params' handle, under field number 2 or 3."""
    if not request.HasField("anomaly_mask_params"):
        return None
    params = request.anomaly_mask_params
    handles = [getattr(params, field) for field in ("shared_memory_handle", "shared_memory_handle_v3")
               if params.HasField(field)]
    if len(handles) == 2 and handles[0] != handles[1]:
        raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                       "anomaly_mask_params sets two different shared memory handles (fields 2 and 3); set one.")
    return handles[0] if handles else None


def resolve_device(requested: str) -> str | None:
    """The device to pass to engine.load_model (None: the engine has no device option, so the CPU)."""
    import inspect

    import engine

    takes_device = "device" in inspect.signature(engine.load_model).parameters
    if requested == "cpu":
        return "cpu" if takes_device else None
    import torch

    if not torch.cuda.is_available():
        if requested == "auto":
            return "cpu" if takes_device else None
        raise DeviceError("The agent was started with --device cuda, but torch sees no CUDA device here.")
    if not takes_device:
        if requested == "auto":
            return None
        raise DeviceError("This engine cannot run models on CUDA (engine.load_model takes no device).")
    return "cuda"


# ----------------------------------------------------------------------------------------- serving
class Agent:
    """The gRPC server around an EdgeAgent, on a Unix socket and optionally on TCP."""

    def __init__(self, options: AgentOptions, socket_path: str = DEFAULT_SOCKET, listen: str | None = None) -> None:
        self.options = options
        self.socket_path = os.path.abspath(socket_path)
        self.listen = listen
        self.tcp_address: str | None = None
        self.service = EdgeAgent(options)
        self._server: grpc.Server | None = None
        self._socket_inode: int | None = None

    @property
    def target(self) -> str:
        """The address clients pass to grpc.insecure_channel for the socket."""
        return "unix://" + self.socket_path

    def start(self, components: Iterable[str] = ()) -> Agent:
        """Bind, serve, then start the named components (AgentError if any cannot be)."""
        claim_socket(self.socket_path)
        server = grpc.server(ThreadPoolExecutor(max_workers=RPC_THREADS, thread_name_prefix="lookout-edge-rpc"),
                             maximum_concurrent_rpcs=RPC_THREADS,
                             options=[("grpc.max_receive_message_length", MAX_MESSAGE),
                                      ("grpc.max_send_message_length", MAX_MESSAGE)])
        add_service(self.service, server)
        _bind(server, "unix:" + self.socket_path, f"the socket {self.socket_path}")
        if self.listen:
            try:
                port = _bind(server, self.listen, self.listen)
            except AgentError:
                os.unlink(self.socket_path)  # bound already: leave no socket that nothing serves
                raise
            self.tcp_address = f"{self.listen.rsplit(':', 1)[0]}:{port}"
        server.start()
        self._server = server
        self._socket_inode = os.stat(self.socket_path).st_ino
        for name in components:
            try:
                self.service.start(name)
            except RpcError as exc:
                self.stop()
                raise AgentError(f"--start {name}: {exc.message}") from None
        return self

    def stop(self, grace: float = 5.0) -> None:
        """Refuse new RPCs, let those in flight finish (up to `grace` seconds), stop the models."""
        if self._server is not None:
            self._server.stop(grace).wait()
            self._server = None
        self.service.close()
        try:  # remove the socket file unless another agent has replaced it meanwhile
            if self._socket_inode is not None and os.stat(self.socket_path).st_ino == self._socket_inode:
                os.unlink(self.socket_path)
        except FileNotFoundError:
            pass


def _bind(server: grpc.Server, address: str, what: str) -> int:
    try:
        port = int(server.add_insecure_port(address))
    except RuntimeError as exc:
        raise AgentError(f"Cannot listen on {what}: {exc}") from None
    if port == 0:
        raise AgentError(f"Cannot listen on {what}.")
    return port


def claim_socket(path: str) -> None:
    """Make `path` free for the agent's socket: refuse a live one, remove a stale one."""
    if len(os.fsencode(path)) > _UNIX_PATH_MAX:
        raise AgentError(f"The socket path {path} is longer than the {_UNIX_PATH_MAX} bytes a Unix socket path may be.")
    if not os.path.isdir(os.path.dirname(path)):
        raise AgentError(f"The socket's folder {os.path.dirname(path)} does not exist.")
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise AgentError(f"{path} exists and is not a socket; remove it or choose another --socket.")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)  # left behind by an agent that did not stop cleanly
        return
    except OSError as exc:
        raise AgentError(f"Cannot use the socket {path}: {exc.strerror or exc}.") from None
    finally:
        probe.close()
    raise AgentError(f"Another process is serving on {path}; stop it or choose another --socket.")


def serve(options: AgentOptions, socket_path: str = DEFAULT_SOCKET, listen: str | None = None,
          components: Iterable[str] = ()) -> None:
    """Run the agent until SIGINT or SIGTERM, then stop within a deadline (emulator.process)."""
    import engine  # noqa: F401 - its process settings must precede torch and the server's threads

    stopped = install_stop_signals()
    agent = Agent(options, socket_path, listen).start(components)
    where = agent.target + (f" and {agent.tcp_address}" if agent.tcp_address else "")
    # Printed (not logged) so that scripts and tests can wait for it.
    print(f"lookout-emulator edge agent listening on {where}", flush=True)
    wait_then_stop(stopped, agent.stop)
