"""Marshmallow schemas generated from the service model's shapes.

Every operation's input is validated server-side against the same constraints botocore checks on
the client (required members, lengths, patterns, enums, ranges), because clients may disable
client-side validation and other SDKs check less. Failures become the ValidationException message
format AWS services use: ``N validation error(s) detected: Value X at 'path' failed to satisfy
constraint: ...``.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from functools import cache
from typing import TYPE_CHECKING, Any, cast

import botocore.model
import marshmallow
import regex
from marshmallow import fields, validate
from marshmallow.exceptions import SCHEMA

from emulator.api.errors import ValidationException
from emulator.api.servicemodel import service_model

if TYPE_CHECKING:  # marshmallow 4's Field is generic; marshmallow 3's (also supported) is not
    _Field = fields.Field[Any]
else:
    _Field = fields.Field

NOT_NULL = "Member must not be null"
SHOWN_VALUE_CHARS = 200  # longer values are cut in messages


def _constraint(message: str) -> marshmallow.ValidationError:
    return marshmallow.ValidationError(message)


class _Length(validate.Validator):
    """min/max on strings, blobs and lists, with AWS's wording."""

    def __init__(self, minimum: int | None, maximum: int | None, noun: str = "length") -> None:
        self.minimum, self.maximum, self.noun = minimum, maximum, noun

    def __call__(self, value: Any) -> Any:
        size = len(value)
        if self.minimum is not None and size < self.minimum:
            raise _constraint(f"Member must have {self.noun} greater than or equal to {self.minimum}")
        if self.maximum is not None and size > self.maximum:
            raise _constraint(f"Member must have {self.noun} less than or equal to {self.maximum}")
        return value


