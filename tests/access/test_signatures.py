"""SigV4 on the API and S3 with a credentials file: what boto3 signs passes, each refusal has the
status and code the SDKs parse, and a refused write leaves nothing behind."""
from __future__ import annotations

import datetime as dt
import hashlib
import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import botocore.auth
import pytest
import requests
from botocore import UNSIGNED
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

from emulator.testing import LocalEmulator
from tests.access.access_support import FULL, READ_ONLY, exists, make_client, refused, unique


@contextmanager
def clock_off_by(offset: dt.timedelta) -> Iterator[None]:
    """Let botocore sign as if its clock were `offset` away from the real one."""
    original = botocore.auth.get_current_datetime
    botocore.auth.get_current_datetime = lambda: original() + offset  # type: ignore[assignment]
    try:
        yield
    finally:
        botocore.auth.get_current_datetime = original  # type: ignore[assignment]


@pytest.fixture(scope="module")
def bucket(s3: Any) -> str:
    name = unique("access")
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="seen.txt", Body=b"visible")
    return name


# -- what a configured key may do ----------------------------------------------------------------


def test_boto3_with_a_configured_key_uses_the_api(lookout: Any) -> None:
    name = unique("signed")
    lookout.create_project(ProjectName=name)
    assert lookout.describe_project(ProjectName=name)["ProjectDescription"]["ProjectName"] == name
    arn = lookout.describe_project(ProjectName=name)["ProjectDescription"]["ProjectArn"]
    lookout.tag_resource(ResourceArn=arn, Tags=[{"Key": "line", "Value": "a b/c"}])  # an ARN in the path
    assert lookout.list_tags_for_resource(ResourceArn=arn)["Tags"] == [{"Key": "line", "Value": "a b/c"}]
    assert name in [p["ProjectName"] for p in lookout.list_projects(MaxResults=100)["Projects"]]
    lookout.delete_project(ProjectName=name)


def test_boto3_with_a_configured_key_uses_s3(s3: Any, bucket: str) -> None:
    key = "odd name/ü+%20&=.txt"
    s3.put_object(Bucket=bucket, Key=key, Body=b"hello", Metadata={"who": "me"}, ContentType="text/plain")
    got = s3.get_object(Bucket=bucket, Key=key)
    assert got["Body"].read() == b"hello" and got["Metadata"] == {"who": "me"}
    assert key in [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="odd")["Contents"]]
    big = bytes(range(256)) * (9 * 4096)  # 9 MiB: boto3 uploads it in parts
    s3.upload_fileobj(io.BytesIO(big), bucket, "big.bin")
    assert s3.get_object(Bucket=bucket, Key="big.bin")["Body"].read() == big
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key}, {"Key": "big.bin"}]})


# -- refusals, for both front ends ---------------------------------------------------------------

# (how the client signs, the Lookout for Vision status and code, the S3 status and code)
REFUSALS = {
    "wrong secret": ({"key": (FULL[0], "not-the-secret")}, 403, "InvalidSignatureException",
                     403, "SignatureDoesNotMatch"),
    "unknown key": ({"key": ("AKIDNOBODYKNOWS", FULL[1])}, 403, "UnrecognizedClientException",
                    403, "InvalidAccessKeyId"),
    "no signature": ({"signature_version": UNSIGNED}, 403, "MissingAuthenticationTokenException",
                     403, "AccessDenied"),
    "stale date": ({"skew": dt.timedelta(minutes=-20)}, 403, "InvalidSignatureException",
                   403, "RequestTimeTooSkewed"),
    "future date": ({"skew": dt.timedelta(minutes=16)}, 403, "InvalidSignatureException",
                    403, "RequestTimeTooSkewed"),
}


def _client(server: LocalEmulator, service: str, how: dict[str, Any]) -> Any:
    config = {"signature_version": how["signature_version"]} if "signature_version" in how else {}
    return make_client(server, service, how.get("key", FULL), **config)


