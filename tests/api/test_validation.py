"""Server-side validation, one test per constraint kind, with botocore's own validation switched off
(other SDKs check less, and users may disable it): each invalid input gets the restJson1 error
botocore parses, with AWS's message format."""
from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from tests.api.core_support import error_of, raw_request

PATTERN = r"[a-zA-Z0-9][a-zA-Z0-9_\-]*"


def _invalid(excinfo: pytest.ExceptionInfo[ClientError], *problems: str) -> None:
    """Assert a ValidationException listing exactly `problems`, with status and error-type header."""
    response = error_of(excinfo)
    assert response["Error"]["Code"] == "ValidationException"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"] == "ValidationException"
    noun = "error" if len(problems) == 1 else "errors"
    assert response["Error"]["Message"] == f"{len(problems)} validation {noun} detected: " + "; ".join(problems)


def test_required_member(lookout_unvalidated):
    with pytest.raises(ClientError) as err:
        lookout_unvalidated.create_project()
    _invalid(err, "Value null at 'projectName' failed to satisfy constraint: Member must not be null")


def test_min_length_in_body_and_in_an_empty_uri_label(lookout_unvalidated):
    with pytest.raises(ClientError) as err:
        lookout_unvalidated.create_project(ProjectName="")
    problem = ("Value '' at 'projectName' failed to satisfy constraint: "
               "Member must have length greater than or equal to 1")
    _invalid(err, problem, f"Value '' at 'projectName' failed to satisfy constraint: Member must satisfy regular "
                           f"expression pattern: {PATTERN}")
    with pytest.raises(ClientError) as err:
        lookout_unvalidated.describe_project(ProjectName="")
    assert problem in error_of(err)["Error"]["Message"]


def test_max_length(lookout_unvalidated):
    with pytest.raises(ClientError) as err:
        lookout_unvalidated.describe_project(ProjectName="p" * 256)
    _invalid(err, f"Value '{'p' * 200}...' at 'projectName' failed to satisfy constraint: Member must have length "
                  "less than or equal to 255")


def test_pattern(lookout_unvalidated):
    with pytest.raises(ClientError) as err:
        lookout_unvalidated.create_project(ProjectName="no spaces!")
    _invalid(err, f"Value 'no spaces!' at 'projectName' failed to satisfy constraint: Member must satisfy "
                  f"regular expression pattern: {PATTERN}")


def test_pattern_of_a_header_bound_member(lookout_unvalidated, project_name):
    with pytest.raises(ClientError) as err:  # ClientToken travels in X-Amzn-Client-Token
        lookout_unvalidated.create_project(ProjectName=project_name, ClientToken="not a token!")
    _invalid(err, "Value 'not a token!' at 'clientToken' failed to satisfy constraint: Member must satisfy "
                  "regular expression pattern: ^[a-zA-Z0-9-]+$")


def test_enum_in_a_nested_structure(lookout_unvalidated, project_name):
    configuration = {"Greengrass": {"S3OutputLocation": {"Bucket": "bucket"}, "ComponentName": "component",
                                    "TargetPlatform": {"Os": "WINDOWS", "Arch": "X86_64"}}}
    with pytest.raises(ClientError) as err:
        lookout_unvalidated.start_model_packaging_job(ProjectName=project_name, ModelVersion="1",
                                                      Configuration=configuration)
    _invalid(err, "Value 'WINDOWS' at 'configuration.greengrass.targetPlatform.os' failed to satisfy constraint: "
                  "Member must satisfy enum value set: [LINUX]")


@pytest.mark.parametrize("value, bound", [(0, "greater than or equal to 1"), (101, "less than or equal to 100")])
def test_integer_range_in_the_query_string(lookout_unvalidated, value, bound):
    with pytest.raises(ClientError) as err:
        lookout_unvalidated.list_projects(MaxResults=value)
    _invalid(err, f"Value '{value}' at 'maxResults' failed to satisfy constraint: Member must have value {bound}")


def test_integer_range_in_the_body(lookout_unvalidated, project_name):
    with pytest.raises(ClientError) as err:
        lookout_unvalidated.start_model(ProjectName=project_name, ModelVersion="1", MinInferenceUnits=0)
    _invalid(err, "Value '0' at 'minInferenceUnits' failed to satisfy constraint: Member must have value greater "
                  "than or equal to 1")


