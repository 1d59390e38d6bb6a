"""Who may call: access keys from an AWS shared-credentials file and SigV4 verification.

With a credentials file, every Lookout for Vision and S3 request must carry an AWS Signature
Version 4 made with one of its keys (an ``Authorization`` header, or a presigned query string), as
the cloud service required. The canonical request and the signature are computed by botocore's own
signers (``SigV4Auth``, ``S3SigV4Auth``, ``S3SigV4QueryAuth``) over the request as it arrived, so the
server and the SDKs can never disagree about the algorithm; this module only feeds them exactly what
the client said it signed and compares the result.

A file section may also say ``lookout_permissions = read-only``: such a key may only read (the
Describe*/List* operations, DetectAnomalies, and S3 GET/HEAD). S3 URLs presigned with Signature
Version 2, which boto3 and the AWS CLI still make by default, are checked with botocore's
``HmacV1QueryAuth`` in the same way.

Nothing here logs a secret or a signature; `emulator.security.gate` logs refusals with the access key id and
the client's address.
"""
from __future__ import annotations

import configparser
import datetime as dt
import hashlib
import hmac
import ipaddress
import logging
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, unquote, urlsplit

from botocore.auth import (
    UNSIGNED_PAYLOAD,
    HmacV1Auth,
    HmacV1QueryAuth,
    S3SigV4Auth,
    S3SigV4QueryAuth,
    SigV4Auth,
    SigV4QueryAuth,
)
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import ReadOnlyCredentials

from emulator.s3.chunked import STREAMING_PREFIX, ChunkedBodyError, read_chunks
from emulator.s3.frontend import virtual_hosted_bucket
from emulator.wsgi import raw_path, rewindable_body

log = logging.getLogger(__name__)

ALGORITHM = "AWS4-HMAC-SHA256"
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
# AWS refuses a request whose date is further than this from its own clock.
MAX_SKEW = dt.timedelta(minutes=15)
# The longest a presigned URL may be valid (seven days), as in S3.
MAX_PRESIGNED_SECONDS = 7 * 24 * 3600
PERMISSIONS_OPTION = "lookout_permissions"
READ_ONLY, FULL = "read-only", "full"
# S3 payload hashes announcing an aws-chunked body whose chunks are signed one after the other.
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
_READ_ONLY_OPERATIONS = re.compile(r"(Describe|List)[A-Za-z]*|DetectAnomalies")
_READ_ONLY_S3_METHODS = frozenset({"GET", "HEAD"})
# Signature Version 2 signs only the sub-resources botocore lists in HmacV1Auth.QSAOfInterest and
# leaves the request parameters of listings and paging out by design. Any other query parameter of
# a V2 presigned URL was not signed and may select another operation (``&legal-hold``), so it is refused.
_V2_PRESIGN_PARAMETERS = frozenset({"AWSAccessKeyId", "Expires", "Signature"})
_V2_UNSIGNED_PARAMETERS = frozenset({
    "prefix", "delimiter", "marker", "max-keys", "encoding-type", "list-type", "continuation-token", "fetch-owner",
    "start-after", "key-marker", "version-id-marker", "upload-id-marker", "max-uploads", "max-parts",
    "part-number-marker"})
_AUTH_FIELD = re.compile(r"\s*(Credential|SignedHeaders|Signature)\s*=\s*([^,\s]*)\s*")


# -- keys ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccessKey:
    """One key of the credentials file. The secret never appears in a repr or a log line."""

    key_id: str
    secret: str = field(repr=False)
    profile: str = "default"
    read_only: bool = False

    def may_call(self, operation: str) -> bool:
        """Whether this key may run a Lookout for Vision operation."""
        return not self.read_only or _READ_ONLY_OPERATIONS.fullmatch(operation) is not None

    def may_send(self, s3_method: str) -> bool:
        """Whether this key may send an S3 request with this method."""
        return not self.read_only or s3_method in _READ_ONLY_S3_METHODS


