"""S3 on the API's port: routing, addressing styles, what SDKs send, durability, isolation, and the
external-store mode."""
from __future__ import annotations

import io
import json
import os
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit, urlunsplit

import boto3
import pytest
import requests
from boto3.s3.transfer import TransferConfig
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum

from emulator.testing import TEST_CREDENTIALS, LocalEmulator
from tests.api.datasets_support import image_bytes, labelled, manifest_text


def _keys(s3, bucket):
    return [item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


@pytest.mark.parametrize("bucket", ["plain-bucket", "projects", "2020-11-20", "tags", "console", "my.dotted.bucket"])
def test_any_bucket_name_works_path_style(s3, bucket):
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="dir/a.txt", Body=b"hello", ContentType="text/plain")
    got = s3.get_object(Bucket=bucket, Key="dir/a.txt")
    assert (got["Body"].read(), got["ContentType"]) == (b"hello", "text/plain")
    assert _keys(s3, bucket) == ["dir/a.txt"]
    s3.delete_object(Bucket=bucket, Key="dir/a.txt")
    assert _keys(s3, bucket) == []
    s3.delete_bucket(Bucket=bucket)
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_virtual_hosted_style(emulator):
    """``<bucket>.localhost`` requests; the connection goes to 127.0.0.1 with the Host header the
    SDK computed (not every resolver maps *.localhost to loopback)."""
    port = urlsplit(emulator.endpoint_url).port
    client = boto3.client("s3", endpoint_url=f"http://localhost:{port}", region_name="us-east-1",
                          config=Config(s3={"addressing_style": "virtual"}), **TEST_CREDENTIALS)
    hosts = []

    def to_loopback(request, **_):
        parts = urlsplit(request.url)
        hosts.append(parts.netloc)
        request.headers["Host"] = parts.netloc
        request.url = urlunsplit(parts._replace(netloc=f"127.0.0.1:{port}"))

    client.meta.events.register("before-send.s3", to_loopback)
    client.create_bucket(Bucket="virtual-hosted")
    client.put_object(Bucket="virtual-hosted", Key="k/v.txt", Body=b"vh")
    assert client.get_object(Bucket="virtual-hosted", Key="k/v.txt")["Body"].read() == b"vh"
    assert _keys(client, "virtual-hosted") == ["k/v.txt"]
    assert set(hosts) == {f"virtual-hosted.localhost:{port}"}
    assert emulator.client("s3").get_object(Bucket="virtual-hosted", Key="k/v.txt")["Body"].read() == b"vh"


@pytest.mark.parametrize("key", ["a b+c.png", "ü/ñ/ß.png", "x%2Fy", "dir//double", "trailing/", "q?x=1&y#z"])
def test_keys_with_special_characters(s3, key):
    s3.create_bucket(Bucket="special-keys")
    s3.put_object(Bucket="special-keys", Key=key, Body=key.encode())
    assert s3.get_object(Bucket="special-keys", Key=key)["Body"].read() == key.encode()
    assert key in _keys(s3, "special-keys")


def test_checksums_encryption_and_multipart_uploads(s3, tmp_path):
    s3.create_bucket(Bucket="sdk-features")
    data = os.urandom(300_000)
    s3.put_object(Bucket="sdk-features", Key="sha", Body=io.BytesIO(data), ChecksumAlgorithm="SHA256",
                  ServerSideEncryption="AES256")
    got = s3.get_object(Bucket="sdk-features", Key="sha", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got["ServerSideEncryption"] == "AES256" and got["ChecksumSHA256"]
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(11 * 1024 * 1024))
    s3.upload_file(str(path), "sdk-features", "big.bin",
                   Config=TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024))
    head = s3.head_object(Bucket="sdk-features", Key="big.bin")
    assert head["ContentLength"] == path.stat().st_size and head["ETag"].endswith('-3"')  # three parts
    assert s3.get_object(Bucket="sdk-features", Key="big.bin")["Body"].read() == path.read_bytes()


