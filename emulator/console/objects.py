"""Serving S3 objects (images and masks) to the browser, which cannot sign S3 requests itself."""
from __future__ import annotations

import io
import re
from dataclasses import dataclass

import numpy as np
from flask import Response, abort, request, url_for
from PIL import Image

from emulator.console.blueprint import backend, blueprint
from emulator.console.colours import recolouring
from emulator.console.model_results import THRESHOLD
from emulator.formats.image_files import CONTENT_TYPES, ImageError, as_rgb, decode_image, sniff_format
from emulator.s3.objects import ObjectNotFound
from emulator.s3.uri import parse_s3_uri, s3_uri


@dataclass(frozen=True)
class Overlay:
    """A layer the image detail view can show over its image."""

    kind: str  # heatmap | predicted | truth
    title: str
    url: str


@blueprint.app_template_global()
def mask_url(mask_ref: str, label_hex: dict[str, str] | None = None) -> str:
    """The overlay of a mask, its labels (label -> mask colour) painted in their display colours."""
    if label_hex:
        return url_for("console.mask_overlay", uri=mask_ref, recolour=recolouring(label_hex))
    return url_for("console.mask_overlay", uri=mask_ref)


@blueprint.app_template_global()
def heatmap_url(heatmap_ref: str) -> str:
    return url_for("console.heatmap_overlay", uri=heatmap_ref)


def overlays(heatmap_ref: str | None, predicted: tuple[str | None, dict[str, str]],
             truth: tuple[str | None, dict[str, str]] = (None, {})) -> list[Overlay]:
    """The detail view's layers: the anomaly map, the predicted mask and the true mask, those there are."""
    found = [Overlay("heatmap", "Anomaly map", heatmap_url(heatmap_ref))] if heatmap_ref else []
    for kind, title, (ref, label_hex) in (("predicted", "Predicted mask", predicted), ("truth", "True mask", truth)):
        if ref:
            found.append(Overlay(kind, title, mask_url(ref, label_hex)))
    return found


@blueprint.get("/object")
def s3_object() -> Response:
    """Stream ``?uri=s3://bucket/key`` as an image. Only images are served, never other content."""
    bucket, key = parse_s3_uri(request.args.get("uri", ""))
    try:
        data = backend().objects.get(bucket, key)
    except ObjectNotFound as missing:
        abort(404, str(missing))
    found = sniff_format(data)
    if found is None:
        abort(415, f"{s3_uri(bucket, key)} is not a PNG or JPEG image")
    # Objects under a key can be replaced, so the browser revalidates each time.
    return Response(data, content_type=CONTENT_TYPES[found], headers={"Cache-Control": "no-cache"})


@blueprint.get("/overlay")
def mask_overlay() -> Response:
    """A mask (``?uri=s3://...``) as a PNG whose background is transparent, to lay over its image.

    Masks paint anomalies in label colours on a white or black background (the manifest's
    BACKGROUND colour, or DetectAnomalies' black); both become see-through here. ``recolour``
    (``RRGGBB-RRGGBB,...``, see `colours.recolouring`) paints label colours in display colours.
    """
    rgb = np.array(as_rgb(_png_pixels()))
    background = np.all(rgb == 0, axis=-1) | np.all(rgb == 255, axis=-1)
    packed = pack_rgb(rgb)
    for pair in filter(None, request.args.get("recolour", "").split(",")):
        own, _, shown = pair.partition("-")
        if not (_HEX.fullmatch(own) and _HEX.fullmatch(shown)):
            abort(400, f"recolour takes RRGGBB-RRGGBB pairs, not {pair!r}")
        rgb[packed == int(own, 16)] = [int(shown[i:i + 2], 16) for i in (0, 2, 4)]
    alpha = np.where(background, 0, 255).astype(np.uint8)
    return _png_response(np.dstack([rgb, alpha]))