@pytest.mark.parametrize("case", REFUSALS)
def test_the_api_refuses_and_creates_nothing(case: str, secured: LocalEmulator, lookout: Any) -> None:
    how, status, code, _, _ = REFUSALS[case]
    client, name = _client(secured, "lookoutvision", how), unique("refused")
    with clock_off_by(how.get("skew", dt.timedelta(0))):
        assert refused(lambda: client.create_project(ProjectName=name)) == (status, code)
        assert refused(lambda: client.list_projects()) == (status, code)
    assert name not in [p["ProjectName"] for p in lookout.list_projects(MaxResults=100)["Projects"]]


@pytest.mark.parametrize("case", REFUSALS)
def test_s3_refuses_and_writes_nothing(case: str, secured: LocalEmulator, s3: Any, bucket: str) -> None:
    how, _, _, status, code = REFUSALS[case]
    client, key = _client(secured, "s3", how), unique("refused")
    with clock_off_by(how.get("skew", dt.timedelta(0))):
        assert refused(lambda: client.put_object(Bucket=bucket, Key=key, Body=b"intruder")) == (status, code)
        assert refused(lambda: client.get_object(Bucket=bucket, Key="seen.txt")) == (status, code)
        assert refused(lambda: client.delete_object(Bucket=bucket, Key="seen.txt")) == (status, code)
        assert refused(lambda: client.create_bucket(Bucket=key)) == (status, code)
    assert not exists(s3, bucket, key) and exists(s3, bucket, "seen.txt")
    assert key not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_a_plain_http_request_is_refused_with_the_error_forms_sdks_parse(secured: LocalEmulator, bucket: str) -> None:
    api = requests.get(f"{secured.endpoint_url}/2020-11-20/projects", timeout=30)
    assert api.status_code == 403 and api.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    assert "message" in api.json()
    put = requests.put(f"{secured.endpoint_url}/{bucket}/plain.txt", data=b"x", timeout=30)
    assert put.status_code == 403 and "<Code>AccessDenied</Code>" in put.text
    garbled = requests.get(f"{secured.endpoint_url}/2020-11-20/projects", timeout=30,
                           headers={"Authorization": "AWS4-HMAC-SHA256 Credential=only"})
    assert garbled.status_code == 400 and garbled.headers["x-amzn-ErrorType"] == "IncompleteSignatureException"


# -- presigned URLs ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def presigner(secured: LocalEmulator) -> Any:
    return make_client(secured, "s3", FULL, signature_version="s3v4")


def test_presigned_urls_get_and_put(presigner: Any, s3: Any, bucket: str) -> None:
    url = presigner.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "seen.txt"}, ExpiresIn=60)
    got = requests.get(url, timeout=30)
    assert got.status_code == 200 and got.content == b"visible"
    key = unique("presigned")
    put_url = presigner.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=60)
    assert requests.put(put_url, data=b"uploaded", timeout=30).status_code == 200
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"uploaded"


def _s3_error(response: requests.Response) -> tuple[int, str]:
    return response.status_code, response.text.split("<Code>", 1)[1].split("</Code>", 1)[0]


@pytest.mark.parametrize("tamper", ["another key", "longer expiry", "signature"])
def test_a_tampered_presigned_url_is_refused_and_writes_nothing(tamper: str, presigner: Any, s3: Any,
                                                                  bucket: str) -> None:
    key = unique("tampered")
    url = presigner.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=60)
    if tamper == "another key":
        url, key = url.replace(key, key + "x"), key + "x"
    elif tamper == "longer expiry":
        url = url.replace("X-Amz-Expires=60", "X-Amz-Expires=3600")
    else:
        signature = url.rsplit("X-Amz-Signature=", 1)[1]
        url = url.replace(signature, signature[::-1])
    assert _s3_error(requests.put(url, data=b"tampered", timeout=30)) == (403, "SignatureDoesNotMatch")
    assert not exists(s3, bucket, key)


def test_an_expired_presigned_url_is_refused(presigner: Any, s3: Any, bucket: str) -> None:
    key = unique("expired")
    with clock_off_by(dt.timedelta(minutes=-30)):
        get_url = presigner.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "seen.txt"},
                                                   ExpiresIn=600)
        put_url = presigner.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=600)
    assert _s3_error(requests.get(get_url, timeout=30)) == (403, "AccessDenied")
    refusal = requests.put(put_url, data=b"late", timeout=30)
    assert _s3_error(refusal) == (403, "AccessDenied") and "expired" in refusal.text
    assert not exists(s3, bucket, key)