class CredentialsFileError(ValueError):
    """The credentials file cannot be used; the message says why and where."""


@dataclass(frozen=True)
class KeyRing:
    """The access keys a server accepts, by key id."""

    keys: dict[str, AccessKey]
    source: Path | None = None

    def get(self, key_id: str) -> AccessKey | None:
        return self.keys.get(key_id)

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def load(cls, path: Path | str) -> KeyRing:
        """Read an AWS shared-credentials file (``~/.aws/credentials`` format): every section with
        ``aws_access_key_id`` and ``aws_secret_access_key`` is a key, optionally limited by
        ``lookout_permissions = read-only``."""
        path = Path(path)
        parser = configparser.ConfigParser(interpolation=None, default_section="\x00no defaults")
        try:
            with open(path, encoding="utf-8") as text:
                parser.read_file(text)
        except OSError as error:
            raise CredentialsFileError(f"cannot read the credentials file {path}: {error.strerror or error}") from None
        except (configparser.Error, UnicodeDecodeError) as error:
            raise CredentialsFileError(f"{path} is not an AWS shared-credentials file: {error}") from None
        keys: dict[str, AccessKey] = {}
        for profile in parser.sections():
            section = parser[profile]
            key_id = section.get("aws_access_key_id", "").strip()
            secret = section.get("aws_secret_access_key", "").strip()
            if not key_id and not secret:
                continue  # e.g. a profile that only names a region or a role
            if not key_id or not secret:
                missing = "aws_access_key_id" if not key_id else "aws_secret_access_key"
                raise CredentialsFileError(f"{path}: section [{profile}] has no {missing}")
            if key_id in keys:
                raise CredentialsFileError(f"{path}: access key id {key_id} appears in [{keys[key_id].profile}] "
                                           f"and [{profile}]")
            permissions = section.get(PERMISSIONS_OPTION, FULL).strip().lower()
            if permissions not in (FULL, READ_ONLY):
                raise CredentialsFileError(f"{path}: section [{profile}]: {PERMISSIONS_OPTION} must be "
                                           f"{FULL!r} or {READ_ONLY!r}, not {permissions!r}")
            keys[key_id] = AccessKey(key_id, secret, profile, permissions == READ_ONLY)
        if not keys:
            raise CredentialsFileError(f"{path} holds no access key (sections with aws_access_key_id and "
                                       "aws_secret_access_key)")
        if path.stat().st_mode & 0o077:
            log.warning("the credentials file %s can be read by other users of this machine (chmod 600 it)", path)
        return cls(keys, path)


# -- refusals -----------------------------------------------------------------------------------


@dataclass
class Refusal(Exception):
    """Why a request is refused, in terms both front ends translate into their own error codes.

    `reason` is one of: ``missing`` (no signature), ``malformed``, ``unknown_key``, ``signature``
    (it does not match), ``skewed`` (dated too far from now), ``expired`` (presigned URL past its
    expiry), ``payload`` (body differs from the signed hash), ``denied`` (a read-only key writing); the
    request gate adds ``cross_site`` and ``role`` (this node's ``--role`` does not serve the request)."""

    reason: str
    message: str
    key_id: str | None = None

    def __str__(self) -> str:
        return self.message


# -- verification -------------------------------------------------------------------------------


class _AsSigned:
    """Make a botocore signer canonicalise exactly the headers the client listed as signed
    (its own choice of headers to sign is a client's policy, not the protocol's)."""

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        return request.context["signed_headers"]


class _HeaderSigner(_AsSigned, SigV4Auth):  # type: ignore[misc]  # botocore has no type information
    pass


class _S3HeaderSigner(_AsSigned, S3SigV4Auth):  # type: ignore[misc]  # botocore has no type information
    pass


class _QuerySigner(_AsSigned, SigV4QueryAuth):  # type: ignore[misc]  # botocore has no type information
    pass


