"""WSGI plumbing shared by the front ends on our one port (the API, S3, the console) and the request gate."""
from __future__ import annotations

import io
import tempfile
from collections.abc import Callable, Iterable
from typing import Any, BinaryIO
from urllib.parse import quote, urlsplit

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# Where the API's dispatcher leaves the name of the operation a request matched ("unknown" when
# none), for the metrics of `emulator.ops.metrics`.
OPERATION_ENVIRON_KEY = "lookout.operation"


def raw_path(environ: dict[str, Any]) -> str:
    """The request path as the client sent it, still percent-encoded.

    Decoding loses information both front ends need: an ARN in an API path carries '/' as %2F, and
    an S3 key may contain an encoded slash. waitress passes the raw request line as REQUEST_URI,
    gunicorn and werkzeug as RAW_URI (either may be an absolute URL); other servers only give the
    decoded PATH_INFO, which is re-encoded as the best remaining guess.
    """
    uri = environ.get("REQUEST_URI") or environ.get("RAW_URI")
    if uri:
        path = urlsplit(uri).path if "://" in uri.split("?", 1)[0] else uri.split("?", 1)[0]
        return path or "/"
    decoded = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace")
    return quote(decoded, safe="/") or "/"


_BODY_IN_MEMORY = 8 * 1024 * 1024  # a copied body larger than this is spooled to disk


def rewindable_body(environ: dict[str, Any]) -> BinaryIO:
    """The request body as a file at its start that a check can read and rewind, so that the app
    still reads it afterwards: waitress's own buffer when it can seek (no copy), else a copy that
    replaces ``wsgi.input``."""
    stream: BinaryIO = environ.get("wsgi.input") or io.BytesIO()
    seekable = getattr(stream, "seekable", None)
    if seekable is not None and seekable() and stream.tell() == 0:
        return stream
    try:
        length = int(environ.get("CONTENT_LENGTH") or -1)
    except ValueError:
        length = -1
    copy = tempfile.SpooledTemporaryFile(max_size=_BODY_IN_MEMORY)  # noqa: SIM115 - it becomes wsgi.input
    remaining = length
    while remaining != 0:
        chunk = stream.read(min(1024 * 1024, remaining) if remaining > 0 else 1024 * 1024)
        if not chunk:
            break
        copy.write(chunk)
        remaining -= len(chunk) if remaining > 0 else 0
    copy.seek(0)
    environ["wsgi.input"] = copy
    return copy  # type: ignore[return-value]
