"""NextToken/MaxResults pagination shared by every List operation.

Tokens are opaque to clients but carry the sort key of the last item returned, so a page stays
correct while other clients add or delete items between calls.
"""
from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from emulator.errors import ValidationException

DEFAULT_PAGE_SIZE = 100


def encode_token(position: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": position}).encode()).decode()


def decode_token(token: str | None) -> Any:
    """The position a NextToken stands for (None for the first page)."""
    if token is None:
        return None
    try:
        return json.loads(base64.urlsafe_b64decode(token.encode()))["after"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise ValidationException(f"The NextToken {token!r} is not valid.") from None


def page_size(max_results: int | None) -> int:
    return DEFAULT_PAGE_SIZE if max_results is None else max_results
