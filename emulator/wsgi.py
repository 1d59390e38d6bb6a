"""WSGI plumbing shared by the front ends on our one port (the API, S3, later the console)."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
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