def _aws_chunked(data: bytes, signed: bool) -> tuple[bytes, str]:
    """The body SDKs stream with ``Content-Encoding: aws-chunked`` and its x-amz-content-sha256."""
    if not signed:  # what boto3 sends over https: unsigned chunks and a CRC32 trailer
        body = AwsChunkedWrapper(io.BytesIO(data), checksum_cls=Crc32Checksum, checksum_name="x-amz-checksum-crc32",
                                 chunk_size=64 * 1024).read()
        return body, "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    chunks = [data[i:i + 64 * 1024] for i in range(0, len(data), 64 * 1024)] + [b""]
    body = b"".join(b"%x;chunk-signature=%s\r\n%s\r\n" % (len(chunk), b"0" * 64, chunk) for chunk in chunks)
    return body, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"  # the Java SDK's signed chunks


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned-trailer", "signed-chunks"])
def test_aws_chunked_uploads(emulator, s3, signed):
    s3.create_bucket(Bucket="chunked-uploads")
    data = os.urandom(200_000)
    body, content_sha = _aws_chunked(data, signed)
    request = AWSRequest("PUT", f"{emulator.endpoint_url}/chunked-uploads/object.bin", data=body, headers={
        "Content-Encoding": "aws-chunked", "Content-Type": "application/octet-stream",
        "X-Amz-Decoded-Content-Length": str(len(data)), "X-Amz-Content-SHA256": content_sha,
        **({} if signed else {"X-Amz-Trailer": "x-amz-checksum-crc32", "x-amz-sdk-checksum-algorithm": "CRC32"})})
    if not signed:
        request.context["checksum"] = {"request_algorithm": {"in": "trailer", "algorithm": "crc32",
                                                             "name": "x-amz-checksum-crc32"}}
    credentials = Credentials(TEST_CREDENTIALS["aws_access_key_id"], TEST_CREDENTIALS["aws_secret_access_key"])
    S3SigV4Auth(credentials, "s3", "us-east-1").add_auth(request)
    if signed:  # botocore does not sign chunk by chunk; the emulator, like moto, does not verify signatures
        request.headers.replace_header("X-Amz-Content-SHA256", content_sha)
    assert request.headers["X-Amz-Content-SHA256"] == content_sha
    with urllib.request.urlopen(urllib.request.Request(request.url, data=body, method="PUT",
                                                       headers=dict(request.headers.items()))) as response:
        assert response.status == 200
    assert s3.get_object(Bucket="chunked-uploads", Key="object.bin")["Body"].read() == data


# A 5-byte chunk and the final chunk, announced as other decoded lengths (what a client may lie about).
_FIVE_BYTES = b"".join(b"%x;chunk-signature=%s\r\n%s\r\n" % (len(c), b"0" * 64, c) for c in (b"hello", b""))
_LENGTH_ERRORS = {
    "400 MB announced": (_FIVE_BYTES, "400000000", 400, "IncompleteBody"),
    "1e15 announced": (_FIVE_BYTES, "1000000000000000", 400, "IncompleteBody"),
    "fewer announced": (_FIVE_BYTES, "3", 400, "InvalidRequest"),
    "not a number": (_FIVE_BYTES, "5 bytes", 400, "InvalidRequest"),
    "none announced": (_FIVE_BYTES, None, 411, "MissingContentLength"),
    "truncated chunk": (_FIVE_BYTES[:87], "5", 400, "IncompleteBody"),
    "no final chunk": (_FIVE_BYTES[:91], "5", 400, "IncompleteBody"),
    "huge chunk header": (b"ffffffffffffff;chunk-signature=0\r\nhello\r\n0;chunk-signature=0\r\n\r\n", "5", 400,
                          "IncompleteBody"),
    "garbled header": (b"5 bytes\r\nhello\r\n0\r\n\r\n", "5", 400, "InvalidRequest"),
}


