"""WSGI application: Lookout for Vision API, embedded S3 and console on one port."""
from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from emulator.api import dispatch as api
from emulator import console
from emulator.backend import Backend
from emulator.config import Settings
from emulator.crosssite import SiteGuard
from emulator.api.errors import AccessDeniedException
from emulator.api.protocol import render_error
from emulator.s3.frontend import EmbeddedS3, is_s3_request, no_embedded_s3, s3_error
from emulator.s3.stores import EmbeddedObjectStore
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

    guard = SiteGuard(settings.allowed_hosts, settings.host)

    def dispatch(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        to_s3 = is_s3_request(environ)
        refused = guard.refusal(environ)
        if refused is not None:  # in the error form of the front end the request was meant for
            if to_s3:
                return s3_error(environ, start_response, "403 Forbidden", "AccessDenied", refused)
            error = render_error(AccessDeniedException(refused), str(uuid.uuid4()))
            return error(environ, start_response)
        return (s3 if to_s3 else lookout)(environ, start_response)

    return dispatch, backend
