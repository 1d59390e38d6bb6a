"""One emulator listening on a TCP port: the WSGI app, its backend and a waitress server.

The CLI and the test fixture both run a `Server` on a background thread and stop it the same way,
so that what tests exercise is what users run.
"""
from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Callable, Sequence

import waitress
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, MultiSocketServer
from waitress.task import WSGITask
from waitress.trigger import trigger

import engine  # noqa: F401  (cheap, no torch: its process settings must precede our threads)
from emulator.app import create_app
from emulator.backend import RecoveryHook
from emulator.config import Settings
from emulator.formats.image_files import MAX_IMAGE_BYTES
from emulator.security.tls import TLSChannel, server_context

log = logging.getLogger(__name__)
STOP_TIMEOUT_SECONDS = 10.0
_METADATA_HEADER = re.compile(rb"^X-Amz-Meta-[^:]*", re.MULTILINE)
# waitress reads 8 KB per socket read and spools bodies over 512 KB to a temporary file. Images
# (DetectAnomalies, S3 uploads) are up to 8 MB: read them in 256 KB steps (a 450 KB photo took
# 1.4 ms more to receive than an empty body, now 0.1 ms) and keep them in memory; only larger S3
# uploads go to disk.
_BUFFERS = {"recv_bytes": 256 * 1024, "inbuf_overflow": MAX_IMAGE_BYTES + 1024 * 1024}
# A hosted model's inference thread takes the GIL back after each of its ~80 torch calls outside
# the traced backbone; with 8 HTTP threads busy, Python's default 5 ms switch interval let it wait
# long for it. At 0.5 ms a batch of two predictions under 8 concurrent clients took ~80 instead of
# ~90 ms (~10% more DetectAnomalies per second on 2 cores).
GIL_SWITCH_SECONDS = 0.0005


class _Task(WSGITask):  # type: ignore[misc]  # waitress has no type information
    """waitress title-cases every response header name. S3 user metadata names must stay lowercase:
    botocore takes Metadata keys from the names as sent (``x-amz-meta-who`` -> ``who``)."""

    def build_response_header(self) -> bytes:
        return _METADATA_HEADER.sub(lambda name: name.group(0).lower(), super().build_response_header())


class _Channel(HTTPChannel):  # type: ignore[misc]  # waitress has no type information
    task_class = _Task

    def send_continue(self) -> None:
        """Waitress answers ``Expect: 100-continue`` with ``100 Continue`` and then waits for the body
        again, even when the request has none (``Content-Length: 0``, e.g. boto3's PutObject of an
        empty "folder/" key): the request was never served. A request whose body is complete needs
        no invitation to send it; it is served and gets its final response."""
        if self.request is not None and self.request.completed:
            self.request.expect_continue = False
            return
        super().send_continue()


class _TLSChannel(TLSChannel, _Channel):
    """Our HTTP channel (its tasks, its 100-continue) over TLS."""


def _channel_class(settings: Settings) -> type[HTTPChannel]:
    """Plain HTTP, or HTTPS when the settings name a certificate and its key."""
    if settings.tls_cert is None or settings.tls_key is None:
        return _Channel
    context = server_context(settings.tls_cert, settings.tls_key)
    return type("_ServerTLSChannel", (_TLSChannel,), {"context": context})


class Server:
    """Build the app (its backend starts: S3 restored, recovery run), then bind the socket.

    Nothing is accepted before recovery has finished, because the socket is bound only afterwards.
    """

    def __init__(self, settings: Settings, threads: int = 8, extra_recovery: Sequence[RecoveryHook] = ()) -> None:
        sys.setswitchinterval(GIL_SWITCH_SECONDS)
        channel_class = _channel_class(settings)  # a bad certificate stops us before anything starts
        scheme = "http" if channel_class is _Channel else "https"
        self.app, self.backend, self.keys = create_app(settings, extra_recovery=extra_recovery)
        try:
            self._waitress = waitress.create_server(self.app, host=settings.host, port=settings.port,
                                                    threads=threads, ident="lookout-emulator", url_scheme=scheme,
                                                    # waitress drops X-Forwarded-For unless told not to;
                                                    # create_app reads it from trusted proxies only
                                                    clear_untrusted_proxy_headers=not settings.trusted_proxies,
                                                    **_BUFFERS)
        except BaseException:
            self.backend.close()
            raise
        if isinstance(self._waitress, MultiSocketServer):  # a host name that resolves to several addresses
            self._map = self._waitress.map
            host, port = self._waitress.effective_listen[0]
        else:
            self._map = self._waitress._map
            host, port = self._waitress.effective_host, self._waitress.effective_port
        for listener in self._map.values():
            if isinstance(listener, BaseWSGIServer):
                listener.channel_class = channel_class
        self.port = int(port)
        self.endpoint_url = f"{scheme}://{f'[{host}]' if ':' in str(host) else host}:{self.port}"
        self._thread: threading.Thread | None = None
        self._stopped = False

    def start(self) -> Server:
        """Serve on a background thread; returns self."""
        self._thread = threading.Thread(target=self._waitress.run, name="lookout-emulator-http", daemon=True)
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopped

    def _in_loop(self, fn: Callable[[], object]) -> None:
        """Run `fn` on the server's event-loop thread (its sockets are not thread-safe) and wait."""
        wake = next(d for d in self._map.values() if isinstance(d, trigger))
        done = threading.Event()

        def run() -> None:
            try:
                fn()
            finally:
                done.set()

        wake.pull_trigger(run)
        done.wait(STOP_TIMEOUT_SECONDS)

    def stop(self) -> None:
        """Stop accepting, let requests in flight finish, stop the loop, then close the backend
        (which stops its jobs). Safe to call twice, and from any thread but the loop's own."""
        if self._stopped:
            return
        self._stopped = True
        if self._thread is not None and self._thread.is_alive():
            listeners = [d for d in self._map.values() if isinstance(d, BaseWSGIServer)]
            self._in_loop(lambda: [wasyncore.dispatcher.close(listener) for listener in listeners])
            self._waitress.task_dispatcher.shutdown(cancel_pending=False, timeout=STOP_TIMEOUT_SECONDS)
            self._in_loop(lambda: wasyncore.close_all(self._map))
            self._thread.join(STOP_TIMEOUT_SECONDS)
        else:
            wasyncore.close_all(self._map)
        self.backend.close()
        log.info("lookout-emulator on port %d stopped", self.port)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