class _S3QuerySigner(_AsSigned, S3SigV4QueryAuth):  # type: ignore[misc]  # botocore has no type information
    pass


@dataclass
class _Signed:
    """The SigV4 fields of a request."""

    key_id: str
    timestamp: str  # as signed: YYYYMMDDTHHMMSSZ
    scope_date: str
    region: str
    service: str
    signed_headers: list[str]
    signature: str
    presigned: bool
    expires: int | None = None


def _environ_header(environ: dict[str, Any], name: str) -> str | None:
    key = name.upper().replace("-", "_")
    return environ.get(key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}")


def _query_pairs(query: str) -> list[tuple[str, str]]:
    """The query string's (name, value) pairs, decoded."""
    pairs = []
    for part in query.split("&"):
        if part:
            name, _, value = part.partition("=")
            pairs.append((unquote(name), unquote(value)))
    return pairs


def _parse(environ: dict[str, Any]) -> _Signed:
    """The request's SigV4 fields; Refusal('missing') without any, ('malformed') when incomplete."""
    header = environ.get("HTTP_AUTHORIZATION", "")
    query = dict(_query_pairs(environ.get("QUERY_STRING", "")))
    if header:
        algorithm, _, rest = header.strip().partition(" ")
        if algorithm != ALGORITHM:
            raise Refusal("malformed", f"Only {ALGORITHM} (Signature Version 4) authorization is supported.",
                          rest.partition(":")[0] if algorithm == "AWS" else None)
        fields = {}
        for part in rest.split(","):
            found = _AUTH_FIELD.fullmatch(part)
            if found is None:
                raise Refusal("malformed", f"Authorization header requires 'Credential', 'SignedHeaders' and "
                                           f"'Signature' parameters; cannot read {part.strip()[:40]!r}.")
            fields[found.group(1)] = found.group(2)
        credential, signed, signature = (fields.get(k) for k in ("Credential", "SignedHeaders", "Signature"))
        timestamp = _environ_header(environ, "x-amz-date")
        presigned, expires = False, None
    elif "X-Amz-Signature" in query or "X-Amz-Credential" in query:
        if query.get("X-Amz-Algorithm") != ALGORITHM:
            raise Refusal("malformed", f"X-Amz-Algorithm must be {ALGORITHM}.")
        credential, signed, signature = (query.get(k) for k in ("X-Amz-Credential", "X-Amz-SignedHeaders",
                                                                 "X-Amz-Signature"))
        timestamp = query.get("X-Amz-Date")
        presigned = True
        try:
            expires = int(query.get("X-Amz-Expires", ""))
        except ValueError:
            raise Refusal("malformed", "X-Amz-Expires must be a number of seconds.") from None
        if not 0 < expires <= MAX_PRESIGNED_SECONDS:
            raise Refusal("malformed", f"X-Amz-Expires must be between 1 and {MAX_PRESIGNED_SECONDS} seconds.")
    else:
        raise Refusal("missing", "Missing Authentication Token: the request carries no AWS Signature Version 4.")
    if not credential or not signed or not signature:
        raise Refusal("malformed", "The signature needs a Credential, SignedHeaders and a Signature.")
    scope = credential.split("/")
    if len(scope) != 5 or scope[4] != "aws4_request" or not all(scope):
        raise Refusal("malformed", f"Credential must be <access key id>/<date>/<region>/<service>/aws4_request, "
                                   f"not {'/'.join(['<access key id>', *scope[1:]])!r}.", scope[0] or None)
    if not timestamp:
        raise Refusal("malformed", "AWS authentication requires a valid X-Amz-Date.", scope[0])
    names = signed.lower().split(";")
    if "host" not in names:
        raise Refusal("malformed", "The host header must be signed.", scope[0])
    return _Signed(scope[0], timestamp, scope[1], scope[2], scope[3], names, signature, presigned, expires)


