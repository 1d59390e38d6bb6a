"""Smoke test of the service-model-driven core (fuller project tests live beside it)."""
import pytest
from botocore.exceptions import ClientError


def test_create_describe_delete_project(lookout, project_name):
    created = lookout.create_project(ProjectName=project_name)["ProjectMetadata"]
    assert created["ProjectArn"].endswith(f":project/{project_name}")
    described = lookout.describe_project(ProjectName=project_name)["ProjectDescription"]
    assert described["ProjectName"] == project_name
    lookout.delete_project(ProjectName=project_name)
    with pytest.raises(ClientError) as err:
        lookout.describe_project(ProjectName=project_name)
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