def test_signature_version_2_presigned_urls_boto3_makes_by_default(secured: LocalEmulator, s3: Any,
                                                                   bucket: str) -> None:
    v2 = make_client(secured, "s3", FULL)
    url = v2.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "seen.txt"}, ExpiresIn=60)
    assert "AWSAccessKeyId=" in url
    assert requests.get(url, timeout=30).content == b"visible"
    key = unique("v2")
    put_url = v2.generate_presigned_url("put_object",
                                        Params={"Bucket": bucket, "Key": key, "ContentType": "text/plain"},
                                        ExpiresIn=60)
    tampered = put_url.replace(key, key + "x")
    assert _s3_error(requests.put(tampered, data=b"x", headers={"Content-Type": "text/plain"},
                                  timeout=30)) == (403, "SignatureDoesNotMatch")
    assert requests.put(put_url, data=b"v2", headers={"Content-Type": "text/plain"}, timeout=30).status_code == 200
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"v2"
    expires = int(url.split("Expires=", 1)[1].split("&", 1)[0])
    stale = url.replace(f"Expires={expires}", f"Expires={expires - 3600}")  # botocore's v2 presigner reads time.time()
    assert _s3_error(requests.get(stale, timeout=30)) == (403, "AccessDenied")
    assert not exists(s3, bucket, key + "x")


def test_a_presigned_api_request_covers_its_body(secured: LocalEmulator, lookout: Any) -> None:
    """A query-signed API request signs the hash of its body like a header-signed one: a URL signed
    over an empty body does not carry another body."""
    listed = requests.get(lookout.generate_presigned_url("list_projects", ExpiresIn=60), timeout=30)
    assert listed.status_code == 200 and "Projects" in listed.json()
    name = unique("smuggled")
    request = AWSRequest("POST", f"{secured.endpoint_url}/2020-11-20/projects", data=b"")
    botocore.auth.SigV4QueryAuth(ReadOnlyCredentials(*FULL, None), "lookoutvision", secured.settings.region,
                                 expires=60).add_auth(request)
    for claim in ({}, {"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}):
        smuggled = requests.post(request.url, json={"ProjectName": name}, headers=claim, timeout=30)
        assert (smuggled.status_code, smuggled.headers["x-amzn-ErrorType"]) == (403, "InvalidSignatureException")
    assert name not in [p["ProjectName"] for p in lookout.list_projects(MaxResults=100)["Projects"]]
    request = AWSRequest("POST", f"{secured.endpoint_url}/2020-11-20/projects", data=f'{{"ProjectName": "{name}"}}')
    botocore.auth.SigV4QueryAuth(ReadOnlyCredentials(*FULL, None), "lookoutvision", secured.settings.region,
                                 expires=60).add_auth(request)
    assert "ProjectName" in request.url  # botocore presigns a JSON body's members in the query, over no body
    assert requests.post(request.url, timeout=30).status_code == 400  # signed, but the API reads no query members


# Query sub-resources that turn a signed GET or PUT of an object into another operation.
_OTHER_OPERATIONS = ["legal-hold", "attributes", "retention", "tagging", "acl", "%61cl", "torrent", "restore"]


@pytest.mark.parametrize("version", ["v2", "s3v4"])
def test_a_sub_resource_appended_to_a_presigned_url_is_refused(version: str, secured: LocalEmulator, s3: Any,
                                                               bucket: str) -> None:
    """Signature Version 2 signs only some sub-resources (and no listing parameters): one it leaves
    out may not change what a presigned URL does. SigV4 signs the whole query."""
    signer = make_client(secured, "s3", FULL, **({} if version == "v2" else {"signature_version": version}))
    get_url = signer.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "seen.txt"}, ExpiresIn=60)
    assert requests.get(get_url, timeout=30).content == b"visible"
    key = unique("subresource")
    put_url = signer.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=60)
    for name in _OTHER_OPERATIONS:
        assert _s3_error(requests.get(f"{get_url}&{name}", timeout=30)) == (403, "SignatureDoesNotMatch"), name
        assert _s3_error(requests.put(f"{put_url}&{name}", data=b"x", timeout=30)) == (403, "SignatureDoesNotMatch")
    assert not exists(s3, bucket, key)
    assert requests.put(put_url, data=b"signed", timeout=30).status_code == 200