def _check_time(signed: _Signed, now: dt.datetime) -> None:
    try:
        when = dt.datetime.strptime(signed.timestamp, TIMESTAMP_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        raise Refusal("malformed", f"X-Amz-Date {signed.timestamp!r} is not of the form YYYYMMDD'T'HHMMSS'Z'.",
                      signed.key_id) from None
    if signed.scope_date != signed.timestamp[:8]:
        raise Refusal("signature", f"Date in Credential scope does not match YYYYMMDD from X-Amz-Date "
                                   f"({signed.scope_date} vs {signed.timestamp[:8]}).", signed.key_id)
    if signed.expires is not None:  # a presigned URL: valid from its date until it expires
        if when - now > MAX_SKEW:
            raise Refusal("skewed", "Request is not yet valid: X-Amz-Date is in the future.", signed.key_id)
        if now > when + dt.timedelta(seconds=signed.expires):
            raise Refusal("expired", "Request has expired.", signed.key_id)
    elif abs(now - when) > MAX_SKEW:
        raise Refusal("skewed", f"Signature expired: {signed.timestamp} is now earlier than "
                                f"{(now - MAX_SKEW).strftime(TIMESTAMP_FORMAT)} or later than "
                                f"{(now + MAX_SKEW).strftime(TIMESTAMP_FORMAT)} (the request time must be "
                                "within 15 minutes of the server's).", signed.key_id)


def _canonical_query(query: str, presigned: bool) -> str:
    """The query string re-encoded the SigV4 way (a client may encode on the wire more loosely),
    without the signature itself when it travels in the query."""
    pairs = [(quote(name, safe="-_.~"), quote(value, safe="-_.~")) for name, value in _query_pairs(query)
             if not (presigned and name == "X-Amz-Signature")]
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def _signer_for(signed: _Signed, key: AccessKey) -> SigV4Auth:
    credentials = ReadOnlyCredentials(key.key_id, key.secret, None)
    s3 = signed.service == "s3"
    if signed.presigned:
        query_signer = _S3QuerySigner if s3 else _QuerySigner
        return query_signer(credentials, signed.service, signed.region, expires=signed.expires or 0)
    return (_S3HeaderSigner if s3 else _HeaderSigner)(credentials, signed.service, signed.region)


def _sha256(body: BinaryIO) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: body.read(1024 * 1024), b""):
        digest.update(chunk)
    body.seek(0)
    return digest.hexdigest()


def _check_chunks(body: BinaryIO, signer: SigV4Auth, request: AWSRequest, seed: str, signed: _Signed) -> None:
    """Each chunk of a ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD`` body signs its data and the chunk
    before it; the signing key is the request's own (botocore derives it)."""
    previous = seed
    scope = signer.credential_scope(request)
    empty = hashlib.sha256(b"").hexdigest()
    try:
        for chunk in read_chunks(body):
            if chunk.signature is None:
                raise Refusal("payload", "The aws-chunked body is malformed: a chunk has no chunk-signature.",
                              signed.key_id)
            string_to_sign = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", signed.timestamp, scope, previous, empty,
                                        chunk.sha256])
            expected = signer.signature(string_to_sign, request)
            if not hmac.compare_digest(expected, chunk.signature):
                raise Refusal("signature", "The request signature we calculated does not match the signature "
                                           "of a chunk of the streamed body.", signed.key_id)
            previous = expected
    except ChunkedBodyError as error:
        raise Refusal("payload", f"The aws-chunked body is malformed: {error}", signed.key_id) from None
    finally:
        body.seek(0)


class _V2QuerySigner(HmacV1QueryAuth):  # type: ignore[misc]  # botocore has no type information
    """botocore's Signature Version 2 presigner, set to the expiry the URL carries."""

    def __init__(self, credentials: ReadOnlyCredentials, expires_at: str) -> None:
        super().__init__(credentials)
        self._expires_at = expires_at

    def _get_date(self) -> str:
        return self._expires_at