@blueprint.get("/heatmap")
def heatmap_overlay() -> Response:
    """An anomaly map (``?uri=``: a greyscale PNG, 255 = most anomalous) in a colour ramp, to lay
    over its image: see-through where the model sees nothing, opaque from the decision level up
    (128, where a segmentation model paints), and that region outlined.

    The outline is a light line inside the region's edge and a dark one outside it, so that it shows
    on dark and on light parts alike, where the ramp's own dark or light end would not. It is about
    1/300 of the image's longer side thick (at least a pixel), so it stays visible when fitted."""
    value = np.asarray(as_rgb(_png_pixels()).convert("L"), dtype=np.float32) / 255.0
    rgb = np.stack([np.interp(value, _RAMP_AT, channel) for channel in _RAMP.T], axis=-1)
    alpha = np.clip((value - 0.1) / 0.4, 0.0, 1.0) * 255
    region = value >= THRESHOLD  # the heatmap PNG's 128 and up (evaluation_output.heatmap_png)
    width = max(1, round(max(region.shape) / 300))
    inner, outer = region & ~_grown(region, width, shrink=True), _grown(region, width) & ~region
    rgb[inner], rgb[outer] = _OUTLINE_LIGHT, _OUTLINE_DARK
    alpha[inner | outer] = 255
    return _png_response(np.dstack([rgb, alpha]).round().astype(np.uint8))


def _grown(region: np.ndarray, steps: int, shrink: bool = False) -> np.ndarray:
    """`region` grown (or, with `shrink`, shrunk) by `steps` pixels, 4-connected. Beyond the image's
    border the region goes on as at the border, so its edge is never drawn along the border."""
    grown = ~region if shrink else region
    for _ in range(steps):
        padded = np.pad(grown, 1, mode="edge")
        grown = (padded[1:-1, 1:-1] | padded[:-2, 1:-1] | padded[2:, 1:-1]
                 | padded[1:-1, :-2] | padded[1:-1, 2:])
    return ~grown if shrink else grown


@blueprint.app_template_global()
def heatmap_gradient() -> str:
    """The heatmaps' colour ramp as a CSS gradient, for legends (from see-through, as the overlay)."""
    stops = [f"rgba({r:.0f}, {g:.0f}, {b:.0f}, {min(1.0, max(0.0, (at - 0.1) / 0.4)):.2f}) {at * 100:.1f}%"
             for at, (r, g, b) in zip(_RAMP_AT, _RAMP, strict=True)]
    return f"linear-gradient(90deg, {', '.join(stops)})"


def _png_pixels() -> Image.Image:
    """The PNG named by ``?uri=s3://...``, decoded and checked (404 if missing, 415 if not a PNG)."""
    bucket, key = parse_s3_uri(request.args.get("uri", ""))
    try:
        return decode_image(backend().objects.get(bucket, key), s3_uri(bucket, key), ("PNG",))
    except ObjectNotFound as missing:
        abort(404, str(missing))
    except ImageError as bad:
        abort(415, str(bad))


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """Each RGB pixel as one 0xRRGGBB integer (colours compare in one step)."""
    packed: np.ndarray = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    return packed


def label_areas(uri: str, label_hex: dict[str, str]) -> dict[str, float]:
    """The share of the mask at `uri` each label (label -> ``#RRGGBB``) covers, 0 to 1."""
    bucket, key = parse_s3_uri(uri)
    packed = pack_rgb(np.asarray(as_rgb(decode_image(backend().objects.get(bucket, key), uri, ("PNG",)))))
    return {name: float(np.mean(packed == int(colour.lstrip("#"), 16))) for name, colour in label_hex.items()}


def _png_response(rgba: np.ndarray) -> Response:
    out = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(out, "PNG")
    return Response(out.getvalue(), content_type=CONTENT_TYPES["PNG"], headers={"Cache-Control": "no-cache"})


_HEX = re.compile(r"[0-9A-Fa-f]{6}")
# A perceptual dark-to-bright ramp (lightness rising evenly, like matplotlib's "inferno") that uses
# none of the console's status colours: near-black, indigo, purple, plum, crimson, vermilion, amber,
# gold, pale yellow.
_RAMP_AT = np.linspace(0.0, 1.0, 9)
_RAMP = np.array([[0, 0, 4], [31, 12, 72], [85, 15, 109], [136, 34, 106], [186, 54, 85], [227, 89, 51],
                  [249, 140, 10], [249, 201, 50], [252, 255, 164]], dtype=np.float32)
_OUTLINE_LIGHT, _OUTLINE_DARK = (255, 255, 255), (0, 0, 0)
