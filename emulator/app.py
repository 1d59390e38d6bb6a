"""WSGI application: Lookout for Vision API, embedded S3 and console on one port."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from emulator import api, console
from emulator.backend import Backend
from emulator.config import Settings
from emulator.s3 import EmbeddedS3, is_s3_request, no_embedded_s3
from emulator.s3_stores import EmbeddedObjectStore
from emulator.wsgi import WSGIApp


def create_flask_app(backend: Backend) -> Flask:
    app = Flask("lookout_emulator")
    app.extensions["lookout_backend"] = backend
    console.register(app)
    api.register(app)
    return app


def create_app(settings: Settings, backend: Backend | None = None) -> tuple[WSGIApp, Backend]:
    """Build the WSGI app and start its backend: S3 restored and recovery hooks run, so the app is
    ready before any server hands it a request. Returns the app with its backend."""
    backend = backend or Backend(settings)
    backend.start()
    lookout = create_flask_app(backend).wsgi_app
    if isinstance(backend.objects, EmbeddedObjectStore):
        s3: WSGIApp = EmbeddedS3(backend.objects)
    else:
        s3 = no_embedded_s3(str(settings.s3_endpoint_url))

    def dispatch(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        target = s3 if is_s3_request(environ) else lookout
        return target(environ, start_response)

    return dispatch, backend