@pytest.mark.parametrize("case", _LENGTH_ERRORS)
@pytest.mark.parametrize("content_sha", ["STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"])
def test_aws_chunked_lengths_are_checked_not_trusted(emulator, s3, case, content_sha):
    """The decoded length must be what the chunks hold: nothing is stored (or allocated) on the
    strength of a number the client sent."""
    body, announced, status, code = _LENGTH_ERRORS[case]
    s3.create_bucket(Bucket="chunked-lengths")
    headers = {"Content-Encoding": "aws-chunked", "X-Amz-Content-SHA256": content_sha}
    if announced is not None:
        headers["X-Amz-Decoded-Content-Length"] = announced
    response = requests.put(f"{emulator.endpoint_url}/chunked-lengths/object.bin", data=body, headers=headers,
                            timeout=30)
    assert response.status_code == status, response.text
    assert f"<Code>{code}</Code>" in response.text and "<Message>" in response.text
    assert _keys(s3, "chunked-lengths") == []
    if content_sha.startswith("STREAMING-AWS4"):  # the same body, announced rightly, is stored as it is
        fine = requests.put(f"{emulator.endpoint_url}/chunked-lengths/fine.bin", data=_FIVE_BYTES, timeout=30,
                            headers={**headers, "X-Amz-Decoded-Content-Length": "5"})
        assert fine.status_code == 200
        assert s3.get_object(Bucket="chunked-lengths", Key="fine.bin")["Body"].read() == b"hello"
        s3.delete_object(Bucket="chunked-lengths", Key="fine.bin")


def test_unsigned_requests_follow_path_rules(emulator, s3):
    def send(method, path, data=None, **headers):
        request = urllib.request.Request(emulator.endpoint_url + path, data=data, method=method,
                                         headers={"Content-Type": "application/octet-stream", **headers})
        try:
            with urllib.request.urlopen(request) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    assert send("PUT", "/unsigned-bucket")[0] == 200
    assert send("PUT", "/unsigned-bucket/private.txt", b"private")[0] == 200
    assert send("PUT", "/unsigned-bucket/public.txt", b"public", **{"x-amz-acl": "public-read"})[0] == 200
    assert s3.get_object(Bucket="unsigned-bucket", Key="private.txt")["Body"].read() == b"private"
    assert send("GET", "/unsigned-bucket/public.txt") == (200, b"public")
    assert send("GET", "/unsigned-bucket/private.txt")[0] == 403  # anonymous, as on S3
    status, body = send("GET", "/2020-11-20/projects")  # the API's prefix is the API's
    assert status == 200 and "Projects" in json.loads(body)
    # A request the embedded S3 does not model gets an S3-style error, not a bare 500.
    status, body = send("POST", "/no-such-bucket/key.txt", b"form?")
    assert status == 501 and b"<Code>NotImplemented</Code>" in body and b"POST /no-such-bucket/key.txt" in body
    assert send("GET", "/unsigned-bucket/public.txt") == (200, b"public")


def test_presigned_urls(s3):
    s3.create_bucket(Bucket="presigned")
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": "presigned", "Key": "p.txt"})
    with urllib.request.urlopen(urllib.request.Request(put_url, data=b"via url", method="PUT",
                                                       headers={"Content-Type": "text/plain"})) as response:
        assert response.status == 200
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": "presigned", "Key": "p.txt"})
    with urllib.request.urlopen(get_url) as response:
        assert response.read() == b"via url"


