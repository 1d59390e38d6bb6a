"""Cross-site protection for everything on our port: the API, the embedded S3 and the console.

The emulator has no login (SDKs sign with any credentials), so a web page open in a browser on the
same machine could otherwise drive it: a cross-origin ``text/plain`` POST creates or deletes
projects, an anonymous form upload writes to S3, and DNS rebinding (a foreign name that resolves to
127.0.0.1) would even let a page read the answers. Two checks, applied before any front end sees a
request:

- the Host header must be a name the server answers to (loopback names and ``*.localhost`` by
  default, plus those given with ``--allowed-host`` / ``LOOKOUT_ALLOWED_HOSTS``; ``*`` allows any);
- a state-changing request (POST, PUT, PATCH, DELETE) that a browser marks as coming from another
  site is refused: an ``Origin`` of ``null`` or of a host that is not allowed, or, without Origin,
  ``Sec-Fetch-Site: cross-site`` or a Referer from such a host.

SDKs, the CLI and scripts send no Origin (and no Sec-Fetch-* headers), so they are unaffected.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

# Names that always reach only this machine. A leading dot allows every subdomain (virtual-hosted
# S3 requests use <bucket>.localhost).
LOOPBACK_NAMES = ("localhost", ".localhost", "127.0.0.1", "::1")
ANY_HOST = "*"
_WILDCARD_ADDRESSES = ("", "0.0.0.0", "::")  # noqa: S104 - recognised, not bound
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _hostname(netloc: str) -> str | None:
    """The host name of a ``host[:port]`` (IPv6 in brackets), lowercased; None if malformed."""
    try:
        return urlsplit(f"//{netloc}").hostname
    except ValueError:
        return None


class SiteGuard:
    """Decides whether a request may reach the front ends; see the module docstring."""

    def __init__(self, allowed_hosts: tuple[str, ...], bound_host: str) -> None:
        names = [*LOOPBACK_NAMES, *(name.strip().lower() for name in allowed_hosts if name.strip())]
        if bound_host not in _WILDCARD_ADDRESSES:
            names.append(bound_host.lower())
        self.any_host = ANY_HOST in names
        self._exact = frozenset(name for name in names if not name.startswith("."))
        self._suffixes = tuple(name for name in names if name.startswith("."))

    def allows_name(self, hostname: str | None) -> bool:
        if hostname is None:
            return False
        return hostname in self._exact or hostname.endswith(self._suffixes)

    def _allows_origin(self, netloc: str, request_host: str | None) -> bool:
        hostname = _hostname(netloc)
        # With any Host allowed, a foreign origin is one that is neither loopback nor the server itself.
        return self.allows_name(hostname) or (self.any_host and hostname is not None and hostname == request_host)

    def refusal(self, environ: dict[str, Any]) -> str | None:
        """Why the request is refused, or None when it may proceed."""
        host = environ.get("HTTP_HOST")
        request_host = _hostname(host) if host else None
        if host and not self.any_host and not self.allows_name(request_host):
            return (f"The Host {host!r} is not a name this server answers to; start it with --allowed-host "
                    "(or LOOKOUT_ALLOWED_HOSTS) to add one.")
        if environ.get("REQUEST_METHOD", "GET").upper() not in STATE_CHANGING:
            return None
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None:
            parts = urlsplit(origin) if origin != "null" else None
            if parts is None or not parts.netloc or not self._allows_origin(parts.netloc, request_host):
                return f"Cross-site requests are refused (Origin {origin})."
            return None
        if environ.get("HTTP_SEC_FETCH_SITE", "").lower() == "cross-site":
            return "Cross-site requests are refused (Sec-Fetch-Site: cross-site)."
        referer = environ.get("HTTP_REFERER")
        if referer:
            netloc = urlsplit(referer).netloc
            if not netloc or not self._allows_origin(netloc, request_host):
                return "Cross-site requests are refused (the Referer is another site)."
        return None
