"""Malformed input that once gave a 500 or left a dataset IN_PROGRESS for ever: lone surrogates,
deep nesting, huge bracket strings, out-of-range timestamps. Each gets a ValidationException (or,
inside a manifest, a CREATE_FAILED dataset that names the line) and nothing gets stuck."""
from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from emulator.store import schema
from tests.api.core_support import metadata_of, raw_request
from tests.api.datasets_support import error_of, labelled

SURROGATE_LINE = b'{"source-ref": "s3://lookout-dataset-tests/\\ud800.png", "anomaly-label": 1, ' \
                 b'"anomaly-label-metadata": {"type": "groundtruth/image-classification", "class-name": "normal"}}'
# An escaped NUL: valid JSON and Unicode, but PostgreSQL can't store it in text.
NUL_LINE = SURROGATE_LINE.replace(b"\\ud800", b"\\u0000")


def _api(emulator, method: str, path: str, body: bytes) -> tuple[int, dict]:
    status, _, raw = raw_request(emulator.endpoint_url, method, path, body, {"Content-Type": "application/json"})
    return status, json.loads(raw)


@pytest.mark.parametrize("line, why", [(SURROGATE_LINE, "Unicode"), (NUL_LINE, "NUL")], ids=["surrogate", "nul"])
def test_a_lone_surrogate_in_a_manifest_fails_the_import_and_nothing_is_stuck(kit, line, why):
    image = kit.images(1)[0]
    described = kit.create("train", json.dumps(labelled(image, "normal")).encode() + b"\n" + line)
    assert described["Status"] == "CREATE_FAILED", described
    assert "line 2" in described["StatusMessage"] and why in described["StatusMessage"]
    kit.lookout.delete_dataset(ProjectName=kit.project, DatasetType="train")  # not stuck: it can go
    assert kit.create("train", [labelled(image, "normal")])["Status"] == "CREATE_COMPLETE"


@pytest.mark.parametrize("line, why", [(SURROGATE_LINE, "Unicode"), (NUL_LINE, "NUL")], ids=["surrogate", "nul"])
def test_a_lone_surrogate_in_changes_is_a_validation_error(kit, line, why):
    kit.create("train", [labelled(kit.images(1)[0], "normal")])
    with pytest.raises(ClientError) as err:
        kit.lookout.update_dataset_entries(ProjectName=kit.project, DatasetType="train", Changes=line)
    code, status, message = error_of(err)
    assert (code, status) == ("ValidationException", 400) and why in message
    assert kit.describe()["Status"] == "CREATE_COMPLETE"


def test_a_lone_surrogate_in_a_request_body_is_a_validation_error(emulator, lookout, project_name):
    lookout.create_project(ProjectName=project_name)
    body = b'{"Description": "bad \\udfff text", "OutputConfig": {"S3Location": {"Bucket": "lookout-dataset-tests"}}}'
    status, error = _api(emulator, "POST", f"/2020-11-20/projects/{project_name}/models", body)
    assert status == 400 and "Unicode" in error["message"], error
    assert lookout.list_models(ProjectName=project_name)["Models"] == []


@pytest.mark.parametrize("after", ["a\x00", "\udfff"], ids=["nul", "surrogate"])
def test_a_crafted_next_token_with_unstorable_text_is_a_validation_error(lookout, after):
    import base64

    token = base64.b64encode(json.dumps({"after": after}).encode()).decode()
    with pytest.raises(ClientError) as err:
        lookout.list_projects(NextToken=token)
    assert error_of(err)[:2] == ("ValidationException", 400)


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"ProjectName": ' + b"[" * 5000 + b"]" * 5000 + b"}",
                                  b'{"ProjectName": "p", "x": ' + b'{"a": ' * 200 + b"1" + b"}" * 200 + b"}"])
def test_deep_nesting_is_a_validation_error(emulator, body):
    status, headers, _ = raw_request(emulator.endpoint_url, "POST", "/2020-11-20/projects", body,
                                     {"Content-Type": "application/json"})
    assert (status, headers.get("x-amzn-errortype")) == (400, "ValidationException")


def test_a_huge_bracket_string_in_changes_is_a_validation_error(kit):
    kit.create("train")
    with pytest.raises(ClientError) as err:
        kit.lookout.update_dataset_entries(ProjectName=kit.project, DatasetType="train", Changes=b"[" * 100_000)
    assert error_of(err)[:2] == ("ValidationException", 400)


@pytest.mark.parametrize("value", ["1e400", "inf", "-inf", "nan", "1e20", "-1e20"])
def test_out_of_range_timestamps_are_validation_errors(emulator, kit, value):
    kit.create("train")
    status, _, raw = raw_request(emulator.endpoint_url, "GET",
                                 f"/2020-11-20/projects/{kit.project}/datasets/train/entries?createdBefore={value}")
    assert status == 400 and b"timestamp" in raw, raw


def test_unreadable_images_are_described_without_internals(emulator, lookout):
    from emulator.formats.image_files import ImageError, open_image

    with pytest.raises(ImageError) as err:
        open_image(b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "s3://b/x.png")
    assert "_io" not in str(err.value) and "0x" not in str(err.value), err.value


def test_a_dataset_stuck_by_an_older_version_is_failed_at_the_next_start(tmp_path):
    """Data dirs written before the door checks may hold an update whose JSON carries a lone surrogate
    (the job could not store it and the dataset stayed UPDATE_IN_PROGRESS). The next start's recovery
    re-runs the job, which now ends UPDATE_FAILED instead of crashing again."""
    import time

    from emulator.testing import LocalEmulator

    with LocalEmulator(data_dir=tmp_path) as emu:
        lookout = emu.client("lookoutvision")
        lookout.create_project(ProjectName="stuck")
        lookout.create_dataset(ProjectName="stuck", DatasetType="train")
    pending = json.dumps([[1, {"source-ref": "s3://lookout-dataset-tests/\ud800.png"}]])  # escaped: storable
    with metadata_of(emu) as store, store.transaction() as db:
        db.execute(schema.datasets.update().where(schema.datasets.c.project == "stuck")
                   .values(status="UPDATE_IN_PROGRESS", pending_changes=pending))
    with LocalEmulator(data_dir=tmp_path) as emu:
        lookout = emu.client("lookoutvision")
        deadline = time.monotonic() + 30
        while (described := lookout.describe_dataset(ProjectName="stuck", DatasetType="train")
               ["DatasetDescription"])["Status"] == "UPDATE_IN_PROGRESS":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert described["Status"] == "UPDATE_FAILED_ROLLBACK_COMPLETE", described
        assert "\ud800" not in described["StatusMessage"]
        lookout.delete_dataset(ProjectName="stuck", DatasetType="train")
