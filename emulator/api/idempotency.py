"""ClientToken idempotency: the same token with the same input returns the first call's result.

A retry with the same token but different input is a client error (ConflictException, as the real
service answers). Results are kept for 8 hours, like AWS's idempotency window.
"""
from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from emulator.api.errors import ConflictException
from emulator.api.statuses import ResourceType

if TYPE_CHECKING:
    from emulator.backend import Backend

TOKEN_TTL_SECONDS = 8 * 3600
# Striped locks: concurrent retries of one token serialise without a lock per token ever created.
_LOCKS = tuple(threading.Lock() for _ in range(64))


def _lock_for(operation: str, token: str) -> threading.Lock:
    return _LOCKS[hash((operation, token)) % len(_LOCKS)]


def fingerprint(params: dict[str, Any]) -> str:
    """A digest of an operation's input without its ClientToken: what "the same input" means."""
    canonical = json.dumps({k: v for k, v in params.items() if k != "ClientToken"}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _resource_type(operation: str) -> str:
    """The ResourceType a ConflictException names for an operation that takes a ClientToken."""
    for word, resource_type in (("Packaging", ResourceType.MODEL_PACKAGE_JOB), ("Dataset", ResourceType.DATASET),
                                ("Model", ResourceType.MODEL), ("Project", ResourceType.PROJECT)):
        if word in operation:
            return resource_type
    return ResourceType.PROJECT


def run_once(backend: Backend, operation: str, params: dict[str, Any],
             run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run `run` unless an earlier call with this ClientToken already succeeded; then replay its
    result. A failed call records nothing, so its retry runs again."""
    token = params["ClientToken"]
    digest = fingerprint(params)
    with _lock_for(operation, token):
        now = backend.now()
        row = backend.store.client_tokens.find(operation, token, since=now - TOKEN_TTL_SECONDS)
        if row is not None:
            if row.input_hash != digest:
                raise ConflictException(
                    f"The ClientToken {token} was already used for a {operation} request with different "
                    "parameters; use a new token for a new request.",
                    resource_id=params.get("ProjectName"), resource_type=_resource_type(operation))
            return cast(dict[str, Any], json.loads(row.response))
        result = run()
        backend.store.client_tokens.remember(operation, token, digest, json.dumps(result, default=_json_default),
                                             created_at=now, forget_before=now - TOKEN_TTL_SECONDS)
        return result


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        raise TypeError("binary results are not replayable")
    if hasattr(value, "timestamp"):
        return value.timestamp()
    raise TypeError(type(value))
