"""Fuzz every operation of the service model with inputs generated from its shapes: wrong types,
missing required members, values at and just past each member's constraints (lengths, ranges, item
counts), extreme lengths and numbers, bad Unicode, and raw bodies and query strings no SDK would send
(deep nesting, invalid UTF-8, 1e400, NaN). No response may be a 5xx, every error must be in AWS's
form (an error code and a message) and the server may log no traceback. The request count is printed
(run with -s) and quoted in README.md."""
from __future__ import annotations

import http.client
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import botocore.exceptions
import botocore.model
import pytest

from emulator.api.servicemodel import service_model
from emulator.testing import LocalEmulator

pytestmark = pytest.mark.slow

PROJECT = "fuzz-project"
# Members whose valid value must name something that exists, so that mutating one member at a time
# reaches past the lookups into the service code.
KNOWN = {"ProjectName": PROJECT, "DatasetType": "train", "ModelVersion": "1",
         "ResourceArn": f"arn:aws:lookoutvision:us-east-1:123456789012:project/{PROJECT}"}
WRONG_TYPES: list[Any] = [None, 12345, -1, 1.5, True, "text", [], {}, ["a", 1], {"a": {"b": []}}]
EXTREMES: list[Any] = ["", "x" * 100_000, "\ud800", "a\udfffb", "\x00", "\u202e\u0000\uffff", "😀" * 3000,
                       2**63, -(2**63) - 1, 10**40, 1e308, -1e308, 0, ["x"] * 10_000, [[[[[[[["deep"]]]]]]]]]
RAW_BODIES = [b"[" * 100_000, b'{"a":' * 5_000 + b"1" + b"}" * 5_000, b"\xff\xfe\xfd", b'{"a": "\xed\xa0\x80"}',
              b"null", b"[]", b'"text"', b"12", b'{"', b"{" + b" " * 1_000_000 + b"}", b'{"a": NaN}',
              b'{"a": Infinity}', b'{"a": -Infinity}', b'{"a": 1e400}']
RAW_QUERY_VALUES = ["1e400", "inf", "-inf", "nan", "-1", "99999999999999999999999999", "%00", "%FF", "%ED%A0%80",
                    "1" * 5000, "true%00", "%5B" * 2000]


def valid(shape: botocore.model.Shape, name: str = "") -> Any:
    """A plausible value of `shape` (what a client would send), to mutate one member at a time."""
    if name in KNOWN:
        return KNOWN[name]
    kind = shape.type_name
    if kind == "structure":
        return {member: valid(shape.members[member], member) for member in shape.required_members}
    if kind == "list":
        return [valid(shape.member) for _ in range(max(1, shape.metadata.get("min", 1)))]
    if kind == "map":
        return {"key": valid(shape.value)}
    if kind == "string":
        if "enum" in shape.metadata:
            return shape.metadata["enum"][0]
        if name == "ClientToken":
            return str(uuid.uuid4())
        return "a" * max(1, shape.metadata.get("min", 1))
    if kind in ("integer", "long"):
        return max(1, shape.metadata.get("min", 1))
    if kind in ("float", "double"):
        return 0.5
    if kind == "boolean":
        return True
    if kind == "timestamp":
        return 0
    if kind == "blob":
        return b"\x89PNG\r\n\x1a\n"
    raise AssertionError(f"unknown shape type {kind}")


def boundaries(shape: botocore.model.Shape) -> list[Any]:
    """Values at the shape's constraints and one step past them: lengths of strings, blobs and lists,
    and the range of numbers (what "min" and "max" allow, and just not)."""
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    kind = shape.type_name
    if kind in ("integer", "long", "float", "double"):
        return [edge for bound in (low, high) if bound is not None for edge in (bound - 1, bound, bound + 1)]
    sizes = sorted({size for bound in (low, high) if bound is not None for size in (bound - 1, bound, bound + 1)
                    if 0 <= size <= 1_000_000})
    if kind == "string" and "enum" not in shape.metadata:
        return ["a" * size for size in sizes]
    if kind == "blob":
        return [b"\x00" * size for size in sizes]
    if kind == "list":
        return [[valid(shape.member)] * size for size in sizes]
    return []


def mutations(operation: botocore.model.OperationModel) -> Iterator[dict[str, Any]]:
    """Inputs with one member missing or replaced by a wrong, extreme or badly encoded value."""
    shape = operation.input_shape
    if shape is None:
        return
    base = {name: valid(member, name) for name, member in shape.members.items()}
    yield dict(base)
    for name, member in shape.members.items():
        if name in shape.required_members:
            yield {k: v for k, v in base.items() if k != name}
        for value in [*WRONG_TYPES, *EXTREMES, *boundaries(member)]:
            yield {**base, name: value}
        if member.type_name == "structure":  # one level down: each nested member wrong in turn
            for nested in member.members:
                for value in (None, 7, "x" * 10_000, "\ud800", [{}]):
                    yield {**base, name: {**base[name], nested: value}} if isinstance(base[name], dict) else base