def test_signature_version_2_presigned_listings(secured: LocalEmulator, bucket: str) -> None:
    """boto3's default presigned list_objects URLs name the bucket alone (``/bucket?encoding-type=url``),
    which Signature Version 2 signs as ``/bucket/``; their listing parameters are not signed."""
    v2 = make_client(secured, "s3", FULL)
    for operation, params in (("list_objects", {}), ("list_objects_v2", {"Prefix": "seen"})):
        url = v2.generate_presigned_url(operation, Params={"Bucket": bucket, **params}, ExpiresIn=60)
        assert "encoding-type=url" in url and "AWSAccessKeyId=" in url
        listed = requests.get(url, timeout=30)
        assert listed.status_code == 200 and "<Key>seen.txt</Key>" in listed.text, listed.text


# -- the read-only key ---------------------------------------------------------------------------


def test_a_read_only_key_reads_but_is_refused_writes(secured: LocalEmulator, lookout: Any, s3: Any,
                                                     bucket: str) -> None:
    name = unique("ro")
    lookout.create_project(ProjectName=name)
    reader = make_client(secured, "lookoutvision", READ_ONLY)
    assert reader.describe_project(ProjectName=name)["ProjectDescription"]["ProjectName"] == name
    assert reader.list_models(ProjectName=name)["Models"] == []
    assert refused(lambda: reader.create_project(ProjectName=name + "-2")) == (403, "AccessDeniedException")
    assert refused(lambda: reader.delete_project(ProjectName=name)) == (403, "AccessDeniedException")
    assert lookout.describe_project(ProjectName=name)["ProjectDescription"]["ProjectName"] == name
    assert refused(lambda: lookout.describe_project(ProjectName=name + "-2"))[1] == "ResourceNotFoundException"

    s3_reader = make_client(secured, "s3", READ_ONLY)
    assert s3_reader.get_object(Bucket=bucket, Key="seen.txt")["Body"].read() == b"visible"
    assert s3_reader.list_objects_v2(Bucket=bucket)["KeyCount"] >= 1
    assert refused(lambda: s3_reader.put_object(Bucket=bucket, Key="ro.txt", Body=b"x")) == (403, "AccessDenied")
    assert refused(lambda: s3_reader.delete_object(Bucket=bucket, Key="seen.txt")) == (403, "AccessDenied")
    assert not exists(s3, bucket, "ro.txt") and exists(s3, bucket, "seen.txt")


# -- payloads SDKs stream or leave unsigned ------------------------------------------------------


class _ClaimedPayloadSigner(botocore.auth.S3SigV4Auth):
    """botocore's S3 signer, signing the payload hash the test chooses (as other SDKs send them)."""

    def payload(self, request: AWSRequest) -> str:
        return request.context["claimed_payload"]


def _signed_put(server: LocalEmulator, bucket: str, key: str, body: bytes, payload_hash: str,
                extra: dict[str, str] | None = None) -> tuple[AWSRequest, botocore.auth.S3SigV4Auth]:
    request = AWSRequest("PUT", f"{server.endpoint_url}/{bucket}/{key}", data=body, headers=extra or {})
    request.context["claimed_payload"] = payload_hash
    signer = _ClaimedPayloadSigner(ReadOnlyCredentials(*FULL, None), "s3", server.settings.region)
    signer.add_auth(request)
    return request, signer


def _send(request: AWSRequest, body: bytes | None = None) -> requests.Response:
    return requests.request(request.method, request.url, headers=dict(request.headers.items()),
                            data=request.body if body is None else body, timeout=30)


def test_an_unsigned_payload_is_accepted(secured: LocalEmulator, s3: Any, bucket: str) -> None:
    request, _ = _signed_put(secured, bucket, "unsigned.txt", b"free", "UNSIGNED-PAYLOAD")
    assert request.headers["X-Amz-Content-SHA256"] == "UNSIGNED-PAYLOAD"
    assert _send(request).status_code == 200
    assert s3.get_object(Bucket=bucket, Key="unsigned.txt")["Body"].read() == b"free"