def test_embedded_s3_survives_a_restart(tmp_path):
    """Everything a client or the service wrote comes back after a restart on the same data dir;
    deleted objects and buckets stay deleted."""
    with LocalEmulator(data_dir=tmp_path) as emu:
        s3 = emu.client("s3")
        for bucket in ("kept", "emptied", "dropped"):
            s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket="kept", Key="a/ü.png", Body=b"A", ContentType="image/png", Metadata={"who": "me"})
        s3.put_object(Bucket="kept", Key="replaced", Body=b"old")
        s3.put_object(Bucket="kept", Key="replaced", Body=b"new")
        s3.copy_object(Bucket="kept", Key="copy", CopySource={"Bucket": "kept", "Key": "replaced"})
        s3.put_object(Bucket="emptied", Key="x", Body=b"x")
        s3.put_object(Bucket="emptied", Key="y", Body=b"y")
        s3.delete_objects(Bucket="emptied", Delete={"Objects": [{"Key": "x"}, {"Key": "y"}]})
        s3.put_object(Bucket="dropped", Key="z", Body=b"z")
        s3.delete_object(Bucket="dropped", Key="z")
        s3.delete_bucket(Bucket="dropped")
        emu.backend.objects.put("kept", "service/output.json", b"{}", "application/json")
        etag = s3.head_object(Bucket="kept", Key="a/ü.png")["ETag"]
    with LocalEmulator(data_dir=tmp_path) as emu:
        s3 = emu.client("s3")
        assert sorted(b["Name"] for b in s3.list_buckets()["Buckets"]) == ["emptied", "kept"]
        assert _keys(s3, "kept") == ["a/ü.png", "copy", "replaced", "service/output.json"]
        assert _keys(s3, "emptied") == []
        got = s3.get_object(Bucket="kept", Key="a/ü.png")
        assert (got["Body"].read(), got["ContentType"], got["Metadata"], got["ETag"]) == (
            b"A", "image/png", {"who": "me"}, etag)
        assert s3.get_object(Bucket="kept", Key="replaced")["Body"].read() == b"new"
        assert s3.get_object(Bucket="kept", Key="copy")["Body"].read() == b"new"
        assert emu.backend.objects.get("kept", "service/output.json") == b"{}"


def test_each_emulator_has_its_own_s3(emulator, s3):
    """Emulators side by side in one process (the session server and a fresh one) share nothing."""
    s3.create_bucket(Bucket="shared-name")
    s3.put_object(Bucket="shared-name", Key="session", Body=b"1")
    with LocalEmulator() as fresh:
        other = fresh.client("s3")
        assert other.list_buckets()["Buckets"] == []
        with pytest.raises(ClientError) as err:
            other.get_object(Bucket="shared-name", Key="session")
        assert err.value.response["Error"]["Code"] == "NoSuchBucket"
        other.create_bucket(Bucket="shared-name")
        other.put_object(Bucket="shared-name", Key="fresh", Body=b"2")
        assert _keys(other, "shared-name") == ["fresh"]
    assert _keys(s3, "shared-name") == ["session"]


def test_external_s3_endpoint(emulator, s3, monkeypatch, project_name):
    """With s3_endpoint_url the emulator reads and writes that store (here the session emulator's
    S3) and answers S3 requests itself with an error that says where S3 is."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", TEST_CREDENTIALS["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TEST_CREDENTIALS["aws_secret_access_key"])
    s3.create_bucket(Bucket="external-store")
    refs = []
    for i in range(3):
        s3.put_object(Bucket="external-store", Key=f"{project_name}/{i}.png", Body=image_bytes())
        refs.append(f"s3://external-store/{project_name}/{i}.png")
    s3.put_object(Bucket="external-store", Key=f"{project_name}/train.manifest",
                  Body=manifest_text([labelled(ref, "normal") for ref in refs]))
    with LocalEmulator(s3_endpoint_url=emulator.endpoint_url) as external:
        lookout = external.client("lookoutvision")
        lookout.create_project(ProjectName=project_name)
        lookout.create_dataset(ProjectName=project_name, DatasetType="train", DatasetSource={
            "GroundTruthManifest": {"S3Object": {"Bucket": "external-store", "Key": f"{project_name}/train.manifest"}}})
        deadline = time.monotonic() + 60
        while (described := lookout.describe_dataset(ProjectName=project_name, DatasetType="train")[
                "DatasetDescription"])["Status"] == "CREATE_IN_PROGRESS" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert described["Status"] == "CREATE_COMPLETE", described
        assert described["ImageStats"]["Total"] == 3
        objects = external.backend.objects
        objects.put("external-store", f"{project_name}/written.json", b"{}", "application/json")
        assert s3.get_object(Bucket="external-store", Key=f"{project_name}/written.json")["Body"].read() == b"{}"
        assert f"{project_name}/written.json" in objects.list_keys("external-store", project_name)
        with pytest.raises(ClientError) as err:
            external.client("s3").list_buckets()
        assert err.value.response["Error"]["Code"] == "NotImplemented"
        assert f"--s3-endpoint-url {emulator.endpoint_url}" in err.value.response["Error"]["Message"]
        assert not (external.data_dir / "s3").exists()