class Recorder(logging.Handler):
    """Collects every log record that carries a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.tracebacks: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.stack_info:
            self.tracebacks.append(self.format(record))


def _raw(endpoint_url: str, method: str, path: str, body: bytes = b"") -> tuple[int, str | None]:
    """The status of a hand-made request, and what is wrong with its error response if it is not in
    AWS's restJson1 form (x-amzn-ErrorType naming the error, a JSON body with its message)."""
    parts = urlsplit(endpoint_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json",
                                                       "Content-Length": str(len(body))})
        response = conn.getresponse()
        payload = response.read()
    finally:
        conn.close()
    if response.status < 400:
        return response.status, None
    try:
        document = json.loads(payload)
    except ValueError:
        return response.status, f"a body that is not JSON: {payload[:80]!r}"
    if not response.getheader("x-amzn-ErrorType") or not isinstance(document, dict) or not (
            document.get("message") or document.get("Message")):
        return response.status, f"no error type or message: {response.getheader('x-amzn-ErrorType')} {payload[:80]!r}"
    return response.status, None


def _refused_by_http_server(status: int, message: str) -> bool:
    """A request waitress refuses before any of our code sees it: a header value with control
    characters (400) or headers past its size limit (431), answered with its own plain-text page.
    AWS's front door also answers those itself, outside the API's error format; they are counted
    and printed, not failed."""
    return status in (400, 431) and "(generated by lookout-emulator)" in message


def _path(operation: botocore.model.OperationModel) -> str:
    """The operation's request URI with every label filled with a valid value."""
    uri = operation.http["requestUri"].split("?")[0]
    for name, member in (operation.input_shape.members.items() if operation.input_shape else []):
        if member.serialization.get("location") == "uri":
            wire = member.serialization.get("name", name)
            uri = uri.replace("{" + wire + "}", quote(str(valid(member, name)), safe=""))
    return uri


def test_no_input_gets_a_5xx_or_a_traceback(tmp_path):
    model = service_model()
    operations = [model.operation_model(name) for name in model.operation_names]
    assert len(operations) == 22
    # Deletions last, so that the resources the others name exist for as long as possible.
    operations.sort(key=lambda op: op.name.startswith("Delete"))
    recorder = Recorder()
    root = logging.getLogger()
    root.addHandler(recorder)
    statuses: dict[int, int] = {}
    failures: list[str] = []
    try:
        with LocalEmulator(data_dir=tmp_path / "data") as emu:
            client = emu.client("lookoutvision", parameter_validation=False, retries={"max_attempts": 1},
                                read_timeout=60)
            client.create_project(ProjectName=PROJECT)
            client.create_dataset(ProjectName=PROJECT, DatasetType="train")
            sent = transport = 0
            for operation in operations:
                method = getattr(client, botocore.xform_name(operation.name))
                for params in mutations(operation):
                    try:
                        method(**params)
                        status = 200
                    except botocore.exceptions.ClientError as error:
                        status = error.response["ResponseMetadata"]["HTTPStatusCode"]
                        aws_type = error.response["ResponseMetadata"]["HTTPHeaders"].get("x-amzn-errortype")
                        if _refused_by_http_server(status, error.response["Error"].get("Message", "")):
                            transport += 1
                        elif not aws_type or not error.response["Error"].get("Message"):
                            failures.append(f"{operation.name} {str(params)[:200]} -> {status} without an error "
                                            f"type and message: {error.response['Error']}")
                    except Exception:  # noqa: BLE001, S112 - the SDK could not serialise it (the raw requests cover that)
                        continue
                    sent += 1
                    statuses[status] = statuses.get(status, 0) + 1
                    if status >= 500:
                        failures.append(f"{operation.name} {str(params)[:200]} -> {status}")
                path = _path(operation)
                method_name = operation.http["method"]
                raw = [(path, body) for body in RAW_BODIES] if method_name in ("POST", "PUT", "PATCH") else []
                queries = [m.serialization.get("name", n) for n, m in operation.input_shape.members.items()
                           if m.serialization.get("location") == "querystring"] if operation.input_shape else []
                raw += [(f"{path}?{wire}={value}", b"") for wire in queries for value in RAW_QUERY_VALUES]
                raw += [(path.replace(PROJECT, label), b"") for label in ("%ED%A0%80", "%FF", "a" * 5000, "%2e%2e")
                        if PROJECT in path]
                for target, body in raw:
                    status, unlike_aws = _raw(emu.endpoint_url, method_name, target, body)
                    sent += 1
                    statuses[status] = statuses.get(status, 0) + 1
                    if status >= 500 or unlike_aws:
                        failures.append(f"{operation.name} raw {method_name} {target[:120]} {body[:60]!r} -> {status}"
                                        f" {unlike_aws or ''}")
            emu.backend.jobs.wait_idle(timeout=120)
    finally:
        root.removeHandler(recorder)
    print(f"\nfuzz: {sent} requests over {len(operations)} operations; statuses {dict(sorted(statuses.items()))}; "
          f"{transport} refused by the HTTP server itself")
    assert not failures, "\n".join(failures[:40])
    assert not recorder.tracebacks, "\n\n".join(recorder.tracebacks[:5])
