"""Tags on projects and models: TagResource, UntagResource, ListTagsForResource.

The service model checks each key's and value's length and characters; the rules it cannot express
are AWS's general tagging rules, enforced here: at most 50 tags per resource, keys unique, and the
``aws:`` prefix reserved for AWS. CreateModel's Tags go through `apply_tags` so that they follow
the same rules, inside the transaction that creates the model.
"""
from __future__ import annotations

import re
import sqlite3
from typing import Any

from emulator.api.errors import ResourceNotFoundException, ServiceQuotaExceededException, ValidationException
from emulator.api.registry import OperationTable
from emulator.api.statuses import ResourceType
from emulator.backend import Backend

operations = OperationTable()

MAX_TAGS_PER_RESOURCE = 50
RESERVED_PREFIX = "aws:"
_ARN = re.compile(r"arn:aws:lookoutvision:(?P<region>[^:]*):(?P<account>[^:]*):"
                  r"(?:project/(?P<project>[^/]+)|model/(?P<model_project>[^/]+)/(?P<version>[1-9][0-9]*))")


def _require_resource(db: sqlite3.Connection, backend: Backend, arn: str) -> None:
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
        exists = local and db.execute("SELECT 1 FROM projects WHERE name=?", (found["project"],)).fetchone()
    else:
        exists = local and db.execute("SELECT 1 FROM models WHERE project=? AND version=?",
                                      (found["model_project"], int(found["version"]))).fetchone()
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


def apply_tags(db: sqlite3.Connection, arn: str, tags: list[dict[str, str]]) -> None:
    """Add `tags` ([{"Key", "Value"}], as validated against the model) to the resource, replacing
    the values of keys it already has; runs in the caller's transaction (which an error rolls back)."""
    keys = [tag["Key"] for tag in tags]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValidationException(f"Each tag key may appear only once; repeated: {', '.join(duplicates)}.")
    _refuse_reserved(keys)
    existing = {row["key"] for row in db.execute("SELECT key FROM tags WHERE resource_arn=?", (arn,))}
    total = len(existing | set(keys))
    if total > MAX_TAGS_PER_RESOURCE:
        raise ServiceQuotaExceededException(
            f"A resource can have at most {MAX_TAGS_PER_RESOURCE} tags; {arn} has {len(existing)} and this request "
            f"would bring it to {total}.", resource_id=arn,
            resource_type=ResourceType.MODEL if ":model/" in arn else ResourceType.PROJECT,
            quota_code="TagsPerResource")
    db.executemany("INSERT INTO tags(resource_arn, key, value) VALUES (?,?,?) "
                   "ON CONFLICT(resource_arn, key) DO UPDATE SET value=excluded.value",
                   [(arn, tag["Key"], tag["Value"]) for tag in tags])


@operations.operation("TagResource")
def tag_resource(backend: Backend, params: dict[str, Any]) -> dict[str, Any]:
    arn = params["ResourceArn"]
    with backend.store.transaction() as db:
        _require_resource(db, backend, arn)
        apply_tags(db, arn, params["Tags"])
    return {}


@operations.operation("UntagResource")
def untag_resource(backend: Backend, params: dict[str, Any]) -> dict[str, Any]:
    """Remove the tags with these keys; keys the resource does not have are ignored, as AWS does."""
    arn = params["ResourceArn"]
    keys = params["TagKeys"]
    _refuse_reserved(keys)
    with backend.store.transaction() as db:
        _require_resource(db, backend, arn)
        db.executemany("DELETE FROM tags WHERE resource_arn=? AND key=?", [(arn, key) for key in keys])
    return {}


@operations.operation("ListTagsForResource")
def list_tags_for_resource(backend: Backend, params: dict[str, Any]) -> dict[str, Any]:
    arn = params["ResourceArn"]
    with backend.store.transaction() as db:  # one consistent view: the resource and its tags
        _require_resource(db, backend, arn)
        rows = db.execute("SELECT key, value FROM tags WHERE resource_arn=? ORDER BY key", (arn,)).fetchall()
    return {"Tags": [{"Key": row["key"], "Value": row["value"]} for row in rows]}