class _Range(validate.Validator):
    def __init__(self, minimum: float | None, maximum: float | None) -> None:
        self.minimum, self.maximum = minimum, maximum

    def __call__(self, value: Any) -> Any:
        if self.minimum is not None and value < self.minimum:
            raise _constraint(f"Member must have value greater than or equal to {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise _constraint(f"Member must have value less than or equal to {self.maximum}")
        return value


class _Pattern(validate.Validator):
    r"""Java-flavoured patterns (``\p{L}``) need the `regex` module; AWS matches the whole value."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.compiled = regex.compile(pattern)

    def __call__(self, value: str) -> str:
        if self.compiled.fullmatch(value) is None:
            raise _constraint(f"Member must satisfy regular expression pattern: {self.pattern}")
        return value


class _Enum(validate.Validator):
    def __init__(self, values: list[str]) -> None:
        self.values = values

    def __call__(self, value: str) -> str:
        if value not in self.values:
            raise _constraint(f"Member must satisfy enum value set: [{', '.join(self.values)}]")
        return value


class _String(fields.String):
    default_error_messages = {"invalid": "Member must be a string", "invalid_utf8": "Member must be a string"}


class _Integer(fields.Integer):
    default_error_messages = {"invalid": "Member must be an integer", "too_large": "Member must be an integer"}


class _Float(fields.Float):
    """JSON numbers only: marshmallow's Float would also parse strings and booleans."""

    default_error_messages = {"invalid": "Member must be a number", "special": "Member must be a number"}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _constraint("Member must be a number")
        return super()._deserialize(value, attr, data, **kwargs)


class _Boolean(_Field):
    """JSON true/false only (marshmallow's Boolean would also take 1, "yes", "on", ...); a query
    string's "true"/"false" is converted by `emulator.api.protocol` before validation."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise _constraint("Member must be a boolean")
        return value


class _Blob(_Field):
    """Raw bytes (a streaming payload) or base64 text (a blob inside a JSON body)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bytes:
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
        if isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise _constraint("Member must be valid base64-encoded binary data") from None
        raise _constraint("Member must be binary data")


class _Timestamp(_Field):
    """Epoch seconds (JSON body), ISO 8601 (query string) or an already parsed datetime."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dt.datetime:
        if isinstance(value, dt.datetime):
            return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                try:
                    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
                except ValueError:
                    raise _constraint("Member must be a timestamp (ISO 8601 or epoch seconds)") from None
                return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:  # 1e400 and inf overflow, nan and years past 9999 are out of range
                return dt.datetime.fromtimestamp(value, tz=dt.UTC)
            except (OverflowError, ValueError, OSError):
                raise _constraint("Member must be a timestamp between the years 1 and 9999") from None
        raise _constraint("Member must be a timestamp")


def _field(shape: botocore.model.Shape, required: bool) -> _Field:
    meta = shape.metadata
    kwargs: dict[str, Any] = {
        "required": required,
        "allow_none": False,
        "error_messages": {"required": NOT_NULL, "null": NOT_NULL},
    }
    validators: list[validate.Validator] = []
    kind = shape.type_name
    if kind == "structure":
        return fields.Nested(schema_for(shape.name), **kwargs)
    if kind == "list":
        validators.append(_Length(meta.get("min"), meta.get("max")))
        kwargs["error_messages"]["invalid"] = "Member must be a list"
        return fields.List(_field(shape.member, required=False), validate=validators, **kwargs)
    if kind == "map":
        validators.append(_Length(meta.get("min"), meta.get("max")))
        kwargs["error_messages"]["invalid"] = "Member must be a map"
        return fields.Dict(keys=_field(shape.key, False), values=_field(shape.value, False),
                           validate=validators, **kwargs)
    if kind == "string":
        if "min" in meta or "max" in meta:
            validators.append(_Length(meta.get("min"), meta.get("max")))
        if getattr(shape, "enum", None):
            validators.append(_Enum(list(shape.enum)))
        if "pattern" in meta:
            validators.append(_Pattern(meta["pattern"]))
        return _String(validate=validators, **kwargs)
    if kind == "blob":
        if "min" in meta or "max" in meta:
            validators.append(_Length(meta.get("min"), meta.get("max")))
        return _Blob(validate=validators, **kwargs)
    if kind in ("integer", "long"):
        validators.append(_Range(meta.get("min"), meta.get("max")))
        return _Integer(strict=True, validate=validators, **kwargs)
    if kind in ("float", "double"):
        validators.append(_Range(meta.get("min"), meta.get("max")))
        return _Float(validate=validators, **kwargs)
    if kind == "boolean":
        return _Boolean(**kwargs)
    if kind == "timestamp":
        return _Timestamp(**kwargs)
    raise NotImplementedError(f"shape type {kind!r} ({shape.name})")


class _Structure(marshmallow.Schema):
    """Base of the generated schemas: unknown members are ignored, as AWS does."""

    error_messages = {"type": "Member must be a structure"}

    class Meta:
        unknown = marshmallow.EXCLUDE


@cache
def schema_for(shape_name: str) -> marshmallow.Schema:
    """A marshmallow schema instance for a structure shape of the model (cached: schemas are pure)."""
    shape = service_model().shape_for(shape_name)
    required = set(shape.required_members)
    declared = {name: _field(member, name in required) for name, member in shape.members.items()}
    return _Structure.from_dict(declared, name=f"{shape_name}Schema")()


def _member_name(member: str) -> str:
    """The name AWS uses in validation messages: the lowerCamel member name (``projectName``)."""
    return member[:1].lower() + member[1:]


def _show(value: Any) -> str:
    """A value as AWS quotes it in a validation message (binary data is not echoed)."""
    if value is None:
        return "null"
    if isinstance(value, (bytes, bytearray)):
        return f"'<{len(value)} bytes of binary data>'"
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return f"'{text[:SHOWN_VALUE_CHARS]}...'" if len(text) > SHOWN_VALUE_CHARS else f"'{text}'"


def _flatten(messages: Any, data: Any, shape: botocore.model.Shape | None, path: str) -> list[str]:
    """Turn marshmallow's nested error dict into AWS's one-line-per-violation form."""
    if isinstance(messages, list):
        return [f"Value {_show(data)} at '{path}' failed to satisfy constraint: {m}" for m in messages]
    out: list[str] = []
    for key, sub in messages.items():
        if key == SCHEMA:  # the value itself is wrong (e.g. not an object)
            out += _flatten(sub, data, None, path)
        elif shape is not None and shape.type_name == "structure":
            name = _member_name(key)
            child_shape = shape.members.get(key)
            child_data = data.get(key) if isinstance(data, dict) else None
            out += _flatten(sub, child_data, child_shape, f"{path}.{name}" if path else name)
        elif shape is not None and shape.type_name == "list" and isinstance(key, int):
            child_data = data[key] if isinstance(data, list) and key < len(data) else None
            out += _flatten(sub, child_data, shape.member, f"{path}.{key + 1}.member")
        else:
            out += _flatten(sub, data, None, path)
    return out


def load_input(operation: botocore.model.OperationModel, params: dict[str, Any]) -> dict[str, Any]:
    """Validate and convert an operation's bound input; raise ValidationException on any violation."""
    shape = operation.input_shape
    if shape is None:
        return {}
    try:
        return cast(dict[str, Any], schema_for(shape.name).load(params))
    except marshmallow.ValidationError as exc:
        problems = _flatten(exc.messages, params, shape, "")
        noun = "error" if len(problems) == 1 else "errors"
        raise ValidationException(f"{len(problems)} validation {noun} detected: " + "; ".join(problems)) from None