def test_list_length(lookout_unvalidated, project_name):
    arn = f"arn:aws:lookoutvision:us-east-1:123456789012:project/{project_name}"
    with pytest.raises(ClientError) as err:
        lookout_unvalidated.tag_resource(ResourceArn=arn, Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(201)])
    message = error_of(err)["Error"]["Message"]
    assert message.startswith("1 validation error detected: Value '[{")
    assert message.endswith("at 'tags' failed to satisfy constraint: Member must have length less than or equal to 200")


def test_blob_length(lookout_unvalidated, project_name):
    with pytest.raises(ClientError) as err:
        lookout_unvalidated.update_dataset_entries(ProjectName=project_name, DatasetType="train", Changes=b"")
    _invalid(err, "Value '' at 'changes' failed to satisfy constraint: Member must have length greater than or "
                  "equal to 1")


def test_wrong_types(emulator, lookout_unvalidated, project_name):
    with pytest.raises(ClientError) as err:
        lookout_unvalidated.create_project(ProjectName=5)
    _invalid(err, "Value '5' at 'projectName' failed to satisfy constraint: Member must be a string")
    with pytest.raises(ClientError) as err:
        lookout_unvalidated.list_projects(MaxResults="ten")
    _invalid(err, "Value 'ten' at 'maxResults' failed to satisfy constraint: Member must be an integer")
    # Shapes botocore cannot even serialize wrongly: sent by hand.
    for path, document, problem in [
        (f"/2020-11-20/projects/{project_name}/datasets", {"DatasetType": "train", "DatasetSource": "s3://x"},
         "Value 's3://x' at 'datasetSource' failed to satisfy constraint: Member must be a structure"),
        ("/2020-11-20/tags/arn", {"Tags": {"Key": "k"}},
         """Value '{"Key": "k"}' at 'tags' failed to satisfy constraint: Member must be a list"""),
        (f"/2020-11-20/projects/{project_name}/models/1/start", {"MinInferenceUnits": True},
         "Value 'true' at 'minInferenceUnits' failed to satisfy constraint: Member must be an integer"),
    ]:
        status, _, body = raw_request(emulator.endpoint_url, "POST", path, json.dumps(document).encode())
        assert (status, json.loads(body)["message"]) == (400, f"1 validation error detected: {problem}")


def test_query_string_boolean(lookout_unvalidated, project_name):
    with pytest.raises(ClientError) as err:
        lookout_unvalidated.list_dataset_entries(ProjectName=project_name, DatasetType="train", Labeled="maybe")
    _invalid(err, "Value 'maybe' at 'labeled' failed to satisfy constraint: Member must be a boolean")


def test_query_string_timestamp(emulator, project_name):
    status, headers, body = raw_request(
        emulator.endpoint_url, "GET", f"/2020-11-20/projects/{project_name}/datasets/train/entries?createdBefore=soon")
    assert (status, headers["x-amzn-errortype"]) == (400, "ValidationException")
    assert json.loads(body)["message"] == (
        "1 validation error detected: Value 'soon' at 'beforeCreationDate' failed "
        "to satisfy constraint: Member must be a timestamp (ISO 8601 or epoch seconds)")


def test_every_violation_is_reported(lookout_unvalidated):
    with pytest.raises(ClientError) as err:
        lookout_unvalidated.list_dataset_entries(ProjectName="bad name", DatasetType="validation", MaxResults=0)
    assert error_of(err)["Error"]["Message"].startswith("3 validation errors detected: ")


@pytest.mark.parametrize("body, message", [
    (b"{not json", "The request body is not valid JSON."),
    (b"[1, 2]", "The request body must be a JSON object."),
])
def test_bad_json_body(emulator, body, message):
    status, headers, answer = raw_request(emulator.endpoint_url, "POST", "/2020-11-20/projects", body,
                                          {"Content-Type": "application/json"})
    assert (status, headers["x-amzn-errortype"], json.loads(answer)["message"]) == (400, "ValidationException", message)


@pytest.mark.parametrize("method, path", [("GET", "/2020-11-20/no-such-thing"), ("PUT", "/2020-11-20/projects")])
def test_unknown_route(emulator, method, path):
    status, headers, body = raw_request(emulator.endpoint_url, method, path, b"{}" if method == "PUT" else None)
    assert (status, headers["x-amzn-errortype"]) == (400, "ValidationException")
    assert json.loads(body)["message"].startswith(f"No Lookout for Vision operation matches {method} {path}")


def test_validation_comes_before_existence(lookout_unvalidated):
    """An invalid name is a 400 even though no such project exists (which would be a 404)."""
    with pytest.raises(ClientError) as err:
        lookout_unvalidated.delete_project(ProjectName="-starts-with-a-dash")
    assert error_of(err)["Error"]["Code"] == "ValidationException"
