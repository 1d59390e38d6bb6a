"""NextToken/MaxResults pagination shared by every List operation.

Tokens are opaque to clients but carry the sort key of the last item returned, so a page stays
correct while other clients add or delete items between calls. They are standard base64, the
alphabet the model's PaginationToken pattern allows.
"""
from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from emulator.api.errors import ValidationException
from emulator.formats import jsontext

DEFAULT_PAGE_SIZE = 100
Row = TypeVar("Row")


def encode_token(position: Any) -> str:
    return base64.b64encode(json.dumps({"after": position}).encode()).decode()


def decode_token(token: str | None, expected: type | tuple[type, ...] = object) -> Any:
    """The position a NextToken stands for (None for the first page). A position that is not an
    `expected` instance is a token of another listing: as invalid as a garbled one."""
    if token is None:
        return None
    try:
        # checked like any JSON input: a crafted token must not carry text the store can't hold
        position = jsontext.loads(base64.b64decode(token.encode(), validate=True))["after"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        position = None
    if position is None or not isinstance(position, expected):
        raise invalid_token(token)
    return position


def invalid_token(token: str) -> ValidationException:
    """The error for a NextToken that is garbled or belongs to another listing."""
    return ValidationException(f"The NextToken {token!r} is not valid: pass the NextToken of the previous "
                               "response of the same listing, unchanged.")


def page_size(max_results: int | None) -> int:
    return DEFAULT_PAGE_SIZE if max_results is None else max_results


def page(rows: Sequence[Row], size: int, position: Callable[[Row], Any]) -> tuple[Sequence[Row], str | None]:
    """Split rows fetched with ``LIMIT size + 1`` into this page and the NextToken (None on the last
    page); `position` gives a row's sort key, which the next query resumes after."""
    if len(rows) <= size:
        return rows, None
    return rows[:size], encode_token(position(rows[size - 1]))
