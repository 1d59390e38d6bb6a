r"""S3's ``aws-chunked`` request bodies, read without trusting any number the client announces.

A streamed upload (``X-Amz-Content-SHA256: STREAMING-...``) sends its data as chunks, each
``<hex size>[;chunk-signature=<signature>]\r\n<data>\r\n``, ending with an empty chunk that
trailing headers may follow, and announces the decoded size in ``X-Amz-Decoded-Content-Length``.
Both numbers come from the client: a chunk's data is read a bounded piece at a time until the
body itself runs out, and the announced size must equal what the chunks hold, as S3 insists.
Otherwise moto, which decodes the body into a buffer of the announced size, would store a few
hundred bytes as hundreds of megabytes of zeros or fail allocating it.

`emulator.security.access` checks the chunks' signatures with the same reader.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

# How a request says its body is aws-chunked (the STREAMING-* payload hashes moto decodes).
STREAMING_PREFIX = "STREAMING-"
# A chunk header is a hex size and a 64-digit signature; a longer line is not a chunk header.
MAX_HEADER_LINE = 4096
# Chunk data is read (and hashed) at most this much at a time, whatever size its header claims.
_PIECE = 1024 * 1024
_HEX_SIZE = re.compile(rb"[0-9a-fA-F]{1,16}")


class ChunkedBodyError(ValueError):
    """The body is not what its aws-chunked framing or its decoded length says: the HTTP status
    and S3 error code to answer it with, and a message."""

    def __init__(self, status: str, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _incomplete(message: str) -> ChunkedBodyError:
    return ChunkedBodyError("400 Bad Request", "IncompleteBody", message)


def _invalid(message: str) -> ChunkedBodyError:
    return ChunkedBodyError("400 Bad Request", "InvalidRequest", message)


@dataclass(frozen=True)
class Chunk:
    """One chunk as it arrived: its size, its ``chunk-signature`` (None where the encoding signs no
    chunks) and the SHA-256 of its data (hex), which a chunk's signature covers."""

    size: int
    signature: str | None
    sha256: str


def is_streaming(environ: dict[str, Any]) -> bool:
    """Whether the request body is aws-chunked, as its payload hash announces."""
    return str(environ.get("HTTP_X_AMZ_CONTENT_SHA256", "")).startswith(STREAMING_PREFIX)


def read_chunks(body: BinaryIO) -> Iterator[Chunk]:
    """Each chunk of an aws-chunked body up to and including the final empty one (what follows it,
    trailing headers, is not chunk data); malformed framing raises ChunkedBodyError."""
    while True:
        line = body.readline(MAX_HEADER_LINE)
        if not line:
            raise _incomplete("The aws-chunked body ended before its final empty chunk.")
        if not line.endswith(b"\r\n"):
            raise _invalid("An aws-chunked chunk header is not a line ending in CRLF.")
        size_text, _, extension = line[:-2].partition(b";")
        if not _HEX_SIZE.fullmatch(size_text.strip()):
            raise _invalid("An aws-chunked chunk header does not start with a hexadecimal size.")
        size = int(size_text, 16)
        name, _, value = extension.partition(b"=")
        signature = value.decode("ascii", "replace").strip() if name.strip() == b"chunk-signature" else None
        digest = hashlib.sha256()
        left = size
        while left:
            piece = body.read(min(left, _PIECE))
            if not piece:
                raise _incomplete("An aws-chunked chunk is shorter than its header says.")
            digest.update(piece)
            left -= len(piece)
        yield Chunk(size, signature, digest.hexdigest())
        if size == 0:
            return
        if body.read(2) != b"\r\n":
            raise _invalid("An aws-chunked chunk is longer than its header says.")


def check_decoded_length(body: BinaryIO, announced: str | None) -> None:
    """ChunkedBodyError unless the chunks of `body` hold exactly `announced` bytes (the request's
    ``X-Amz-Decoded-Content-Length``); `body` is rewound either way."""
    if announced is None:
        raise ChunkedBodyError("411 Length Required", "MissingContentLength",
                               "An aws-chunked upload must give X-Amz-Decoded-Content-Length.")
    if not announced.isdigit() or not announced.isascii():
        raise _invalid(f"X-Amz-Decoded-Content-Length must be a number of bytes, not {announced[:40]!r}.")
    expected, total = int(announced), 0
    try:
        for chunk in read_chunks(body):
            total += chunk.size
            if total > expected:
                raise _invalid(f"The aws-chunked body holds more than the {expected} bytes "
                               "X-Amz-Decoded-Content-Length announces.")
    finally:
        body.seek(0)
    if total < expected:
        raise _incomplete(f"You did not provide the number of bytes specified by X-Amz-Decoded-Content-Length: "
                          f"{expected} announced, the chunks hold {total}.")
