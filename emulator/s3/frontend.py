"""S3 beside the API on our port: request routing and the embedded moto S3 front end.

Requests are routed to S3 or to Lookout for Vision by the service in their SigV4 credential scope,
so any bucket name works (even ``projects`` or ``2020-11-20``); unsigned requests fall back to path
rules. Both addressing styles work: path-style (``/bucket/key``) and virtual-hosted-style
(``Host: bucket.localhost:port``).
"""
from __future__ import annotations

import logging
import re
import sys
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote
from xml.sax.saxutils import escape

from emulator.disk import write_failure
from emulator.s3.chunked import ChunkedBodyError, check_decoded_length, is_streaming
from emulator.wsgi import raw_path, rewindable_body

if TYPE_CHECKING:
    from emulator.s3.stores import EmbeddedObjectStore

log = logging.getLogger(__name__)
_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/[^/]+/([^/]+)/aws4_request")
_QUERY_SCOPE = re.compile(
    r"X-Amz-Credential=[^&]*?(?:%2F|/)\d{8}(?:%2F|/)[^&%/]+(?:%2F|/)([^&%/]+)(?:%2F|/)aws4_request")
# Virtual-hosted-style addressing: the bucket is the host name's first labels before ".localhost".
_VIRTUAL_HOST = re.compile(r"(?P<bucket>.+)\.localhost(?::\d+)?", re.IGNORECASE)
API_PREFIXES = ("/2020-11-20/", "/console", "/_emulator")
# S3's naming rules for general purpose buckets: 3-63 lowercase letters, digits, dots and hyphens,
# starting and ending with a letter or digit, no two dots in a row, not an IP address, and none of
# the prefixes and suffixes S3 reserves. Checked before any request reaches moto or the disk mirror.
_BUCKET_NAME = re.compile(r"[a-z0-9](?:[a-z0-9.-]{1,61})[a-z0-9]")
_IP_ADDRESS = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
MAX_KEY_BYTES = 1024
MUTATING_METHODS = frozenset({"PUT", "POST", "DELETE"})


def signed_service(environ: dict[str, Any]) -> str | None:
    """The service named in a request's SigV4 credential scope, if it is signed."""
    found = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    if found is None:
        found = _QUERY_SCOPE.search(environ.get("QUERY_STRING", ""))
    return found.group(1) if found else None


def virtual_hosted_bucket(environ: dict[str, Any]) -> str | None:
    """The bucket of a virtual-hosted-style request (``Host: <bucket>.localhost``), else None."""
    found = _VIRTUAL_HOST.fullmatch(environ.get("HTTP_HOST", ""))
    return found.group("bucket") if found else None


def bucket_name_error(name: str) -> str | None:
    """Why `name` is not a valid S3 bucket name, or None when it is."""
    if not _BUCKET_NAME.fullmatch(name):
        return ("Bucket names are 3 to 63 lowercase letters, digits, dots and hyphens, beginning and "
                "ending with a letter or digit.")
    if ".." in name:
        return "Bucket names must not contain two adjacent periods."
    if _IP_ADDRESS.fullmatch(name):
        return "Bucket names must not be formatted as an IP address."
    if name.startswith(_RESERVED_PREFIXES) or name.endswith(_RESERVED_SUFFIXES):
        return "Bucket names must not use a prefix or suffix S3 reserves."
    return None


def key_name_error(key: str) -> str | None:
    """Why `key` is not a valid S3 object key, or None when it is (keys never name a file: the
    mirror stores an object under the hash of its key)."""
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        return f"Your key is too long: S3 keys are at most {MAX_KEY_BYTES} bytes of UTF-8."
    return None


def is_s3_request(environ: dict[str, Any]) -> bool:
    service = signed_service(environ)
    if service is not None:
        return service == "s3"
    if virtual_hosted_bucket(environ) is not None:
        return True
    return not environ.get("PATH_INFO", "/").startswith(API_PREFIXES)


def to_path_style(environ: dict[str, Any]) -> tuple[str | None, str | None]:
    """Rewrite an S3 request in place into the path-style form moto handles reliably and return
    its (bucket, key); either is None for service- or bucket-level requests.

    moto guesses the addressing style from the Host header (a dotted host name would be taken for
    a bucket) and reads the undecoded path from RAW_URI, which waitress does not set. So the bucket
    moves into the path, the Host becomes ``localhost`` and RAW_URI carries the raw path.
    """
    path = raw_path(environ)
    bucket = virtual_hosted_bucket(environ)
    if bucket is not None:
        path = f"/{bucket}{path}"
        environ["PATH_INFO"] = f"/{bucket}{environ.get('PATH_INFO', '/')}"
    port = environ.get("HTTP_HOST", "").rpartition(":")[2]
    environ["HTTP_HOST"] = f"localhost:{port}" if port.isdigit() else "localhost"
    query = environ.get("QUERY_STRING")
    environ["RAW_URI"] = f"{path}?{query}" if query else path
    first, _, rest = path.lstrip("/").partition("/")
    return (unquote(first) or None), (unquote(rest) or None)


