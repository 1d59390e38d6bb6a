"""`serve --trusted-proxy`: behind a load balancer the client's address comes from X-Forwarded-For, but
only when the balancer's network is trusted; otherwise the header is ignored, whatever it claims.

The servers here listen on 127.0.0.1 and the tests connect from loopback addresses of their choice, so
127.0.0.0/8 plays the balancer's network. What the server takes for the client's address is seen where
it matters: in the log line of a refused request, and in whose failed sign-ins lock whom out.
"""
from __future__ import annotations

import http.client
import ipaddress
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest

from emulator.security.proxies import IPNetwork
from emulator.testing import LocalEmulator
from tests.access.access_support import FULL, READ_ONLY

BALANCERS: tuple[IPNetwork, ...] = (ipaddress.ip_network("127.0.0.0/8"),)
LOCKOUT_SECONDS = 600.0  # longer than any test: a lockout seen here is one these tests caused


def send(server: LocalEmulator, method: str, path: str, forwarded_for: list[str], peer: str = "127.0.0.1",
         body: dict[str, str] | None = None, host: str | None = None) -> int:
    """A request from the loopback address `peer` with one X-Forwarded-For header line per item; its status."""
    url = urlsplit(server.endpoint_url)
    connection = http.client.HTTPConnection(str(url.hostname), url.port, timeout=30, source_address=(peer, 0))
    try:
        connection.putrequest(method, path, skip_host=host is not None)
        if host is not None:
            connection.putheader("Host", host)
        for value in forwarded_for:
            connection.putheader("X-Forwarded-For", value)
        data = urlencode(body).encode() if body is not None else b""
        connection.putheader("Content-Type", "application/x-www-form-urlencoded")
        connection.putheader("Content-Length", str(len(data)))
        connection.endheaders(data)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def sign_in(server: LocalEmulator, key: tuple[str, str], forwarded_for: str, peer: str = "127.0.0.1") -> int:
    return send(server, "POST", "/console/signin", [forwarded_for], peer,
                {"access_key_id": key[0], "secret_access_key": key[1]})


def logged_client(server: LocalEmulator, caplog: pytest.LogCaptureFixture, forwarded_for: list[str],
                  peer: str = "127.0.0.1") -> str:
    """The address the server names in the log line of a request it refuses (a Host it does not serve)."""
    caplog.clear()
    with caplog.at_level("WARNING", logger="emulator.security.gate"):
        assert send(server, "GET", "/2020-11-20/projects", forwarded_for, peer, host="elsewhere.example") == 403
    (line,) = [record.getMessage() for record in caplog.records if record.getMessage().startswith("refused")]
    return line.split(" from ", 1)[1].split(": ", 1)[0]


@pytest.fixture(scope="module")
def behind_balancer() -> Iterator[LocalEmulator]:
    with LocalEmulator(trusted_proxies=BALANCERS) as server:
        yield server


@pytest.mark.parametrize("forwarded_for, client", [
    (["198.51.100.7"], "198.51.100.7"),
    # The right-most address not trusted: what the client wrote for itself, left of it, is not believed.
    (["203.0.113.9, 198.51.100.7"], "198.51.100.7"),
    (["203.0.113.9", "198.51.100.7"], "198.51.100.7"),  # the header sent twice reads as one list
    # Trusted proxies in the chain are stepped over.
    (["198.51.100.7, 127.0.0.9 , 127.0.0.10"], "198.51.100.7"),
    (["2001:db8::7"], "2001:db8::7"),
    (["::ffff:127.0.0.9, 198.51.100.7"], "198.51.100.7"),
    (["198.51.100.7, ::ffff:127.0.0.9"], "198.51.100.7"),  # an IPv4-mapped proxy is the IPv4 one
    # Not an address: the walk ends at the last address that was good, nothing left of it is believed.
    (["198.51.100.7, unknown"], "127.0.0.1"),
    (["198.51.100.7, 203.0.113.9:4711"], "127.0.0.1"),
    (["198.51.100.7, not-an-address, 127.0.0.9"], "127.0.0.9"),
    (["198.51.100.7, , 127.0.0.9"], "127.0.0.9"),
    ([""], "127.0.0.1"),
    (["127.0.0.9, 127.0.0.10"], "127.0.0.9"),  # all trusted: the farthest one known
])
def test_a_trusted_balancer_names_the_client(behind_balancer: LocalEmulator, caplog: pytest.LogCaptureFixture,
                                             forwarded_for: list[str], client: str) -> None:
    assert logged_client(behind_balancer, caplog, forwarded_for) == client


@pytest.mark.parametrize("trusted", [(), (ipaddress.ip_network("127.0.0.2/32"),)], ids=["none", "another-peer"])
def test_a_peer_not_trusted_names_no_one_but_itself(trusted: tuple[IPNetwork, ...],
                                                    caplog: pytest.LogCaptureFixture) -> None:
    with LocalEmulator(trusted_proxies=trusted) as server:
        assert logged_client(server, caplog, ["198.51.100.7"], peer="127.0.0.1") == "127.0.0.1"
        if trusted:
            assert logged_client(server, caplog, ["198.51.100.7"], peer="127.0.0.2") == "198.51.100.7"


def test_behind_a_balancer_one_guesser_locks_out_itself_not_everyone(credentials_file: Path, tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """Every request comes from the balancer's address; the lockout counts the clients it names."""
    with LocalEmulator(tmp_path, credentials_file=credentials_file, trusted_proxies=BALANCERS,
                       signin_lockout_seconds=LOCKOUT_SECONDS) as server:
        with caplog.at_level("WARNING"):
            for _ in range(5):
                assert sign_in(server, (READ_ONLY[0], "guess"), "198.51.100.7") == 401
        assert any("locked out" in record.getMessage() and "198.51.100.7" in record.getMessage()
                   for record in caplog.records)
        assert sign_in(server, FULL, "198.51.100.7") == 429  # the guesser's address, with another key
        assert sign_in(server, FULL, "198.51.100.8") == 303  # another client through the same balancer
        assert sign_in(server, FULL, "198.51.100.8", peer="127.0.0.2") == 303  # and through another balancer


def test_without_the_flag_a_spoofed_header_escapes_no_lockout(credentials_file: Path, tmp_path: Path) -> None:
    """A guesser that talks to the node directly cannot start afresh by claiming a new address each time."""
    with LocalEmulator(tmp_path, credentials_file=credentials_file,
                       signin_lockout_seconds=LOCKOUT_SECONDS) as server:
        for attempt in range(5):
            assert sign_in(server, (READ_ONLY[0], "guess"), f"198.51.100.{attempt}") == 401
        assert sign_in(server, FULL, "198.51.100.99") == 429  # the peer's own address is locked out
        assert sign_in(server, FULL, "198.51.100.99", peer="127.0.0.2") == 303
