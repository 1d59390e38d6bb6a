"""The CPU-bound part of a training (engine.fit, saving, evaluation) in a child process.

Why a child: PyTorch's training keeps every core busy for minutes, which in the server's own process
starves the threads that answer requests and write the job queue's heartbeats (a node that misses them
has its jobs taken over), and an out-of-memory kill (the kernel's OOM killer sends SIGKILL to the
biggest process) would take the whole server down. In a child, the kill ends only that training, which
the parent records as TRAINING_FAILED saying so.

Why a forkserver: a fresh interpreter per training would import torch every time (seconds), and
forking the server itself copies a multi-threaded process (locks held by other threads stay held in
the child). `multiprocessing`'s forkserver is a clean single-threaded interpreter, started once per
server process on the first training, that imports the engine once (`_PRELOAD`) and forks a child per
training.

The parent reads the images and hands them to the child with the fit options; the child trains,
writes the artifact to the model's folder and sends, over a pipe: progress, "saved" (the parent then
publishes the artifact), the test metrics, and one prediction per test image (for the evaluation
output, which the parent writes). Nothing here imports web code or the store: the child needs only
the engine.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import multiprocessing
import signal
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import engine

# The modules the forkserver imports once, so that each training's child starts with torch loaded.
_PRELOAD = ["emulator.training_process", "engine.preload"]
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(_PRELOAD)
# The child's name in /proc/PID/comm (ps, top): an operator sees which process is a training.
PROCESS_NAME = b"lookout-train"
# How often the parent, waiting for the child, looks whether the server is stopping.
_POLL_SECONDS = 0.2
# A child gone without a word: how long the parent waits to see whether the server is stopping (a stop
# signal to the whole process group, e.g. systemd's, also ends the forkserver and with it the child).
_STOP_SIGNAL_SECONDS = 1.0
_PR_SET_NAME, _PR_SET_PDEATHSIG = 15, 1


class Interrupted(Exception):
    """The server is stopping: the child was stopped and the training is left to recovery."""


class ProcessDied(Exception):
    """The child ended without reporting an outcome (killed, or exited); the message says what
    happened and what to do, for the model's StatusMessage."""


class ChildError(Exception):
    """The child raised an unexpected exception; the message holds its traceback, for the log."""


class TrainingProcess:
    """One training's child: started by `start`, read by the parent in order (`wait_saved`, `metrics`,
    `predictions`), and always ended by `close` (it is a context manager)."""

    def __init__(self, process: multiprocessing.process.BaseProcess, connection: Connection,
                 stopping: threading.Event) -> None:
        self._process = process
        self._connection = connection
        self._stopping = stopping

    def __enter__(self) -> TrainingProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_saved(self, progress: Callable[[float, str], None]) -> None:
        """Pass the child's progress to `progress` until it has written the artifact."""
        while (message := self._receive())[0] == "progress":
            progress(message[1], message[2])
        self._expect(message, "saved")

    def metrics(self) -> engine.Metrics:
        """The model's metrics on the test images (sent after the artifact)."""
        message = self._expect(self._receive(), "metrics")
        return message[1]  # type: ignore[no-any-return]

    def predictions(self) -> Iterator[tuple[str, engine.Prediction]]:
        """(name, prediction) of each test image, in order, as the child sends them."""
        while (message := self._receive())[0] == "prediction":
            yield message[1], message[2]
        self._expect(message, "done")

    def close(self) -> None:
        """End the child, at once if it still runs (the parent stopped reading: shutdown, or a failure
        of its own): SIGKILL, since it holds nothing to clean up (a rerun starts from scratch)."""
        if self._process.is_alive():
            self._process.kill()
        self._process.join()
        self._connection.close()

    def _receive(self) -> tuple[Any, ...]:
        """The child's next message; raises what it reported, Interrupted when the server stops, and
        ProcessDied when the child is gone."""
        while not self._connection.poll(_POLL_SECONDS):
            if self._stopping.is_set():
                raise Interrupted
        try:
            message: tuple[Any, ...] = self._connection.recv()
        except (EOFError, OSError):
            self._process.join()
            if self._stopping.wait(_STOP_SIGNAL_SECONDS):  # a signal to the process group stopped both
                raise Interrupted from None
            raise ProcessDied(_death(self._process.exitcode)) from None
        if message[0] == "engine_error":
            import engine

            raise engine.EngineError(message[1])
        if message[0] == "disk_full":
            raise OSError(message[1], message[2])
        if message[0] == "error":
            raise ChildError(message[1])
        return message

    @staticmethod
    def _expect(message: tuple[Any, ...], kind: str) -> tuple[Any, ...]:
        if message[0] != kind:
            raise ChildError(f"the training process sent {message[0]!r} where {kind!r} was due")
        return message