def _lowercase_metadata_names(environ: dict[str, Any]) -> None:
    """Have moto store user metadata under lowercase names, as S3 does (``x-amz-meta-who`` comes
    back as ``who``). waitress passes headers only as WSGI keys, from which moto would rebuild
    title-cased names; moto honours the original spellings it finds under this environ key."""
    from moto.core.request import PRESERVED_HEADER_NAMES_ENVIRON_KEY

    environ[PRESERVED_HEADER_NAMES_ENVIRON_KEY] = {
        key: key[len("HTTP_"):].lower().replace("_", "-") for key in environ if key.startswith("HTTP_X_AMZ_META_")}


class EmbeddedS3:
    """moto's S3 server app, fed path-style requests in the store's own moto space, writing each
    successful change through to the store's disk mirror before the client gets its response."""

    def __init__(self, store: EmbeddedObjectStore) -> None:
        from moto.server import create_backend_app

        self._moto = create_backend_app("s3")
        self._store = store

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        bucket, key = to_path_style(environ)
        if bucket is not None and (reason := bucket_name_error(bucket)) is not None:
            return s3_error(environ, start_response, "400 Bad Request", "InvalidBucketName", reason)
        if key is not None and (reason := key_name_error(key)) is not None:
            return s3_error(environ, start_response, "400 Bad Request", "KeyTooLongError", reason)
        if is_streaming(environ):  # moto would decode it into a buffer of whatever size the client announces
            try:
                check_decoded_length(rewindable_body(environ), environ.get("HTTP_X_AMZ_DECODED_CONTENT_LENGTH"))
            except ChunkedBodyError as error:
                return s3_error(environ, start_response, error.status, error.code, str(error))
        _lowercase_metadata_names(environ)
        statuses: list[int] = []

        def recording_start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            statuses.append(int(status.split(" ", 1)[0]))
            return start_response(status, headers, exc_info)

        environ["HTTP_X_MOTO_ACCOUNT_ID"] = self._store.space.account  # this emulator's part of moto
        with self._store.space.active():
            try:
                response = self._moto(environ, recording_start_response)
            except Exception:  # noqa: BLE001 - a request moto does not model, e.g. POST to a key
                method, path = environ["REQUEST_METHOD"], raw_path(environ)
                log.warning("embedded S3 failed on %s %s", method, path, exc_info=True)
                return not_implemented(environ, start_response, f"The embedded S3 does not support {method} {path}.",
                                       exc_info=sys.exc_info())
        if bucket and environ["REQUEST_METHOD"] in MUTATING_METHODS and statuses and statuses[-1] < 300:
            try:
                self._store.changed(bucket, key)
            except OSError as exc:  # the mirror has undone the change in moto: nothing is stored
                getattr(response, "close", lambda: None)()
                log.warning("embedded S3 could not store %s %s: %s", environ["REQUEST_METHOD"], raw_path(environ), exc)
                return s3_error(environ, start_response, "500 Internal Server Error", "InternalError",
                                write_failure(exc), exc_info=sys.exc_info())
            except BaseException:
                getattr(response, "close", lambda: None)()
                raise
        return response


def no_embedded_s3(endpoint_url: str) -> Callable[..., Iterable[bytes]]:
    """What S3 requests get when the emulator uses an external store: an S3-style error that says
    where S3 is."""

    def respond(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        message = (f"This emulator serves no S3: it was started with --s3-endpoint-url {endpoint_url}; "
                   "send S3 requests there.")
        return not_implemented(environ, start_response, message)

    return respond


def not_implemented(environ: dict[str, Any], start_response: Callable[..., Any], message: str,
                    exc_info: Any = None) -> list[bytes]:
    """S3's 501 NotImplemented error (botocore does not retry a 501)."""
    return s3_error(environ, start_response, "501 Not Implemented", "NotImplemented", message, exc_info)


def s3_error(environ: dict[str, Any], start_response: Callable[..., Any], status: str, code: str, message: str,
             exc_info: Any = None) -> list[bytes]:
    """An S3 error in its XML form (SDKs read Error.Code and Error.Message)."""
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error>'
            f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
            f"<Resource>{escape(raw_path(environ))}</Resource>"
            f"<RequestId>{uuid.uuid4()}</RequestId></Error>").encode()
    start_response(status, [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))], exc_info)
    return [body]
