"""HTTPS for waitress, which speaks only plain HTTP: each accepted connection is wrapped in TLS.

waitress drives its sockets without blocking from one event loop. A TLS socket in that loop needs
three things a plain one does not: the handshake runs in steps as bytes arrive; "want read" and
"want write" mean "not yet", not errors; and a TLS record is decrypted whole, so bytes can wait in
the TLS layer (``pending()``) without the socket becoming readable again; a read takes them all.
Everything else (HTTP parsing, the app, its threads) is waitress's own.
"""
from __future__ import annotations

import logging
import ssl
import time
from pathlib import Path
from typing import Any

from waitress.channel import HTTPChannel

log = logging.getLogger(__name__)


class TLSSetupError(ValueError):
    """The certificate or key cannot be used; the message says which and why."""


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server-side TLS context (TLS 1.2 or later, Python's default ciphers) for a PEM chain and key."""
    # OpenSSL's errors do not say which of the two files it could not open (FileNotFoundError's filename
    # is None), so each is opened here first.
    for what, path in (("certificate", cert), ("private key", key)):
        try:
            path.open("rb").close()
        except OSError as error:
            raise TLSSetupError(f"cannot read the TLS {what} {path}: {error.strerror or error}") from None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile=str(cert), keyfile=str(key))
    except (ssl.SSLError, OSError) as error:
        raise TLSSetupError(f"cannot use the TLS certificate {cert} with the key {key}: {error}") from None
    return context


class TLSChannel(HTTPChannel):  # type: ignore[misc]  # waitress has no type information
    """waitress's HTTP channel over a TLS connection; `context` is set on a subclass per server."""

    context: ssl.SSLContext

    def __init__(self, server: Any, sock: Any, addr: Any, adj: Any, map: Any = None) -> None:
        sock = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        self._handshaken = False
        self._handshake_wants_write = False
        super().__init__(server, sock, addr, adj, map)

    def _handshake(self) -> bool:
        """Advance the handshake; whether it is done. A failed one closes the connection."""
        if self._handshaken:
            return True
        try:
            self.socket.do_handshake()
        except ssl.SSLWantReadError:
            self._handshake_wants_write = False
            return False
        except ssl.SSLWantWriteError:
            self._handshake_wants_write = True
            return False
        except (ssl.SSLError, OSError) as error:  # e.g. a plain-HTTP client, or an untrusted certificate
            log.info("TLS handshake with %s failed: %s", self.addr[0] if self.addr else "?", error)
            self.handle_close()
            return False
        self._handshaken, self._handshake_wants_write = True, False
        return True

    def writable(self) -> bool:
        return self._handshake_wants_write or bool(super().writable())

    def handle_write(self) -> None:
        if self._handshake():
            super().handle_write()

    def handle_read(self) -> None:
        if not self._handshake():
            return
        chunks, closed = [], False
        try:
            while True:
                data = self.socket.recv(self.adj.recv_bytes)
                if not data:
                    closed = True
                    break
                chunks.append(data)
                if not self.socket.pending():
                    break
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
        except (ssl.SSLError, OSError):
            self.handle_close()
            return
        if chunks:
            self.last_activity = time.time()
            self.received(b"".join(chunks))
        elif closed:
            self.connected = False

    def send(self, data: Any, do_close: bool = True) -> int:
        try:
            return int(self.socket.send(data))
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return 0
        except ssl.SSLError:
            if do_close:
                self.handle_close()
            return 0
