"""Tags on projects and models: TagResource, UntagResource, ListTagsForResource.

The service model checks each key's and value's length and characters; the rules it cannot express
are AWS's general tagging rules, enforced here: at most 50 tags per resource, keys unique, and the
``aws:`` prefix reserved for AWS. CreateModel's Tags go through `apply_tags` so that they follow
the same rules, inside the transaction that creates the model.
"""
from __future__ import annotations

import re
from typing import Any

from emulator.api.errors import ResourceNotFoundException, ServiceQuotaExceededException, ValidationException
from emulator.api.registry import OperationTable
from emulator.api.statuses import ResourceType
from emulator.backend import Backend
from emulator.store.records import Tag

operations = OperationTable()

MAX_TAGS_PER_RESOURCE = 50
RESERVED_PREFIX = "aws:"
_ARN = re.compile(r"arn:aws:lookoutvision:(?P<region>[^:]*):(?P<account>[^:]*):"
                  r"(?:project/(?P<project>[^/]+)|model/(?P<model_project>[^/]+)/(?P<version>[1-9][0-9]*))")


def _require_resource(backend: Backend, arn: str) -> None:
    """Refuse an ARN that is not a project or model ARN (ValidationException) or that names no
    existing resource of this emulator's region and account (ResourceNotFoundException)."""
    found = _ARN.fullmatch(arn)
    if found is None:
        raise ValidationException(
            f"{arn} is not a Lookout for Vision project or model ARN; expected arn:aws:lookoutvision:"
            "<region>:<account-id>:project/<project-name> or ...:model/<project-name>/<model-version>.")
    resource_type = ResourceType.PROJECT if found["project"] else ResourceType.MODEL
    local = found["region"] == backend.settings.region and found["account"] == backend.settings.account_id
    if found["project"]:
        exists = local and backend.store.projects.get(found["project"]) is not None
    else:
        exists = local and backend.store.models.get(found["model_project"], int(found["version"])) is not None
    if not exists:
        where = "" if local else (f" (this emulator serves region {backend.settings.region}, "
                                  f"account {backend.settings.account_id})")
        raise ResourceNotFoundException(f"The {resource_type.lower()} {arn} does not exist{where}.",
                                        resource_id=arn, resource_type=resource_type)


def _refuse_reserved(keys: list[str]) -> None:
    reserved = [key for key in keys if key.lower().startswith(RESERVED_PREFIX)]
    if reserved:
        raise ValidationException(f"Tag keys that start with '{RESERVED_PREFIX}' are reserved for AWS use: "
                                  f"{', '.join(reserved)}.")


def apply_tags(backend: Backend, arn: str, tags: list[dict[str, str]]) -> None:
    """Add `tags` ([{"Key", "Value"}], as validated against the model) to the resource, replacing
    the values of keys it already has; runs in the caller's transaction (which an error rolls back)."""
    keys = [tag["Key"] for tag in tags]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValidationException(f"Each tag key may appear only once; repeated: {', '.join(duplicates)}.")
    _refuse_reserved(keys)
    existing = {tag.key for tag in backend.store.tags.of(arn)}
    total = len(existing | set(keys))
    if total > MAX_TAGS_PER_RESOURCE:
        raise ServiceQuotaExceededException(
            f"A resource can have at most {MAX_TAGS_PER_RESOURCE} tags; {arn} has {len(existing)} and this request "
            f"would bring it to {total}.", resource_id=arn,
            resource_type=ResourceType.MODEL if ":model/" in arn else ResourceType.PROJECT,
            quota_code="TagsPerResource")
    backend.store.tags.put(arn, [Tag(tag["Key"], tag["Value"]) for tag in tags])


@operations.operation("TagResource")
def tag_resource(backend: Backend, params: dict[str, Any]) -> dict[str, Any]:
    arn = params["ResourceArn"]
    with backend.store.transaction():
        _require_resource(backend, arn)
        apply_tags(backend, arn, params["Tags"])
    return {}


@operations.operation("UntagResource")
def untag_resource(backend: Backend, params: dict[str, Any]) -> dict[str, Any]:
    """Remove the tags with these keys; keys the resource does not have are ignored, as AWS does."""
    arn = params["ResourceArn"]
    keys = params["TagKeys"]
    _refuse_reserved(keys)
    with backend.store.transaction():
        _require_resource(backend, arn)
        backend.store.tags.remove(arn, keys)
    return {}


@operations.operation("ListTagsForResource")
def list_tags_for_resource(backend: Backend, params: dict[str, Any]) -> dict[str, Any]:
    arn = params["ResourceArn"]
    with backend.store.transaction():  # one consistent view: the resource and its tags
        _require_resource(backend, arn)
        tags = backend.store.tags.of(arn)
    return {"Tags": [{"Key": tag.key, "Value": tag.value} for tag in tags]}