def start(train: Sequence[engine.Item], test: Sequence[engine.Item], options: engine.FitOptions,
          label_colors: Mapping[str, str] | None, directory: Path, stopping: threading.Event) -> TrainingProcess:
    """Start training in a child that saves the model to `directory`; `stopping` (set when the server
    shuts down) makes the parent's reads raise Interrupted, and `close` then stops the child."""
    receiver, sender = _CONTEXT.Pipe(duplex=False)
    process = _CONTEXT.Process(target=_child, args=(sender, list(train), list(test), options,
                                                    dict(label_colors) if label_colors else None, directory),
                               name="lookout-train", daemon=True)
    process.start()
    sender.close()  # the child's end: the parent then reads EOF when the child is gone
    return TrainingProcess(process, receiver, stopping)


def _death(exitcode: int | None) -> str:
    """What the StatusMessage says of a child that ended without an outcome."""
    if exitcode == -signal.SIGKILL:
        return ("the training process was killed (SIGKILL), most likely because the node ran out of memory; "
                "train with fewer or smaller images, or on a node with more memory, then call CreateModel again.")
    if exitcode is not None and exitcode < 0:
        return (f"the training process was killed by {signal.Signals(-exitcode).name}; call CreateModel "
                "again to train a new version.")
    return (f"the training process exited unexpectedly (exit code {exitcode}); the server log has the details. "
            "Call CreateModel again to train a new version.")


# ------------------------------------------------------------------------------------------ the child
def _child(connection: Connection, train: list[engine.Item], test: list[engine.Item], options: engine.FitOptions,
           label_colors: dict[str, str] | None, directory: Path) -> None:
    """Train, save, evaluate and send it all to the parent; every failure is sent as a message."""
    _name_and_tie_to_parent()
    import engine

    try:
        model = engine.fit(train, test, options, label_colors=label_colors,
                           progress=lambda fraction, step: connection.send(("progress", fraction, step)))
        connection.send(("progress", 1.0, "writing the evaluation results"))
        model.save(directory)
        connection.send(("saved",))
        connection.send(("metrics", model.test_metrics if model.test_metrics is not None else model.evaluate(test)))
        for name, prediction in _predictions(model, test):
            connection.send(("prediction", name, prediction))
        connection.send(("done",))
    except engine.EngineError as exc:
        connection.send(("engine_error", str(exc)))
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            connection.send(("error", traceback.format_exc()))
        else:
            connection.send(("disk_full", exc.errno, exc.strerror or str(exc)))
    except Exception:  # noqa: BLE001 - a bug: its traceback goes to the parent's log
        with contextlib.suppress(OSError):  # the parent is gone: nobody to tell
            connection.send(("error", traceback.format_exc()))
    finally:
        connection.close()


def _name_and_tie_to_parent() -> None:
    """Leave stopping to the server: Ctrl-C in a terminal (SIGINT) or systemd's stop (SIGTERM) reach
    every process of the group, and a child they ended would fail its training instead of leaving it
    to recovery; the server, stopping, kills the child itself. Show as `PROCESS_NAME` in /proc, and die
    with the forkserver (which exits when the server does), so that a SIGKILLed server leaves no
    training behind (Linux; elsewhere a no-op)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(OSError, AttributeError):
        prctl = ctypes.CDLL(None, use_errno=True).prctl
        prctl(_PR_SET_NAME, PROCESS_NAME, 0, 0, 0)
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _predictions(model: engine.Model, items: Sequence[engine.Item],
                 batch: int = 8) -> Iterator[tuple[str, engine.Prediction]]:
    """(name, prediction) of each item, predicted a batch at a time as they are consumed."""
    for begin in range(0, len(items), batch):
        chunk = items[begin:begin + batch]
        yield from zip((item.name for item in chunk), model.predict_batch([item.image for item in chunk]),
                       strict=True)