def _refuse_unsigned_v2_parameters(query: str, key: AccessKey) -> None:
    """Refusal('signature') for a query parameter a V2 signature does not cover and that may change
    the operation. A name counts as signed only as it appears on the wire: botocore's canonical
    resource compares names undecoded, and moto decodes them (``%61cl`` would be an unsigned ``acl``)."""
    for part in query.split("&"):
        raw_name = part.partition("=")[0]
        name = unquote(raw_name)
        if (not part or raw_name in HmacV1Auth.QSAOfInterest or name in _V2_PRESIGN_PARAMETERS
                or name in _V2_UNSIGNED_PARAMETERS or name.lower().startswith("x-amz-")
                or name in ("content-md5", "content-type")):
            continue
        raise Refusal("signature", f"The query parameter {name[:60]!r} is not covered by the Signature Version 2 "
                                   "signature of this URL.", key.key_id)


def _verify_v2_presigned(environ: dict[str, Any], keys: KeyRing, query: dict[str, str], now: dt.datetime) -> AccessKey:
    """An S3 URL presigned with Signature Version 2 (``AWSAccessKeyId``, ``Expires``, ``Signature``):
    what boto3's ``generate_presigned_url`` and ``aws s3 presign`` make by default for us-east-1."""
    key = keys.get(query["AWSAccessKeyId"])
    if key is None:
        raise Refusal("unknown_key", "The AWS Access Key Id you provided does not exist in our records.",
                      query["AWSAccessKeyId"])
    expires = query.get("Expires", "")
    if not expires.isdigit():
        raise Refusal("malformed", "A Signature Version 2 presigned URL needs Expires (seconds since the epoch).",
                      key.key_id)
    if now.timestamp() > int(expires):
        raise Refusal("expired", "Request has expired.", key.key_id)
    # Headers the presigner signed travel in the query; the request's own count where the query has none.
    headers = HTTPHeaders()
    for name in ("content-md5", "content-type"):
        value = query.get(name, _environ_header(environ, name))
        if value is not None:
            headers[name] = value
    amz = {k[5:].lower().replace("_", "-"): v for k, v in environ.items() if k.startswith("HTTP_X_AMZ_")}
    for name, value in {**{f"x-amz-{n}": v for n, v in amz.items()},
                        **{k: v for k, v in query.items() if k.lower().startswith("x-amz-")}}.items():
        headers[name] = value
    _refuse_unsigned_v2_parameters(environ.get("QUERY_STRING", ""), key)
    bucket = virtual_hosted_bucket(environ)
    path = f"/{bucket}{raw_path(environ)}" if bucket else raw_path(environ)
    if path.count("/") == 1 and path != "/":
        path += "/"  # V2 signs a bucket as /bucket/, also when the URL names it path-style without the slash
    signer = _V2QuerySigner(ReadOnlyCredentials(key.key_id, key.secret, None), expires)
    url = urlsplit(f"http://localhost{path}?{environ.get('QUERY_STRING', '')}")
    expected = signer.sign_string(signer.canonical_string(environ["REQUEST_METHOD"], url, headers))
    if not hmac.compare_digest(expected, query.get("Signature", "")):
        raise Refusal("signature", "The request signature we calculated does not match the signature you "
                                   "provided. Check your key and signing method.", key.key_id)
    return key


