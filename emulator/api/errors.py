"""AWS-style service errors.

Each error is raised by service code with a message a user can act on and is rendered by
`emulator.api.protocol` the way restJson1 clients parse it: the HTTP status declared by the error shape
in the service model, an ``x-amzn-ErrorType`` header and a JSON body with the shape's members.
"""
from __future__ import annotations

from typing import Any

from emulator.api.servicemodel import error_members, error_status


class ServiceError(Exception):
    """Base of all errors that reach a client. `code` names an error shape of the service model."""

    code = "InternalServerException"

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        allowed = set(error_members(self.code))
        unknown = set(fields) - allowed
        if unknown:  # a programming error: the shape would silently drop these fields
            raise TypeError(f"{self.code} has no members {sorted(unknown)}")
        self.fields = {k: v for k, v in fields.items() if v is not None}

    @property
    def status(self) -> int:
        return error_status(self.code)

    def body(self) -> dict[str, Any]:
        # botocore reads "message" or "Message"; the JS SDK reads the modeled "Message".
        return {"message": self.message, "Message": self.message, **self.fields}


class ValidationException(ServiceError):
    code = "ValidationException"


class AccessDeniedException(ServiceError):
    code = "AccessDeniedException"


class ConflictException(ServiceError):
    code = "ConflictException"

    def __init__(self, message: str, resource_id: str | None = None, resource_type: str | None = None) -> None:
        super().__init__(message, ResourceId=resource_id, ResourceType=resource_type)


class ResourceNotFoundException(ServiceError):
    code = "ResourceNotFoundException"

    def __init__(self, message: str, resource_id: str | None = None, resource_type: str | None = None) -> None:
        super().__init__(message, ResourceId=resource_id, ResourceType=resource_type)


class ServiceQuotaExceededException(ServiceError):
    code = "ServiceQuotaExceededException"

    def __init__(self, message: str, resource_id: str | None = None, resource_type: str | None = None,
                 quota_code: str | None = None) -> None:
        super().__init__(message, ResourceId=resource_id, ResourceType=resource_type,
                         QuotaCode=quota_code, ServiceCode="lookoutvision" if quota_code else None)


class ThrottlingException(ServiceError):
    code = "ThrottlingException"


class InternalServerException(ServiceError):
    code = "InternalServerException"


class CommonError(ServiceError):
    """An error every AWS JSON service may return that service models do not declare (botocore
    knows them by code): authentication failures, answered before any operation runs."""

    http_status = 403

    def __init__(self, message: str) -> None:
        Exception.__init__(self, message)
        self.message = message
        self.fields = {}

    @property
    def status(self) -> int:
        return self.http_status


class MissingAuthenticationTokenException(CommonError):
    code = "MissingAuthenticationTokenException"


class IncompleteSignatureException(CommonError):
    code = "IncompleteSignatureException"
    http_status = 400


class UnrecognizedClientException(CommonError):
    code = "UnrecognizedClientException"


class InvalidSignatureException(CommonError):
    code = "InvalidSignatureException"
