"""The one gate every request passes before a front end (the API, S3, the console) sees it.

Three checks: where the request comes from (`emulator.security.crosssite`: the Host it names, a
browser's cross-site writes), with a credentials file who signed it (`emulator.security.access`: SigV4
and the key's permissions), then whether this node has the role that serves it (``serve --role``:
DetectAnomalies needs ``inference``; every other API operation, the console and the embedded S3 need
``api``), so that only a client allowed in learns the node's roles. A refusal is answered in the
error form of the front end the request was meant for and logged with the access key id and the
client's address (never a secret or a signature). Console pages are not signed by browsers: with a
credentials file, the console checks its own sign-in session (`emulator.console.signin`).
"""
from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from emulator.api.errors import (
    AccessDeniedException,
    IncompleteSignatureException,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    ServiceError,
    UnrecognizedClientException,
)
from emulator.api.protocol import render_error
from emulator.api.servicemodel import find_route
from emulator.config import API, INFERENCE, ROLES
from emulator.s3.frontend import s3_error
from emulator.security.access import AccessKey, KeyRing, Refusal, verify
from emulator.security.crosssite import SiteGuard
from emulator.wsgi import raw_path

log = logging.getLogger(__name__)
CONSOLE_PATH = "/console"

# How each refusal reads to a Lookout for Vision client (restJson1) and to an S3 client (XML).
_API_ERRORS: dict[str, type[ServiceError]] = {
    "missing": MissingAuthenticationTokenException, "malformed": IncompleteSignatureException,
    "unknown_key": UnrecognizedClientException, "signature": InvalidSignatureException,
    "skewed": InvalidSignatureException, "expired": InvalidSignatureException,
    "payload": InvalidSignatureException, "denied": AccessDeniedException, "cross_site": AccessDeniedException,
    "role": AccessDeniedException}
_S3_ERRORS = {
    "missing": ("403 Forbidden", "AccessDenied"), "malformed": ("400 Bad Request", "AuthorizationHeaderMalformed"),
    "unknown_key": ("403 Forbidden", "InvalidAccessKeyId"), "signature": ("403 Forbidden", "SignatureDoesNotMatch"),
    "skewed": ("403 Forbidden", "RequestTimeTooSkewed"), "expired": ("403 Forbidden", "AccessDenied"),
    "payload": ("400 Bad Request", "XAmzContentSHA256Mismatch"), "denied": ("403 Forbidden", "AccessDenied"),
    "cross_site": ("403 Forbidden", "AccessDenied"), "role": ("403 Forbidden", "AccessDenied")}
DETECT_ANOMALIES = "DetectAnomalies"  # the one operation of the inference role


def is_console_request(environ: dict[str, Any]) -> bool:
    path: str = environ.get("PATH_INFO", "")
    return path == CONSOLE_PATH or path.startswith(CONSOLE_PATH + "/")


class RequestGate:
    """`refusal` says why a request may not proceed (None: it may); `refuse` answers it."""

    def __init__(self, site: SiteGuard, keys: KeyRing | None, roles: tuple[str, ...] = ROLES) -> None:
        self.site = site
        self.keys = keys
        self.roles = roles
        self._all_roles = set(roles) == set(ROLES)  # the default: nothing to check

    def refusal(self, environ: dict[str, Any], s3: bool) -> Refusal | None:
        """Why a request for a front end may not proceed: `access_refusal`, then this node's roles."""
        refusal = self.access_refusal(environ, s3)
        if refusal is None and not self._all_roles:
            refusal = self._role_refusal(environ, s3)
        return refusal

    def access_refusal(self, environ: dict[str, Any], s3: bool) -> Refusal | None:
        """Why the sender may not make this request (where it comes from, its signature), whichever
        node it reaches (/metrics is checked with this alone: every node serves it)."""
        cross_site = self.site.refusal(environ)
        if cross_site is not None:
            return Refusal("cross_site", cross_site)
        if self.keys is None or (not s3 and is_console_request(environ)):
            return None
        try:
            _authorize(verify(environ, self.keys, "s3" if s3 else "lookoutvision"), environ, s3)
        except Refusal as refusal:
            return refusal
        return None

    def _role_refusal(self, environ: dict[str, Any], s3: bool) -> Refusal | None:
        """Refusal('role') for a request this node's roles do not serve, saying which role does."""
        if s3:
            needed, what = API, "the embedded S3"
        elif is_console_request(environ):
            needed, what = API, "the web console"
        else:
            found = find_route(environ["REQUEST_METHOD"], raw_path(environ))
            operation = found[0].name if found is not None else None
            needed = INFERENCE if operation == DETECT_ANOMALIES else API
            what = f"lookoutvision:{operation}" if operation else "this API request"
        if needed in self.roles:
            return None
        return Refusal("role", f"This node (roles: {','.join(self.roles)}) does not serve {what}: send it to a "
                               f"node with the {needed} role (serve --role), for instance through the fleet's "
                               "load balancer.")

    @staticmethod
    def refuse(environ: dict[str, Any], start_response: Callable[..., Any], refusal: Refusal,
               s3: bool) -> Iterable[bytes]:
        log.warning("refused %s %s from %s: %s (access key %s)", environ["REQUEST_METHOD"], raw_path(environ),
                    environ.get("REMOTE_ADDR", "?"), refusal.reason, refusal.key_id or "none")
        if s3:
            status, code = _S3_ERRORS[refusal.reason]
            if refusal.reason == "malformed" and not environ.get("HTTP_AUTHORIZATION"):
                code = "AuthorizationQueryParametersError"  # a presigned URL's parameters
            return s3_error(environ, start_response, status, code, refusal.message)
        error = _API_ERRORS[refusal.reason](refusal.message)
        return render_error(error, str(uuid.uuid4()))(environ, start_response)


def _authorize(key: AccessKey, environ: dict[str, Any], s3: bool) -> None:
    """Refusal('denied') when a read-only key asks for more than reading."""
    if s3:
        if not key.may_send(environ["REQUEST_METHOD"]):
            raise Refusal("denied", f"Access Denied: access key {key.key_id} is read-only.", key.key_id)
        return
    found = find_route(environ["REQUEST_METHOD"], raw_path(environ))
    if found is not None and not key.may_call(found[0].name):
        raise Refusal("denied", f"User: {key.key_id} is not authorized to perform: lookoutvision:{found[0].name} "
                                "(the key is read-only)", key.key_id)
