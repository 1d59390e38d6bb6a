"""Registry of service functions, one per operation of the service model.

A service function takes the backend and the validated input dict (member names as in the model)
and returns the output dict; it raises `emulator.api.errors.ServiceError` for every client error.
Keeping them free of Flask lets the web console call the very same functions.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from emulator.api.servicemodel import service_model

if TYPE_CHECKING:
    from emulator.backend import Backend

Handler = Callable[["Backend", dict[str, Any]], dict[str, Any]]
HANDLERS: dict[str, Handler] = {}


def operation(name: str) -> Callable[[Handler], Handler]:
    """Register `fn` as the implementation of operation `name` (which must exist in the model)."""
    if name not in service_model().operation_names:
        raise ValueError(f"{name} is not an operation of the Lookout for Vision service model")

    def register(fn: Handler) -> Handler:
        if name in HANDLERS:
            raise ValueError(f"{name} registered twice")
        HANDLERS[name] = fn
        return fn

    return register


def handler_for(name: str) -> Handler:
    import emulator.services  # noqa: F401  (importing registers every service module's handlers)

    return HANDLERS[name]
