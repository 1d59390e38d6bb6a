"""``/healthz``, ``/readyz`` and ``/metrics``: which requests they answer and who may read them.

Routing. S3 shares our port and any bucket name is valid, so ``GET /healthz`` could also be an S3
ListObjects of a bucket named ``healthz``. A request is ours when it is a ``GET`` or ``HEAD`` of
exactly one of the three paths (query string ignored) and S3 does not claim it: it is not signed
for S3 (SigV4 scope ``s3``), not a presigned S3 URL (``X-Amz-Credential`` or ``AWSAccessKeyId`` in
the query) and not virtual-hosted-style (``Host: <bucket>.localhost``). SDKs and the CLI always
sign, so a bucket with one of these names stays usable; only anonymous reads of it are taken.

Access. Load balancers and Kubernetes do not sign requests, so the probes answer anyone, before the
request gate and its Host check (a probe connects by address); they change nothing and reveal only
the names of their checks and whether each passed. ``/metrics`` counts what the server does: it is
open like the rest of the server when the server is, and otherwise needs either a SigV4 signature
by a key of the credentials file (any key, read-only ones too) or ``Authorization: Bearer <token>``
with the token of ``--metrics-token-file``, which is how Prometheus authenticates a scrape.
"""
from __future__ import annotations

import hmac
import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from emulator.backend import Backend
from emulator.ops.metrics import ServerMetrics
from emulator.ops.probes import ReadinessProbe
from emulator.s3.frontend import signed_service, virtual_hosted_bucket
from emulator.security.access import Refusal
from emulator.security.gate import RequestGate
from emulator.wsgi import raw_path

HEALTHZ, READYZ, METRICS = "/healthz", "/readyz", "/metrics"
PATHS = frozenset({HEALTHZ, READYZ, METRICS})
READ_METHODS = frozenset({"GET", "HEAD"})
_PRESIGNED_QUERY = re.compile(r"(?:^|&)(?:X-Amz-Credential|AWSAccessKeyId)=", re.IGNORECASE)
_BEARER = re.compile(r"Bearer +(\S+) *", re.IGNORECASE)
# A metrics token must be long enough not to be guessed, and fit in an HTTP header as it is.
MIN_TOKEN_CHARS = 16
_TOKEN = re.compile(r"[\x21-\x7e]+")


class MetricsTokenError(ValueError):
    """The metrics token file cannot be used; the message says why and where."""


def load_metrics_token(path: Path) -> str:
    """The bearer token in `path` (surrounding whitespace ignored), checked before the server starts."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise MetricsTokenError(f"cannot read the metrics token file {path}: {reason}") from None
    if len(token) < MIN_TOKEN_CHARS or not _TOKEN.fullmatch(token):
        raise MetricsTokenError(f"{path}: the metrics token must be at least {MIN_TOKEN_CHARS} printable ASCII "
                                "characters without spaces")
    return token


def is_ops_request(environ: dict[str, Any]) -> bool:
    """Whether the request is for one of our endpoints rather than S3 or the API (module docstring)."""
    if environ.get("REQUEST_METHOD") not in READ_METHODS or raw_path(environ) not in PATHS:
        return False
    return (signed_service(environ) != "s3" and virtual_hosted_bucket(environ) is None
            and not _PRESIGNED_QUERY.search(environ.get("QUERY_STRING", "")))


class OpsEndpoints:
    """The WSGI app of the three endpoints (only requests `is_ops_request` accepts reach it)."""

    def __init__(self, backend: Backend, metrics: ServerMetrics, gate: RequestGate, token: str | None) -> None:
        self._probe = ReadinessProbe(backend)
        self._metrics = metrics
        self._gate = gate
        self._token = token

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = raw_path(environ)
        if path == HEALTHZ:
            return _answer(environ, start_response, "200 OK", _json({"status": "alive"}), "application/json")
        if path == READYZ:
            readiness = self._probe.run()
            body = _json({"status": "ready" if readiness.ready else "not ready", "checks": readiness.checks})
            status = "200 OK" if readiness.ready else "503 Service Unavailable"
            return _answer(environ, start_response, status, body, "application/json")
        refusal = self._metrics_refusal(environ)
        if refusal is not None:
            self._metrics.refused.labels("metrics", refusal.reason).inc()
            return self._gate.refuse(environ, start_response, refusal, s3=False)
        body, content_type = self._metrics.exposition(environ.get("HTTP_ACCEPT"))
        return _answer(environ, start_response, "200 OK", body, content_type)

    def _metrics_refusal(self, environ: dict[str, Any]) -> Refusal | None:
        """None when the scraper may read the metrics (module docstring), else why not."""
        bearer = _BEARER.fullmatch(environ.get("HTTP_AUTHORIZATION", ""))
        if bearer is not None:
            if self._token is not None and hmac.compare_digest(bearer.group(1).encode(), self._token.encode()):
                return None
            return Refusal("denied", "The bearer token is not this server's metrics token (--metrics-token-file).")
        if self._token is not None and self._gate.keys is None:
            return Refusal("missing", "Reading /metrics needs the bearer token of --metrics-token-file: send "
                                      "Authorization: Bearer <token>.")
        return self._gate.access_refusal(environ, s3=False)


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


def _answer(environ: dict[str, Any], start_response: Callable[..., Any], status: str, body: bytes,
            content_type: str) -> list[bytes]:
    """The response; HEAD gets the headers of GET without the body. Never cached: it is the state now."""
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store")])
    return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]
