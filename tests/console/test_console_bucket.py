"""The console bucket lives in whatever S3 the emulator uses, so images uploaded in the browser are
ordinary S3 objects: here an emulator reading an external S3 (another emulator's) stores them there."""
from __future__ import annotations

import urllib.request
import uuid

from emulator.testing import LocalEmulator
from tests.console.console_data import synthetic_image


def upload(endpoint: str, project: str, name: str, data: bytes) -> bytes:
    """POST one file as the console's upload script does (multipart, JSON reply)."""
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(f"{endpoint}/console/projects/{project}/datasets/train/upload", data=body,
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}",
                                              "Accept": "application/json"})
    with urllib.request.urlopen(request) as reply:
        return reply.read()


def test_uploads_go_to_a_console_bucket_in_the_external_s3(emulator, s3, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with LocalEmulator(data_dir=tmp_path, s3_endpoint_url=emulator.endpoint_url) as external_user:
        lookout = external_user.client()
        lookout.create_project(ProjectName="uses-external-s3")
        lookout.create_dataset(ProjectName="uses-external-s3", DatasetType="train")
        image = synthetic_image(7, False)
        assert b'"added":1' in upload(external_user.endpoint_url, "uses-external-s3", "part 1.png", image)
        [line] = lookout.list_dataset_entries(ProjectName="uses-external-s3", DatasetType="train")["DatasetEntries"]
    bucket, key = line.split('"s3://', 1)[1].rstrip('"}').split("/", 1)
    assert bucket.startswith("lookoutvision-us-east-1-") and key == "datasets/uses-external-s3/train/part_1.png"
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == image  # in the other emulator's S3
