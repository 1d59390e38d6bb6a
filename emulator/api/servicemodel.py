"""The Lookout for Vision service model, read from botocore's data at run time.

The model (installed by ``botocore-a-la-carte-lookoutvision``) is the single source of truth for
routes, input bindings, constraints and error shapes; nothing here retypes them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from urllib.parse import unquote

import botocore.loaders
import botocore.model

SERVICE_NAME = "lookoutvision"


@cache
def service_model() -> botocore.model.ServiceModel:
    """Load the service model once per process."""
    loader = botocore.loaders.create_loader()
    data = loader.load_service_model(SERVICE_NAME, "service-2")
    return botocore.model.ServiceModel(data, service_name=SERVICE_NAME)


@dataclass(frozen=True)
class Route:
    """One operation's HTTP binding, compiled for matching incoming requests."""

    operation: botocore.model.OperationModel
    method: str
    pattern: re.Pattern[str]
    literal_segments: int  # more literal segments = more specific; breaks ties between routes

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if method != self.method:
            return None
        found = self.pattern.fullmatch(path)
        if found is None:
            return None
        return {name: unquote(value) for name, value in found.groupdict().items()}


def _compile(uri: str) -> tuple[re.Pattern[str], int]:
    path = uri.split("?", 1)[0]
    regex, literals = [], 0
    for segment in path.strip("/").split("/"):
        label = re.fullmatch(r"\{(\w+)(\+?)\}", segment)
        if label:
            # Empty labels match too, so that a missing name gets the length error it deserves
            # rather than "no such operation".
            body = ".*" if label.group(2) else "[^/]*"
            regex.append(f"(?P<{label.group(1)}>{body})")
        else:
            regex.append(re.escape(segment))
            literals += 1
    return re.compile("/" + "/".join(regex)), literals


@cache
def routes() -> tuple[Route, ...]:
    """All operations' routes, most specific first."""
    model = service_model()
    built = []
    for name in model.operation_names:
        op = model.operation_model(name)
        pattern, literals = _compile(op.http["requestUri"])
        built.append(Route(op, op.http["method"], pattern, literals))
    return tuple(sorted(built, key=lambda r: -r.literal_segments))


def find_route(method: str, raw_path: str) -> tuple[botocore.model.OperationModel, dict[str, str]] | None:
    """Return the operation and its decoded URI labels for a request, or None.

    `raw_path` must still be percent-encoded: an ARN label carries '/' as %2F, and decoding before
    matching would split it into several segments.
    """
    for route in routes():
        labels = route.match(method, raw_path)
        if labels is not None:
            return route.operation, labels
    return None


def error_status(code: str) -> int:
    """HTTP status that the model declares for an error shape."""
    shape = service_model().shape_for(code)
    return int(shape.metadata.get("error", {}).get("httpStatusCode", 400))


def error_members(code: str) -> tuple[str, ...]:
    return tuple(service_model().shape_for(code).members)

