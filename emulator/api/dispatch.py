"""HTTP entry point of the Lookout for Vision API: route -> bind -> validate -> service function.

Everything here is generic over the service model; behaviour lives in `emulator.services`.
"""
from __future__ import annotations

import logging
import uuid
from typing import Any, cast

from flask import Flask, Response, current_app, request

from emulator.api import idempotency
from emulator.api.errors import InternalServerException, ServiceError, ValidationException
from emulator.api.protocol import bind_request, render_error, render_output
from emulator.api.registry import OperationRegistry
from emulator.api.schemas import load_input
from emulator.api.servicemodel import find_route
from emulator.backend import Backend
from emulator.disk import is_disk_full, write_failure
from emulator.wsgi import OPERATION_ENVIRON_KEY, raw_path

log = logging.getLogger(__name__)
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
UNKNOWN_OPERATION = "unknown"  # the operation metrics name a request that matches none


def backend() -> Backend:
    return cast(Backend, current_app.extensions["lookout_backend"])


def operations() -> OperationRegistry:
    return cast(OperationRegistry, current_app.extensions["lookout_operations"])


def dispatch() -> Response:
    """Serve one API request."""
    request_id = str(uuid.uuid4())
    try:
        found = find_route(request.method, raw_path(request.environ))
        request.environ[OPERATION_ENVIRON_KEY] = found[0].name if found is not None else UNKNOWN_OPERATION
        if found is None:
            raise ValidationException(
                f"No Lookout for Vision operation matches {request.method} {request.path} "
                "(check the endpoint URL and the API version, 2020-11-20).")
        operation, labels = found
        params = load_input(operation, bind_request(operation, request, labels))
        result = call(operation.name, params)
        return render_output(operation, result, request_id)
    except ServiceError as error:
        return render_error(error, request_id)
    except Exception as exc:  # never leak a traceback to a client; log it for the operator
        if is_disk_full(exc):  # not a bug: the operator's to fix, and the client's to know
            log.error("%s %s: the data directory's disk is full (%s)", request.method, request.path, exc)
            return render_error(InternalServerException(write_failure(exc)), request_id)
        log.exception("internal error in %s %s", request.method, request.path)
        return render_error(InternalServerException("An internal error occurred."), request_id)


def call(operation_name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Run a service function, honouring ClientToken idempotency where the operation has one."""
    handler = operations().get(operation_name)
    if handler is None:
        raise ValidationException(f"{operation_name} is not implemented by this emulator.")
    if params.get("ClientToken") is None:
        return handler(backend(), params)
    return idempotency.run_once(backend(), operation_name, params, lambda: handler(backend(), params))


def register(app: Flask, registry: OperationRegistry) -> None:
    """Answer every path not claimed by an earlier blueprint (the console) with `registry`'s handlers."""
    app.extensions["lookout_operations"] = registry
    app.add_url_rule("/<path:_any>", "lookoutvision", lambda _any: dispatch(), methods=METHODS)
    app.add_url_rule("/", "lookoutvision_root", dispatch, methods=METHODS)
