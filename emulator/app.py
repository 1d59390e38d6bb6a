"""WSGI application: Lookout for Vision API, embedded S3 and console on one port."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from emulator import api, console
from emulator.backend import Backend
from emulator.config import Settings
from emulator.s3 import is_s3_request

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def create_flask_app(backend: Backend) -> Flask:
    app = Flask("lookout_emulator")
    app.extensions["lookout_backend"] = backend
    console.register(app)
    api.register(app)
    return app


def create_app(settings: Settings, backend: Backend | None = None) -> tuple[WSGIApp, Backend]:
    """Build the WSGI app. Returns it with its backend (already started: recovery has run)."""
    backend = backend or Backend(settings)
    backend.start()
    lookout = create_flask_app(backend)
    if settings.s3_endpoint_url:
        return lookout.wsgi_app, backend
    from moto.server import create_backend_app

    s3_app = create_backend_app("s3")

    def dispatch(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        target = s3_app if is_s3_request(environ) else lookout
        return target(environ, start_response)

    return dispatch, backend
