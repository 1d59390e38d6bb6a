r"""JSON text from clients (request bodies, manifests, dataset changes), checked at the door.

Python's json module accepts three things nothing downstream can handle: escaped lone surrogates
(``"\ud800"`` decodes to a str that is not Unicode text, which SQLite refuses to store, so a job
holding one could not even record its failure), escaped NUL characters (``"\u0000"``, which
PostgreSQL refuses in text) and nesting deep enough to exhaust the recursion limit. All become a
`JSONTextError` here, before any value reaches a service, a job or the store.
"""
from __future__ import annotations

import json
from typing import Any

# Far deeper than any Lookout for Vision input or manifest line needs, far from Python's recursion limit.
MAX_DEPTH = 64


class JSONTextError(ValueError):
    """Valid JSON syntax that the service cannot accept; the message says why, for the client."""


def loads(text: str | bytes) -> Any:
    """`json.loads` plus the checks of `check`. Syntax errors stay `json.JSONDecodeError` (a
    ValueError) so that callers can quote its position."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise JSONTextError(f"the JSON is nested more than {MAX_DEPTH} levels deep.") from None
    check(value)
    return value


def check(value: Any) -> None:
    """Raise JSONTextError when `value` nests deeper than MAX_DEPTH or holds a string (or object
    key) that is not valid Unicode text (a lone UTF-16 surrogate)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise JSONTextError("the JSON contains a string with a NUL character (\\u0000), which the service "
                                    "can't store.")
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise JSONTextError("the JSON contains a string that is not valid Unicode text "
                                        "(an unpaired UTF-16 surrogate escape such as \\ud800).") from None
        elif isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                raise JSONTextError(f"the JSON is nested more than {MAX_DEPTH} levels deep.")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


def storable(text: str) -> str:
    """`text` with anything that is not Unicode text (lone surrogates, from data stored by older
    versions) or that PostgreSQL can't store (NUL) written as a backslash escape, so that a status
    message quoting user data can always be stored: a job must be able to record its failure
    whatever the failure quotes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
