"""HTTP entry point of the Lookout for Vision API: route -> bind -> validate -> service function.

Everything here is generic over the service model; behaviour lives in `emulator.services`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import uuid
from typing import Any

from flask import Flask, Response, current_app, request

from emulator.backend import Backend
from emulator.errors import InternalServerException, ServiceError, ValidationException
from emulator.operations import handler_for
from emulator.protocol import bind_request, render_error, render_output
from emulator.schemas import load_input
from emulator.servicemodel import find_route
from emulator import idempotency

log = logging.getLogger(__name__)


def raw_path() -> str:
    """The request path still percent-encoded (an ARN label carries '/' as %2F)."""
    uri = request.environ.get("REQUEST_URI") or request.environ.get("RAW_URI")
    if uri:
        return uri.split("?", 1)[0]
    return request.full_path.split("?", 1)[0] if request.full_path else request.path


def backend() -> Backend:
    return current_app.extensions["lookout_backend"]


def dispatch() -> Response:
    """Serve one API request."""
    request_id = str(uuid.uuid4())
    try:
        found = find_route(request.method, raw_path())
        if found is None:
            raise ValidationException(f"No Lookout for Vision operation matches {request.method} {request.path}")
        operation, labels = found
        params = load_input(operation, bind_request(operation, request, labels))
        result = call(operation.name, params)
        return render_output(operation, result, request_id)
    except ServiceError as error:
        return render_error(error, request_id)
    except Exception:  # never leak a traceback to a client; log it for the operator
        log.exception("internal error in %s %s", request.method, request.path)
        return render_error(InternalServerException("An internal error occurred."), request_id)


def call(operation_name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Run a service function, honouring ClientToken idempotency where the operation has one."""
    handler = handler_for(operation_name)
    token = params.get("ClientToken")
    if token is None:
        return handler(backend(), params)
    fingerprint = hashlib.sha256(
        json.dumps({k: v for k, v in params.items() if k != "ClientToken"}, sort_keys=True, default=str).encode()
    ).hexdigest()
    return idempotency.run_once(backend(), operation_name, token, fingerprint, lambda: handler(backend(), params))


def register(app: Flask) -> None:
    app.add_url_rule("/<path:_any>", "lookoutvision", lambda _any: dispatch(),
                     methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    app.add_url_rule("/", "lookoutvision_root", dispatch, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