def test_a_body_other_than_the_signed_hash_is_refused(secured: LocalEmulator, s3: Any, bucket: str) -> None:
    request, _ = _signed_put(secured, bucket, "swapped.txt", b"original", hashlib.sha256(b"original").hexdigest())
    assert _s3_error(_send(request, b"swapped!")) == (400, "XAmzContentSHA256Mismatch")
    assert not exists(s3, bucket, "swapped.txt")


def _aws_chunked(request: AWSRequest, signer: botocore.auth.S3SigV4Auth, chunks: list[bytes]) -> bytes:
    """Encode `chunks` as a STREAMING-AWS4-HMAC-SHA256-PAYLOAD body, each chunk signed after the
    previous one, starting from the request's own signature (what the Java and .NET SDKs send)."""
    previous = request.headers["Authorization"].rsplit("Signature=", 1)[1]
    timestamp = request.context["timestamp"]
    body = b""
    for data in [*chunks, b""]:
        string_to_sign = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", timestamp, signer.credential_scope(request), previous,
                                    hashlib.sha256(b"").hexdigest(), hashlib.sha256(data).hexdigest()])
        previous = signer.signature(string_to_sign, request)
        body += f"{len(data):x};chunk-signature={previous}\r\n".encode() + data + b"\r\n"
    return body


@pytest.mark.parametrize("tampered", [False, True], ids=["intact", "tampered chunk"])
def test_a_streamed_signed_payload(tampered: bool, secured: LocalEmulator, s3: Any, bucket: str) -> None:
    chunks = [b"a" * 65536, b"b" * 1000]
    key = unique("streamed")
    request, signer = _signed_put(secured, bucket, key, b"", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                                  {"Content-Encoding": "aws-chunked",
                                   "x-amz-decoded-content-length": str(sum(map(len, chunks)))})
    body = _aws_chunked(request, signer, chunks)
    if tampered:
        body = body.replace(b"b" * 1000, b"c" * 1000)
        assert _s3_error(_send(request, body)) == (403, "SignatureDoesNotMatch")
        assert not exists(s3, bucket, key)
    else:
        sent = _send(request, body)
        assert sent.status_code == 200, sent.text
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"".join(chunks)


# (payload hash, X-Amz-Decoded-Content-Length, whether the signature covers it) of a 5-byte streamed upload
_LYING_LENGTHS = {
    "400 MB, signed": ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "400000000", True),
    "larger, added unsigned": ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "65536", False),
    "1e15, unsigned chunks": ("STREAMING-UNSIGNED-PAYLOAD-TRAILER", "1000000000000000", True),
}


@pytest.mark.parametrize("case", _LYING_LENGTHS)
def test_a_streamed_upload_stores_what_its_chunks_hold_or_nothing(case: str, secured: LocalEmulator, s3: Any,
                                                                   bucket: str) -> None:
    """A key that may write still cannot make five bytes into a large object of zeros."""
    payload_hash, announced, covered = _LYING_LENGTHS[case]
    key = unique("lying")
    request, signer = _signed_put(secured, bucket, key, b"", payload_hash,
                                  {"Content-Encoding": "aws-chunked",
                                   **({"x-amz-decoded-content-length": announced} if covered else {})})
    if payload_hash.startswith("STREAMING-AWS4"):
        body = _aws_chunked(request, signer, [b"hello"])
    else:
        body = b"5\r\nhello\r\n0\r\n\r\n"
    headers = {**dict(request.headers.items()), "x-amz-decoded-content-length": announced}
    refusal = requests.put(request.url, data=body, headers=headers, timeout=30)
    assert _s3_error(refusal) == (400, "IncompleteBody")
    assert not exists(s3, bucket, key)


def test_secrets_and_signatures_are_never_logged(secured: LocalEmulator, bucket: str,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    bad = make_client(secured, "s3", (FULL[0], "wrong-secret-value"))
    with caplog.at_level("INFO"):
        refused(lambda: bad.put_object(Bucket=bucket, Key="logged.txt", Body=b"x"))
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert FULL[0] in logged and "127.0.0.1" in logged
    assert "wrong-secret-value" not in logged and FULL[1] not in logged and "Signature=" not in logged
