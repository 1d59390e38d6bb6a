"""The restJson1 wire format and the routing of one port between the API and S3."""
from __future__ import annotations

import datetime as dt
import json
from urllib.parse import quote

import pytest
from botocore.exceptions import ClientError

from tests.api.core_support import error_of, raw_request


def test_error_has_every_member_of_its_shape(emulator, lookout, project_name):
    with pytest.raises(ClientError) as err:
        lookout.describe_project(ProjectName=project_name)
    parsed = error_of(err)
    assert (parsed["ResourceId"], parsed["ResourceType"]) == (project_name, "PROJECT")
    assert parsed["ResponseMetadata"]["RequestId"]
    status, headers, body = raw_request(emulator.endpoint_url, "GET", f"/2020-11-20/projects/{project_name}")
    assert status == 404
    assert headers["x-amzn-errortype"] == "ResourceNotFoundException"
    assert headers["content-type"] == "application/json" and headers["x-amzn-requestid"]
    document = json.loads(body)
    message = f"The project {project_name} does not exist."
    assert document == {"message": message, "Message": message, "ResourceId": project_name, "ResourceType": "PROJECT"}


def test_success_status_codes_and_request_ids(lookout, project_name):
    created = lookout.create_project(ProjectName=project_name)["ResponseMetadata"]
    dataset = lookout.create_dataset(ProjectName=project_name, DatasetType="train")["ResponseMetadata"]
    assert (created["HTTPStatusCode"], dataset["HTTPStatusCode"]) == (200, 202)  # as the model declares
    assert created["RequestId"] and created["RequestId"] != dataset["RequestId"]


def test_arn_labels_carry_slashes_percent_encoded(emulator, lookout, project_name):
    arn = lookout.create_project(ProjectName=project_name)["ProjectMetadata"]["ProjectArn"]
    lookout.tag_resource(ResourceArn=arn, Tags=[{"Key": "k", "Value": "v"}])
    status, _, body = raw_request(emulator.endpoint_url, "GET", f"/2020-11-20/tags/{quote(arn, safe='')}")
    assert (status, json.loads(body)) == (200, {"Tags": [{"Key": "k", "Value": "v"}]})
    status, headers, _ = raw_request(emulator.endpoint_url, "GET", f"/2020-11-20/tags/{arn}")  # '/' unencoded
    assert (status, headers["x-amzn-errortype"]) == (400, "ValidationException")


def test_query_string_booleans_and_timestamps(emulator, lookout, project_name):
    lookout.create_project(ProjectName=project_name)
    lookout.create_dataset(ProjectName=project_name, DatasetType="train")
    tomorrow = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    assert lookout.list_dataset_entries(ProjectName=project_name, DatasetType="train", Labeled=True,
                                        BeforeCreationDate=tomorrow)["DatasetEntries"] == []
    path = f"/2020-11-20/projects/{project_name}/datasets/train/entries"
    for query in ("labeled=false", f"createdBefore={tomorrow.timestamp():.0f}", "createdAfter=2020-06-23T00:00:00"):
        status, _, body = raw_request(emulator.endpoint_url, "GET", f"{path}?{query}")
        assert (status, json.loads(body)) == (200, {"DatasetEntries": []}), query


def test_one_path_two_services_told_apart_by_the_signature(lookout, s3, project_name):
    """``/2020-11-20/projects`` is ListProjects when signed for lookoutvision and the object
    ``projects`` of bucket ``2020-11-20`` when signed for s3."""
    lookout.create_project(ProjectName=project_name)
    s3.create_bucket(Bucket="2020-11-20")
    s3.put_object(Bucket="2020-11-20", Key="projects", Body=b"not a project list")
    assert s3.get_object(Bucket="2020-11-20", Key="projects")["Body"].read() == b"not a project list"
    pages = lookout.get_paginator("list_projects").paginate()
    names = [p["ProjectName"] for p in pages.build_full_result()["Projects"]]
    assert project_name in names
    s3.delete_object(Bucket="2020-11-20", Key="projects")
    s3.delete_bucket(Bucket="2020-11-20")
