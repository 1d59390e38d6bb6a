"""Projects: the full lifecycle, name conflicts, pagination, ClientToken idempotency, delete rules."""
from __future__ import annotations

import datetime as dt
import uuid

import pytest
from botocore.exceptions import ClientError

from emulator.api.pagination import encode_token
from tests.api.core_support import error_of, stored_model
from tests.api.datasets_support import jobs_held


def test_create_returns_arn_and_creation_time(lookout, project_name):
    before = dt.datetime.now(dt.UTC)
    created = lookout.create_project(ProjectName=project_name)["ProjectMetadata"]
    assert created["ProjectArn"] == f"arn:aws:lookoutvision:us-east-1:123456789012:project/{project_name}"
    assert created["ProjectName"] == project_name
    assert before - dt.timedelta(seconds=2) <= created["CreationTimestamp"] <= dt.datetime.now(dt.UTC)


def test_describe_lists_the_datasets(lookout, project_name):
    lookout.create_project(ProjectName=project_name)
    assert lookout.describe_project(ProjectName=project_name)["ProjectDescription"]["Datasets"] == []
    lookout.create_dataset(ProjectName=project_name, DatasetType="train")
    described = lookout.describe_project(ProjectName=project_name)["ProjectDescription"]
    assert [(d["DatasetType"], d["Status"]) for d in described["Datasets"]] == [("train", "CREATE_COMPLETE")]
    assert isinstance(described["Datasets"][0]["CreationTimestamp"], dt.datetime)


def test_duplicate_name_is_a_conflict(lookout, project_name):
    lookout.create_project(ProjectName=project_name)
    with pytest.raises(ClientError) as err:
        lookout.create_project(ProjectName=project_name)
    response = error_of(err)
    assert response["Error"]["Code"] == "ConflictException"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 409
    assert project_name in response["Error"]["Message"]
    assert (response["ResourceId"], response["ResourceType"]) == (project_name, "PROJECT")


@pytest.mark.parametrize("call", ["describe_project", "delete_project"])
def test_unknown_project_is_not_found(lookout, project_name, call):
    with pytest.raises(ClientError) as err:
        getattr(lookout, call)(ProjectName=project_name)
    response = error_of(err)
    assert response["Error"]["Code"] == "ResourceNotFoundException"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert (response["ResourceId"], response["ResourceType"]) == (project_name, "PROJECT")
    assert response["Error"]["Message"] == f"The project {project_name} does not exist."


def test_list_pages_through_every_project(lookout):
    prefix = f"page-{uuid.uuid4().hex[:8]}"
    names = sorted(f"{prefix}-{i:02d}" for i in range(7))
    for name in names:
        lookout.create_project(ProjectName=name)
    seen, token, pages = [], None, 0
    while True:
        kwargs = {"MaxResults": 3, **({"NextToken": token} if token else {})}
        response = lookout.list_projects(**kwargs)
        assert len(response["Projects"]) <= 3
        seen += [p["ProjectName"] for p in response["Projects"]]
        pages += 1
        token = response.get("NextToken")
        if token is None:
            break
    assert [name for name in seen if name.startswith(prefix)] == names
    assert seen == sorted(seen) and len(seen) == len(set(seen))
    assert pages >= 3
    pages = lookout.get_paginator("list_projects").paginate()
    listed = {p["ProjectName"]: p for p in pages.build_full_result()["Projects"]}
    assert listed[names[0]]["ProjectArn"].endswith(f":project/{names[0]}")


def test_list_survives_deletes_between_pages(lookout):
    prefix = f"00000-{uuid.uuid4().hex[:8]}"  # sorts before every other project of the session
    names = [f"{prefix}-{i}" for i in range(4)]
    for name in names:
        lookout.create_project(ProjectName=name)
    first = lookout.list_projects(MaxResults=2)
    assert [p["ProjectName"] for p in first["Projects"]] == names[:2]
    # Delete the last project of the page and the next one, then resume: nothing skipped or repeated.
    lookout.delete_project(ProjectName=names[1])
    lookout.delete_project(ProjectName=names[2])
    rest = lookout.list_projects(NextToken=first["NextToken"], MaxResults=100)["Projects"]
    assert [p["ProjectName"] for p in rest if p["ProjectName"].startswith(prefix)] == [names[3]]
    for name in (names[0], names[3]):
        lookout.delete_project(ProjectName=name)


@pytest.mark.parametrize("token", [
    "not+valid",                 # not base64
    "AAAA",                      # base64, but not a token
    "eyJ4IjogMX0=",              # a JSON document without a position
    encode_token(5),             # a position of another listing (ListModels pages by version number)
])
def test_invalid_next_token_is_a_validation_error(lookout, token):
    with pytest.raises(ClientError) as err:
        lookout.list_projects(NextToken=token)
    assert error_of(err)["Error"]["Code"] == "ValidationException"
    assert "NextToken" in error_of(err)["Error"]["Message"]


def test_same_client_token_and_input_returns_the_first_result(lookout, project_name):
    token = uuid.uuid4().hex
    first = lookout.create_project(ProjectName=project_name, ClientToken=token)
    again = lookout.create_project(ProjectName=project_name, ClientToken=token)
    assert again["ProjectMetadata"] == first["ProjectMetadata"]


