"""restJson1 wire format: bind an HTTP request to an operation's input, render outputs and errors.

Binding follows each member's `location` in the service model (uri, querystring, header, payload,
JSON body); conversions are only those the wire format needs (query strings are text), the
constraints themselves are checked by `emulator.api.schemas`.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import botocore.model
from flask import Request, Response

from emulator.api.errors import ServiceError, ValidationException
from emulator.formats import jsontext

REQUEST_ID_HEADER = "x-amzn-RequestId"


def _text_value(shape: botocore.model.Shape, values: list[str]) -> Any:
    """Query strings and headers are text; turn them into what the schema expects. Text that does
    not convert is passed on unchanged, for the schema to report with the member's name."""
    kind = shape.type_name
    if kind == "list":
        return values
    value = values[-1]
    if kind == "boolean":
        return {"true": True, "false": False}.get(value, value)
    try:
        if kind in ("integer", "long"):
            return int(value)
        if kind in ("float", "double"):
            return float(value)
    except ValueError:
        pass
    return value


def bind_request(operation: botocore.model.OperationModel, request: Request,
                 uri_labels: dict[str, str]) -> dict[str, Any]:
    """Collect the raw input members of `operation` from the request (no validation yet)."""
    shape = operation.input_shape
    if shape is None:
        return {}
    params: dict[str, Any] = {}
    payload_member = shape.serialization.get("payload")
    body_members: dict[str, botocore.model.Shape] = {}
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        wire = member.serialization.get("name", name)
        if location == "uri":
            if wire in uri_labels:
                params[name] = uri_labels[wire]
        elif location == "querystring":
            values = request.args.getlist(wire)
            if values:
                params[name] = _text_value(member, values)
        elif location == "header":
            if wire in request.headers:
                params[name] = _text_value(member, [request.headers[wire]])
        elif name == payload_member:
            data = request.get_data(cache=False)
            if data:
                params[name] = data
        else:
            body_members[name] = member
    if body_members:
        raw = request.get_data(cache=False)
        document: Any = {}
        if raw.strip():
            try:
                document = jsontext.loads(raw)
            except jsontext.JSONTextError as exc:
                raise ValidationException(f"The request body can't be accepted: {exc}") from None
            except (ValueError, UnicodeDecodeError):
                raise ValidationException("The request body is not valid JSON.") from None
        if not isinstance(document, dict):
            raise ValidationException("The request body must be a JSON object.")
        for name, member in body_members.items():
            wire = member.serialization.get("name", name)
            if wire in document:
                params[name] = document[wire]
    return params


def _serialize(shape: botocore.model.Shape, value: Any) -> Any:
    kind = shape.type_name
    if value is None:
        return None
    if kind == "structure":
        out = {}
        for name, member in shape.members.items():
            if member.serialization.get("location"):
                continue  # headers/status are rendered by `render_output`
            if name in value and value[name] is not None:
                out[member.serialization.get("name", name)] = _serialize(member, value[name])
        return out
    if kind == "list":
        return [_serialize(shape.member, item) for item in value]
    if kind == "map":
        return {k: _serialize(shape.value, v) for k, v in value.items()}
    if kind == "timestamp":
        if isinstance(value, dt.datetime):
            return value.timestamp()
        return float(value)
    if kind == "blob":
        return base64.b64encode(value).decode("ascii")
    return value


def render_output(operation: botocore.model.OperationModel, result: dict[str, Any], request_id: str) -> Response:
    """Render a service function's result dict as the operation's HTTP response."""
    shape = operation.output_shape
    status = int(operation.http.get("responseCode", 200))
    headers = {REQUEST_ID_HEADER: request_id}
    body: dict[str, Any] = {}
    if shape is not None:
        for name, member in shape.members.items():
            if member.serialization.get("location") == "header" and result.get(name) is not None:
                headers[member.serialization.get("name", name)] = str(result[name])
        body = _serialize(shape, result)
    return Response(json.dumps(body), status=status, headers=headers, content_type="application/json")


def render_error(error: ServiceError, request_id: str) -> Response:
    """The error form botocore and the JS SDK parse for restJson1."""
    headers = {REQUEST_ID_HEADER: request_id, "x-amzn-ErrorType": error.code}
    return Response(json.dumps(error.body()), status=error.status, headers=headers,
                    content_type="application/json")
