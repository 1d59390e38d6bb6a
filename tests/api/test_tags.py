"""Tags on project and model ARNs: tag, list, untag, and the tagging limits."""
from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from tests.api.core_support import error_of, stored_model


def _tag_call(lookout, call, arn, key="k"):
    """ListTagsForResource, or TagResource/UntagResource of one key, on `arn`."""
    if call == "list":
        return lookout.list_tags_for_resource(ResourceArn=arn)
    if call == "tag":
        return lookout.tag_resource(ResourceArn=arn, Tags=[{"Key": key, "Value": "v"}])
    return lookout.untag_resource(ResourceArn=arn, TagKeys=[key])


@pytest.fixture
def project_arn(lookout, project_name):
    return lookout.create_project(ProjectName=project_name)["ProjectMetadata"]["ProjectArn"]


def test_tag_list_and_untag_a_project(lookout, project_arn):
    lookout.tag_resource(ResourceArn=project_arn, Tags=[{"Key": "team", "Value": "qa"}, {"Key": "cost", "Value": ""}])
    lookout.tag_resource(ResourceArn=project_arn, Tags=[{"Key": "team", "Value": "vision"}])  # replaces the value
    assert lookout.list_tags_for_resource(ResourceArn=project_arn)["Tags"] == [
        {"Key": "cost", "Value": ""}, {"Key": "team", "Value": "vision"}]
    lookout.untag_resource(ResourceArn=project_arn, TagKeys=["cost", "never-set"])
    assert lookout.list_tags_for_resource(ResourceArn=project_arn)["Tags"] == [{"Key": "team", "Value": "vision"}]


def test_tag_a_model(emulator, lookout, project_name, project_arn):
    model_arn = stored_model(emulator, project_name)
    assert model_arn == f"arn:aws:lookoutvision:us-east-1:123456789012:model/{project_name}/1"
    lookout.tag_resource(ResourceArn=model_arn, Tags=[{"Key": "stage", "Value": "canary"}])
    assert lookout.list_tags_for_resource(ResourceArn=model_arn)["Tags"] == [{"Key": "stage", "Value": "canary"}]
    assert lookout.list_tags_for_resource(ResourceArn=project_arn)["Tags"] == []  # separate resources
    lookout.untag_resource(ResourceArn=model_arn, TagKeys=["stage"])
    assert lookout.list_tags_for_resource(ResourceArn=model_arn)["Tags"] == []


@pytest.mark.parametrize("arn", [
    "not-an-arn",
    "arn:aws:rekognition:us-east-1:123456789012:project/p/1",
    "arn:aws:lookoutvision:us-east-1:123456789012:dataset/p/train",
    "arn:aws:lookoutvision:us-east-1:123456789012:model/p/latest",
    "arn:aws:lookoutvision:us-east-1:123456789012:project/p/extra",
])
def test_malformed_arn_is_a_validation_error(lookout, arn):
    with pytest.raises(ClientError) as err:
        lookout.list_tags_for_resource(ResourceArn=arn)
    response = error_of(err)
    assert response["Error"]["Code"] == "ValidationException"
    assert "is not a Lookout for Vision project or model ARN" in response["Error"]["Message"]


@pytest.mark.parametrize("call", ["list", "tag", "untag"])
def test_unknown_resources_are_not_found(lookout, project_name, call):
    arns = {
        "PROJECT": f"arn:aws:lookoutvision:us-east-1:123456789012:project/{project_name}",
        "MODEL": f"arn:aws:lookoutvision:us-east-1:123456789012:model/{project_name}/3",
    }
    for resource_type, arn in arns.items():
        with pytest.raises(ClientError) as err:
            _tag_call(lookout, call, arn)
        response = error_of(err)
        assert response["Error"]["Code"] == "ResourceNotFoundException"
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 404
        assert (response["ResourceId"], response["ResourceType"]) == (arn, resource_type)


def test_arn_of_another_region_or_account_is_not_found(lookout, project_name, project_arn):
    for arn in (project_arn.replace("us-east-1", "eu-west-1"), project_arn.replace("123456789012", "210987654321")):
        with pytest.raises(ClientError) as err:
            lookout.list_tags_for_resource(ResourceArn=arn)
        assert error_of(err)["Error"]["Code"] == "ResourceNotFoundException"
        assert "this emulator serves region us-east-1, account 123456789012" in error_of(err)["Error"]["Message"]


def test_at_most_50_tags_per_resource(lookout, project_arn):
    lookout.tag_resource(ResourceArn=project_arn, Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(48)])
    with pytest.raises(ClientError) as err:
        lookout.tag_resource(ResourceArn=project_arn, Tags=[{"Key": f"new{i}", "Value": "v"} for i in range(3)])
    response = error_of(err)
    assert response["Error"]["Code"] == "ServiceQuotaExceededException"
    assert "at most 50 tags" in response["Error"]["Message"] and "has 48" in response["Error"]["Message"]
    assert (response["ResourceId"], response["ResourceType"]) == (project_arn, "PROJECT")
    assert len(lookout.list_tags_for_resource(ResourceArn=project_arn)["Tags"]) == 48  # nothing was added
    # Replacing values of existing keys does not count against the limit; 2 more reach it exactly.
    lookout.tag_resource(ResourceArn=project_arn, Tags=[{"Key": "k0", "Value": "w"}, {"Key": "n1", "Value": "v"},
                                                        {"Key": "n2", "Value": "v"}])
    assert len(lookout.list_tags_for_resource(ResourceArn=project_arn)["Tags"]) == 50


@pytest.mark.parametrize("call, key", [("tag", "AWS:cost"), ("untag", "aws:cost")])
def test_aws_prefix_is_reserved(lookout, project_arn, call, key):
    with pytest.raises(ClientError) as err:
        _tag_call(lookout, call, project_arn, key)
    response = error_of(err)
    assert response["Error"]["Code"] == "ValidationException"
    assert "reserved for AWS use" in response["Error"]["Message"]


def test_repeated_keys_in_one_request_are_refused(lookout, project_arn):
    with pytest.raises(ClientError) as err:
        lookout.tag_resource(ResourceArn=project_arn, Tags=[{"Key": "a", "Value": "1"}, {"Key": "a", "Value": "2"}])
    assert error_of(err)["Error"]["Code"] == "ValidationException"
    assert "repeated: a" in error_of(err)["Error"]["Message"]
    assert lookout.list_tags_for_resource(ResourceArn=project_arn)["Tags"] == []


def test_key_and_value_constraints_come_from_the_model(lookout_unvalidated, project_arn):
    with pytest.raises(ClientError) as err:
        lookout_unvalidated.tag_resource(ResourceArn=project_arn, Tags=[{"Key": "k" * 129, "Value": "v;"}])
    message = error_of(err)["Error"]["Message"]
    assert message.startswith("2 validation errors detected: ")
    assert "at 'tags.1.member.key' failed to satisfy constraint: Member must have length less than or equal to 128" \
        in message
    assert "Value 'v;' at 'tags.1.member.value' failed to satisfy constraint: Member must satisfy regular " \
           "expression pattern" in message