def test_same_client_token_with_other_input_is_a_conflict(lookout, project_name):
    token = uuid.uuid4().hex
    lookout.create_project(ProjectName=project_name, ClientToken=token)
    with pytest.raises(ClientError) as err:
        lookout.create_project(ProjectName=f"{project_name}-other", ClientToken=token)
    response = error_of(err)
    assert response["Error"]["Code"] == "ConflictException"
    assert token in response["Error"]["Message"]
    assert response["ResourceType"] == "PROJECT"
    with pytest.raises(ClientError):
        lookout.describe_project(ProjectName=f"{project_name}-other")


def test_delete_retried_with_its_client_token_replays_the_result(lookout, project_name):
    arn = lookout.create_project(ProjectName=project_name)["ProjectMetadata"]["ProjectArn"]
    token = uuid.uuid4().hex
    assert lookout.delete_project(ProjectName=project_name, ClientToken=token)["ProjectArn"] == arn
    assert lookout.delete_project(ProjectName=project_name, ClientToken=token)["ProjectArn"] == arn
    with pytest.raises(ClientError) as err:  # a new request (new token) finds nothing to delete
        lookout.delete_project(ProjectName=project_name)
    assert error_of(err)["Error"]["Code"] == "ResourceNotFoundException"


def test_failed_call_records_no_client_token(lookout, project_name):
    token = uuid.uuid4().hex
    with pytest.raises(ClientError):
        lookout.delete_project(ProjectName=project_name, ClientToken=token)
    lookout.create_project(ProjectName=project_name)
    assert lookout.delete_project(ProjectName=project_name, ClientToken=token)["ProjectArn"].endswith(project_name)


def test_delete_is_refused_while_the_project_has_datasets(lookout, project_name):
    arn = lookout.create_project(ProjectName=project_name)["ProjectMetadata"]["ProjectArn"]
    lookout.create_dataset(ProjectName=project_name, DatasetType="train")
    lookout.create_dataset(ProjectName=project_name, DatasetType="test")
    lookout.tag_resource(ResourceArn=arn, Tags=[{"Key": "team", "Value": "qa"}])
    with pytest.raises(ClientError) as err:
        lookout.delete_project(ProjectName=project_name)
    response = error_of(err)
    assert (response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]) == ("ConflictException", 409)
    assert "train and a test dataset" in response["Error"]["Message"]
    assert "DeleteDataset" in response["Error"]["Message"]
    assert (response["ResourceId"], response["ResourceType"]) == (project_name, "PROJECT")
    assert len(lookout.describe_project(ProjectName=project_name)["ProjectDescription"]["Datasets"]) == 2
    for dataset_type in ("train", "test"):
        lookout.delete_dataset(ProjectName=project_name, DatasetType=dataset_type)
    assert lookout.delete_project(ProjectName=project_name)["ProjectArn"] == arn
    lookout.create_project(ProjectName=project_name)  # the name is free again, and starts empty
    assert lookout.describe_project(ProjectName=project_name)["ProjectDescription"]["Datasets"] == []
    assert lookout.list_tags_for_resource(ResourceArn=arn)["Tags"] == []


def test_delete_is_refused_while_the_project_has_models(emulator, lookout, project_name):
    lookout.create_project(ProjectName=project_name)
    lookout.create_dataset(ProjectName=project_name, DatasetType="train")
    stored_model(emulator, project_name, 1)
    stored_model(emulator, project_name, 2)
    with pytest.raises(ClientError) as err:
        lookout.delete_project(ProjectName=project_name)
    response = error_of(err)
    assert response["Error"]["Code"] == "ConflictException"
    assert "model version(s) 1, 2" in response["Error"]["Message"]
    assert (response["ResourceId"], response["ResourceType"]) == (project_name, "PROJECT")
    assert lookout.describe_project(ProjectName=project_name)["ProjectDescription"]["Datasets"]
    for version in ("1", "2"):
        lookout.delete_model(ProjectName=project_name, ModelVersion=version)
    lookout.delete_dataset(ProjectName=project_name, DatasetType="train")
    lookout.delete_project(ProjectName=project_name)


def test_delete_is_refused_while_a_dataset_job_runs(emulator, lookout, s3, project_name):
    s3.create_bucket(Bucket="project-delete-rules")
    s3.put_object(Bucket="project-delete-rules", Key=f"{project_name}.manifest", Body=b'{"source-ref": "s3://x/y.png"}')
    lookout.create_project(ProjectName=project_name)
    manifest = {"Bucket": "project-delete-rules", "Key": f"{project_name}.manifest"}
    source = {"GroundTruthManifest": {"S3Object": manifest}}
    with jobs_held(emulator):
        lookout.create_dataset(ProjectName=project_name, DatasetType="train", DatasetSource=source)
        with pytest.raises(ClientError) as err:
            lookout.delete_project(ProjectName=project_name)
        with pytest.raises(ClientError) as dataset_err:
            lookout.delete_dataset(ProjectName=project_name, DatasetType="train")
    assert error_of(err)["Error"]["Code"] == "ConflictException"
    response = error_of(dataset_err)
    assert response["Error"]["Code"] == "ConflictException"
    assert "CREATE_IN_PROGRESS" in response["Error"]["Message"]
    assert (response["ResourceId"], response["ResourceType"]) == ("train", "DATASET")
    emulator.backend.jobs.wait_idle(timeout=60)
    lookout.delete_dataset(ProjectName=project_name, DatasetType="train")
    lookout.delete_project(ProjectName=project_name)
