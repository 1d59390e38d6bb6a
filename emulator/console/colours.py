"""Display colours of anomaly labels in the console.

A label's own mask colour (its ``hex-color``) is whatever the user's labeling tool chose, often the
green, red, blue or orange the console uses for normal/correct, anomaly/incorrect, information and
actions. So the console shows every anomaly label, badges and mask overlays alike, in a colour of
its own palette instead: hues away from those status colours, dark enough for white badge text
(contrast at least 4.5:1, WCAG AA). The mask's real colour stays visible in the badge's tooltip.
"""
from __future__ import annotations

import zlib
from collections.abc import Iterable

# purple, raspberry, mustard, teal, indigo, pink: hues >= 25 degrees from the status colours.
PALETTE = ("#6A3D9A", "#B0106E", "#6B5D00", "#00796B", "#3F3D99", "#C2185B")
# The console's status colours (console.css --ok, --bad, --info, --accent and the unlabeled grey).
STATUS_COLOURS = ("#1D8102", "#D13212", "#0073BB", "#B85000", "#687078")


def label_colours(names: Iterable[str]) -> dict[str, str]:
    """A display colour for each label name: the same name gets the same colour on every page
    (chosen by a hash of the name), and labels shown together differ while the palette lasts."""
    chosen: dict[str, str] = {}
    for name in sorted(set(names)):
        slot = zlib.crc32(name.encode()) % len(PALETTE)
        used = set(chosen.values())
        for step in range(len(PALETTE)):
            candidate = PALETTE[(slot + step) % len(PALETTE)]
            if candidate not in used:
                slot = (slot + step) % len(PALETTE)
                break
        chosen[name] = PALETTE[slot]
    return chosen


def recolouring(label_hex: dict[str, str]) -> str:
    """The overlay route's ``recolour`` argument that paints each label's mask colour (label ->
    ``#RRGGBB``) in its display colour: ``RRGGBB-RRGGBB`` pairs joined by commas."""
    display = label_colours(label_hex)
    return ",".join(f"{own.lstrip('#').upper()}-{display[name].lstrip('#')}" for name, own in sorted(label_hex.items()))