def verify(environ: dict[str, Any], keys: KeyRing, service: str, now: dt.datetime | None = None) -> AccessKey:
    """The key that signed this request for `service` (``s3`` or ``lookoutvision``), else Refusal.

    Must run before anything rewrites the request (the S3 front end changes its Host and path).
    The body is read (and put back) only where the signature covers it.
    """
    now = now or dt.datetime.now(dt.UTC)
    if service == "s3" and not environ.get("HTTP_AUTHORIZATION"):
        query = dict(_query_pairs(environ.get("QUERY_STRING", "")))
        if "AWSAccessKeyId" in query and "Signature" in query:
            return _verify_v2_presigned(environ, keys, query, now)
    signed = _parse(environ)
    if signed.service != service:
        raise Refusal("signature", f"Credential should be scoped to correct service: '{service}', "
                                   f"not '{signed.service}'.", signed.key_id)
    key = keys.get(signed.key_id)
    if key is None:
        raise Refusal("unknown_key", "The security token included in the request is invalid: the AWS Access Key "
                                     "Id you provided does not exist in our records.", signed.key_id)
    _check_time(signed, now)
    headers = HTTPHeaders()
    for name in signed.signed_headers:
        value = _environ_header(environ, name)
        if value is None:
            raise Refusal("signature", f"The header {name!r} is signed but not in the request.", key.key_id)
        headers[name] = value
    claimed_payload = _environ_header(environ, "x-amz-content-sha256")
    canonical_query = _canonical_query(environ.get("QUERY_STRING", ""), signed.presigned)
    request = AWSRequest(method=environ["REQUEST_METHOD"],
                         url=f"http://{environ.get('HTTP_HOST', 'localhost')}{raw_path(environ)}"
                             + (f"?{canonical_query}" if canonical_query else ""),
                         headers={"X-Amz-Content-SHA256": claimed_payload} if claimed_payload else {})
    request.context.update(timestamp=signed.timestamp, signed_headers=headers)
    body: BinaryIO | None = None
    # Without x-amz-content-sha256 the signature covers the body's hash itself: also in an API URL
    # presigned with SigV4 (botocore signs its hash, of an empty body), not in an S3 one (UNSIGNED-PAYLOAD).
    if claimed_payload is None and not (signed.presigned and signed.service == "s3"):
        body = rewindable_body(environ)
        request.data = body.read()
        body.seek(0)
    signer = _signer_for(signed, key)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    if not hmac.compare_digest(expected, signed.signature):
        raise Refusal("signature", "The request signature we calculated does not match the signature you "
                                   "provided. Check your key and signing method.", key.key_id)
    if claimed_payload and _HEX_SHA256.fullmatch(claimed_payload):
        body = rewindable_body(environ)
        if not hmac.compare_digest(_sha256(body), claimed_payload):
            raise Refusal("payload", "The provided 'x-amz-content-sha256' header does not match what was "
                                     "computed.", key.key_id)
    elif claimed_payload in (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER):
        _check_chunks(rewindable_body(environ), signer, request, expected, signed)
    elif claimed_payload and claimed_payload != UNSIGNED_PAYLOAD and not claimed_payload.startswith(STREAMING_PREFIX):
        raise Refusal("payload", f"x-amz-content-sha256 must be a SHA-256 hex digest, {UNSIGNED_PAYLOAD} or a "
                                 "STREAMING-* value.", key.key_id)
    return key


# -- start-up ----------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or a name) only ever reaches this machine."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addresses)


def startup_notice(host: str, keys: KeyRing | None) -> tuple[str, str | None]:
    """What the server says about access control when it starts: a line for stdout, and a warning
    for stderr when it is open to a network."""
    if keys is not None:
        read_only = sum(key.read_only for key in keys.keys.values())
        return (f"access control: requests must be signed (SigV4) with one of {len(keys)} access keys from "
                f"{keys.source}" + (f" ({read_only} read-only)" if read_only else "")
                + "; the console asks to sign in", None)
    line = ("access control: none: any client that reaches this port may read, change and delete everything "
            "(start with --credentials-file to require signed requests)")
    if is_loopback(host):
        return line, None
    rule = "!" * 100
    return line, (f"{rule}\nWARNING: listening on {host}, reachable from other machines, WITHOUT access control.\n"
                  "Anyone who can reach this port can read your images, delete projects and models, and use the "
                  "console.\nStart with --credentials-file PATH (or LOOKOUT_CREDENTIALS_FILE) holding AWS access "
                  f"keys to require signed requests.\n{rule}")
