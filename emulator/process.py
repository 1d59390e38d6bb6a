"""How the long-running processes (`serve`, `edge-agent`) wait for a stop signal and stop.

Both run until SIGINT (Ctrl-C) or SIGTERM, print every thread's stack on SIGUSR1 (what a process that
seems stuck is doing, without stopping it), and stop within a deadline. A process that hangs on its
way down would otherwise hold its port or socket, and its supervisor's patience, with no word of why.
Past the deadline every thread's stack goes to stderr and the process exits with status 1, leaving
what a crash leaves, which recovery handles (a fleet queues stalled jobs again and ages out hosting
rows; a single server's start-up recovery finishes what was in progress). The deadline runs to the
end of the process, since interpreter exit joins library threads too: these functions are for a
process's main thread, not for code that goes on after them.
"""
from __future__ import annotations

import faulthandler
import logging
import signal
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

# Under the 60 s grace period of the deploy files (deploy/compose.yaml, deploy/kubernetes); a clean stop
# takes seconds, its longest planned wait being a running job's grace (emulator.jobs.SHUTDOWN_GRACE_SECONDS).
SHUTDOWN_DEADLINE_SECONDS = 45.0
# Timed waits for the stop signal: it may be delivered while another thread runs, and Python runs its
# handler only when the main thread gets to run bytecode.
_WAIT_SECONDS = 0.5


def install_stop_signals() -> threading.Event:
    """Before the process starts its work: SIGINT and SIGTERM set the returned event (the work then
    stops cleanly, `wait_then_stop`), SIGUSR1 prints every thread's stack to stderr."""
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    return stopped


def wait_then_stop(stopped: threading.Event, stop: Callable[[], None],
                   running: Callable[[], bool] = lambda: True) -> None:
    """Wait until `stopped` is set (or `running()` turns false), then `stop()` the work, the rest of the
    process bounded by `SHUTDOWN_DEADLINE_SECONDS` (module docstring)."""
    try:
        while running() and not stopped.wait(_WAIT_SECONDS):
            pass
    finally:
        log.info("stopping; the process ends within %.0f s", SHUTDOWN_DEADLINE_SECONDS)
        faulthandler.dump_traceback_later(SHUTDOWN_DEADLINE_SECONDS, exit=True)
        stop()
