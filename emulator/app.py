"""The app factory: Lookout for Vision API, embedded S3 and console on one port.

Everything is wired here, as in Flask's application-factory pattern: the operation registry the API
dispatches to, the console blueprint, and the recovery hooks the backend runs before the first
request. No module registers anything by being imported.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from flask import Flask

from emulator import console, services
from emulator.api import dispatch
from emulator.backend import Backend, RecoveryHook
from emulator.config import Settings
from emulator.console import trial_runs
from emulator.ops.endpoints import OpsEndpoints, is_ops_request, load_metrics_token
from emulator.ops.metrics import ServerMetrics
from emulator.s3.frontend import EmbeddedS3, is_s3_request, no_embedded_s3
from emulator.s3.stores import EmbeddedObjectStore
from emulator.security.access import KeyRing
from emulator.security.crosssite import SiteGuard
from emulator.security.gate import RequestGate
from emulator.security.proxies import TrustedProxies
from emulator.wsgi import WSGIApp

# What a restart interrupted, finished or failed before the server accepts requests: the services'
# jobs, then the console's trial detections (which may need a model hosting recovery restarts).
RECOVERY_HOOKS: tuple[RecoveryHook, ...] = (*services.RECOVERY_HOOKS, trial_runs.resume_interrupted)


def create_flask_app(backend: Backend, keys: KeyRing | None = None) -> Flask:
    """The Flask app of the API and the console (the console first: the API answers every other path)."""
    app = Flask("lookout_emulator")
    app.extensions["lookout_backend"] = backend
    app.extensions["lookout_keys"] = keys
    console.register(app)
    dispatch.register(app, services.registry())
    return app


def create_app(settings: Settings, backend: Backend | None = None, extra_recovery: Sequence[RecoveryHook] = ()
               ) -> tuple[WSGIApp, Backend, KeyRing | None]:
    """Build the WSGI app and start its backend: S3 restored and recovery hooks run (ours, then
    `extra_recovery`), so the app is ready before any server hands it a request. Returns the app
    with its backend and its access keys.

    Every request passes the request gate (`emulator.security.gate`) before anything is read or written:
    cross-site checks, and with a credentials file its SigV4 signature (the console checks its own
    sign-in). Before that, a request from a trusted proxy (`--trusted-proxy`) gets the address of the
    client it forwards for (`emulator.security.proxies`). The health, readiness and metrics endpoints
    decide their own access (`emulator.ops.endpoints`). A credentials file (or metrics token file)
    that cannot be used raises `emulator.security.access.CredentialsFileError`
    (`emulator.ops.endpoints.MetricsTokenError`) before the backend starts."""
    keys = KeyRing.load(settings.credentials_file) if settings.credentials_file else None
    token = load_metrics_token(settings.metrics_token_file) if settings.metrics_token_file else None
    backend = backend or Backend(settings)
    backend.start((*RECOVERY_HOOKS, *extra_recovery))
    metrics = ServerMetrics(backend)
    lookout = metrics.api(create_flask_app(backend, keys).wsgi_app)
    gate = RequestGate(SiteGuard(settings.allowed_hosts, settings.host), keys, settings.roles)
    proxies = TrustedProxies(settings.trusted_proxies)
    ops = OpsEndpoints(backend, metrics, gate, token)
    if isinstance(backend.objects, EmbeddedObjectStore):
        s3: WSGIApp = metrics.s3(EmbeddedS3(backend.objects))
    else:
        s3 = no_embedded_s3(str(settings.s3_endpoint_url))

    def route(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        proxies.resolve(environ)  # first: the gate's refusals and the console's sign-ins name the client
        if is_ops_request(environ):
            return ops(environ, start_response)
        to_s3 = is_s3_request(environ) and not console.is_browser_visit(environ)
        refusal = gate.refusal(environ, to_s3)
        if refusal is not None:  # in the error form of the front end the request was meant for
            metrics.refused.labels("s3" if to_s3 else "api", refusal.reason).inc()
            return gate.refuse(environ, start_response, refusal, to_s3)
        return (s3 if to_s3 else lookout)(environ, start_response)

    return route, backend, keys
