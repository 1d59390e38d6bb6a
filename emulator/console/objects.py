"""Serving S3 objects (images and masks) to the browser, which cannot sign S3 requests itself."""
from __future__ import annotations

import io

import numpy as np
from flask import Response, abort, request
from PIL import Image

from emulator.console.blueprint import backend, blueprint
from emulator.formats.image_files import CONTENT_TYPES, ImageError, decode_image, sniff_format
from emulator.s3.objects import ObjectNotFound
from emulator.s3.uri import parse_s3_uri, s3_uri


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
    BACKGROUND colour, or DetectAnomalies' black); both become see-through here.
    """
    bucket, key = parse_s3_uri(request.args.get("uri", ""))
    try:
        mask = decode_image(backend().objects.get(bucket, key), s3_uri(bucket, key), ("PNG",))
    except ObjectNotFound as missing:
        abort(404, str(missing))
    except ImageError as bad:
        abort(415, str(bad))
    rgb = np.asarray(mask.convert("RGB"))
    background = np.all(rgb == 0, axis=-1) | np.all(rgb == 255, axis=-1)
    alpha = np.where(background, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(out, "PNG")
    return Response(out.getvalue(), content_type=CONTENT_TYPES["PNG"], headers={"Cache-Control": "no-cache"})
