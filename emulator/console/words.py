"""How the console words and orders things for people: counts with their plural, natural sorting."""
from __future__ import annotations

import re
from typing import Any

_DIGITS = re.compile(r"(\d+)")


def count(number: int, noun: str) -> str:
    """``1 image``, ``3 images``: messages about what the user just did read naturally."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def natural_key(text: str) -> tuple[Any, ...]:
    """Sort key that orders numbers inside names by value: anomaly-2 before anomaly-10."""
    return tuple(int(part) if part.isdigit() else part.casefold() for part in _DIGITS.split(text))
