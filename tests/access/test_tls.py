"""`serve --tls-cert/--tls-key`: the same app over HTTPS, for SDKs given the certificate as CA bundle."""
from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from emulator.testing import LocalEmulator
from tests.access.access_support import CREDENTIALS, FULL, refused


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lookout-emulator test")])
    now = dt.datetime.now(dt.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
                   .not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                               x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                  critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalEmulator, Path]]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = self_signed(folder)
    (folder / "credentials").write_text(CREDENTIALS)
    with LocalEmulator(credentials_file=folder / "credentials", tls_cert=cert, tls_key=key) as server:
        yield server, cert


def client(server: LocalEmulator, cert: Path, service: str, key: tuple[str, str] = FULL) -> Any:
    return boto3.client(service, endpoint_url=server.endpoint_url, region_name=server.settings.region,
                        aws_access_key_id=key[0], aws_secret_access_key=key[1], verify=str(cert),
                        config=Config(retries={"max_attempts": 1}))


def test_boto3_over_https_with_the_certificate_as_ca_bundle(tls_server: tuple[LocalEmulator, Path]) -> None:
    server, cert = tls_server
    assert server.endpoint_url.startswith("https://127.0.0.1:")
    lookout, s3 = client(server, cert, "lookoutvision"), client(server, cert, "s3")
    lookout.create_project(ProjectName="over-tls")
    assert [p["ProjectName"] for p in lookout.list_projects()["Projects"]] == ["over-tls"]
    assert refused(lambda: client(server, cert, "lookoutvision", (FULL[0], "x")).list_projects()) == (
        403, "InvalidSignatureException")
    s3.create_bucket(Bucket="tls-bucket")
    body = os.urandom(3 * 1024 * 1024 + 17)  # many TLS records each way
    s3.put_object(Bucket="tls-bucket", Key="big.bin", Body=body)  # over HTTPS botocore leaves the payload unsigned
    assert s3.get_object(Bucket="tls-bucket", Key="big.bin")["Body"].read() == body


def test_the_console_cookie_is_secure_over_https(tls_server: tuple[LocalEmulator, Path]) -> None:
    server, cert = tls_server
    signed_in = requests.post(f"{server.endpoint_url}/console/signin", verify=str(cert), allow_redirects=False,
                              data={"access_key_id": FULL[0], "secret_access_key": FULL[1]}, timeout=30)
    assert signed_in.status_code == 303 and "Secure" in signed_in.headers["Set-Cookie"]


def test_plain_http_and_untrusting_clients_get_no_answer(tls_server: tuple[LocalEmulator, Path]) -> None:
    server, _ = tls_server
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{server.endpoint_url}/console/", timeout=30)  # the system CAs do not know this certificate
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(server.endpoint_url.replace("https://", "http://") + "/console/", timeout=30)


def test_serve_refuses_an_unusable_certificate(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    cert, key = self_signed(tmp_path / "a")
    other_cert, _ = self_signed(tmp_path / "b")  # a certificate that is not the key's
    done = subprocess.run([sys.executable, "-m", "emulator.cli", "serve", "--port", "0", "--data-dir",
                           str(tmp_path / "data"), "--tls-cert", str(other_cert), "--tls-key", str(key)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2 and "cannot use the TLS certificate" in done.stderr  # a bad flag: exit 2
    half = subprocess.run([sys.executable, "-m", "emulator.cli", "serve", "--tls-cert", str(cert)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert half.returncode == 2 and "--tls-cert and --tls-key go together" in half.stderr


def test_an_empty_request_expecting_100_continue_is_answered_over_https(tls_server: tuple[LocalEmulator, Path]) -> None:
    """The plain channel's 100-continue fix holds over TLS too (the request gets its final answer)."""
    server, cert = tls_server
    context = ssl.create_default_context(cafile=str(cert))
    with socket.create_connection(("127.0.0.1", server.server.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
        conn.sendall(f"PUT /tls-bucket/folder/ HTTP/1.1\r\nHost: 127.0.0.1:{server.server.port}\r\n"
                     "Expect: 100-continue\r\nContent-Length: 0\r\n\r\n".encode())
        received = b""
        while b"AccessDenied" not in received:
            chunk = conn.recv(65536)
            if not chunk:
                break
            received += chunk
    assert b"HTTP/1.1 403" in received and b"AccessDenied" in received  # unsigned, refused, but answered
