"""Requests sent with ``Expect: 100-continue`` get their final response, with a body or without one
(waitress once sent ``100 Continue`` to a ``Content-Length: 0`` request and then never served it)."""
from __future__ import annotations

import socket
from urllib.parse import urlsplit

import pytest


def _exchange(endpoint_url: str, request: bytes, body: bytes = b"") -> bytes:
    parts = urlsplit(endpoint_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as conn:
        conn.sendall(request)
        received = b""
        if body:
            received = conn.recv(65536)
            assert received.startswith(b"HTTP/1.1 100 Continue"), received
            conn.sendall(body)
        while b"\r\n\r\n" not in received.split(b"100 Continue\r\n\r\n")[-1]:
            chunk = conn.recv(65536)
            if not chunk:
                break
            received += chunk
    return received.split(b"100 Continue\r\n\r\n")[-1]


@pytest.mark.parametrize("method, path", [("PUT", "/expect-continue/folder/"), ("DELETE", "/expect-continue/gone"),
                                          ("POST", "/2020-11-20/projects")])
def test_empty_bodies_with_expect_continue_are_answered(emulator, s3, method, path):
    s3.create_bucket(Bucket="expect-continue")
    s3.put_object(Bucket="expect-continue", Key="gone", Body=b"x")
    host = urlsplit(emulator.endpoint_url).netloc
    response = _exchange(emulator.endpoint_url, f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
                         "Expect: 100-continue\r\nContent-Length: 0\r\n\r\n".encode())
    # A final response (anonymous S3 writes get S3's 403, the API's empty CreateProject a 400).
    assert response.startswith((b"HTTP/1.1 200", b"HTTP/1.1 400", b"HTTP/1.1 403")), response


def test_bodies_with_expect_continue_still_get_100_continue(emulator, s3):
    s3.create_bucket(Bucket="expect-continue")
    host = urlsplit(emulator.endpoint_url).netloc
    response = _exchange(emulator.endpoint_url, f"PUT /expect-continue/body HTTP/1.1\r\nHost: {host}\r\n"
                         "Expect: 100-continue\r\nContent-Length: 5\r\n\r\n".encode(), b"hello")
    assert response.startswith(b"HTTP/1.1 200"), response
    assert s3.get_object(Bucket="expect-continue", Key="body")["Body"].read() == b"hello"


def test_boto3_puts_an_empty_folder_object(emulator):
    s3 = emulator.client("s3", read_timeout=5, retries={"max_attempts": 1})
    s3.create_bucket(Bucket="expect-continue")
    s3.put_object(Bucket="expect-continue", Key="folder/", Body=b"")
    assert s3.get_object(Bucket="expect-continue", Key="folder/")["Body"].read() == b""
