"""Which service function answers each operation of the service model.

A service function takes the backend and the validated input dict (member names as in the model)
and returns the output dict; it raises `emulator.api.errors.ServiceError` for every client error.
Keeping them free of Flask lets the web console call the very same functions.

Like a Flask blueprint collects its routes, each service module fills an `OperationTable` with
``@table.operation("CreateProject")``; nothing is registered globally. ``create_app`` merges the
tables into the app's `OperationRegistry`, which the dispatcher reads.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from emulator.api.servicemodel import service_model

if TYPE_CHECKING:
    from emulator.backend import Backend

Handler = Callable[["Backend", dict[str, Any]], dict[str, Any]]


def _require_operation(name: str) -> None:
    if name not in service_model().operation_names:
        raise ValueError(f"{name} is not an operation of the Lookout for Vision service model")


class OperationTable:
    """The operations one service module implements."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}

    def operation(self, name: str) -> Callable[[Handler], Handler]:
        """Decorator: `fn` implements operation `name` (which must exist in the model)."""
        _require_operation(name)

        def record(fn: Handler) -> Handler:
            if name in self.handlers:
                raise ValueError(f"{name} implemented twice")
            self.handlers[name] = fn
            return fn

        return record


class OperationRegistry:
    """Every operation's service function, merged from the service modules' tables."""

    def __init__(self, tables: Iterable[OperationTable]) -> None:
        self._handlers: dict[str, Handler] = {}
        for table in tables:
            for name, handler in table.handlers.items():
                if name in self._handlers:
                    raise ValueError(f"{name} implemented by two service modules")
                self._handlers[name] = handler

    def get(self, name: str) -> Handler | None:
        return self._handlers.get(name)

    def missing(self) -> list[str]:
        """Operations of the service model that no service function implements."""
        return sorted(set(service_model().operation_names) - set(self._handlers))
