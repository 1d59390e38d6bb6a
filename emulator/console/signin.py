"""Console sign-in: with a credentials file, the console asks for an access key id and its secret.

A browser cannot sign requests with SigV4, so the console checks a key once, at sign-in, and keeps a
session cookie signed with a secret kept in the metadata store, so that every node of a fleet accepts
the cookies of the others (a balancer may send each request elsewhere): HttpOnly (scripts cannot read it),
SameSite=Lax (other sites' posts do not carry it) and expiring after `SESSION_HOURS`. The cookie
names a random session id that the metadata store keeps until the session signs out or expires, so
a copy of the cookie taken before signing out is worthless afterwards, on every server that shares
the store and after restarts (which sessions otherwise survive). The session also remembers a digest
of the key's secret, so changing or removing the key in the file and restarting signs its sessions
out. Failed sign-ins are throttled per key id and client address (`emulator.security.throttle`).
Without a credentials file the console is open, as before.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import math
import re
import secrets
import time
from pathlib import Path
from typing import cast

from flask import Flask, abort, current_app, g, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue

from emulator.console.blueprint import backend, blueprint, wants_json
from emulator.security.access import AccessKey, KeyRing, is_loopback
from emulator.security.throttle import MAX_FAILURES, SignInThrottle
from emulator.store.repositories import ConsoleSettings

log = logging.getLogger(__name__)
SESSION_HOURS = 8
# The console setting holding the cookie signing secret (hex); a name, not a secret.
SESSION_SECRET_SETTING = "session_secret"  # noqa: S105
# Where releases before the secret was in the store kept it, in each data dir: adopted once, then removed.
LEGACY_SECRET_FILE = "console-session.key"  # noqa: S105
# Pages a visitor who has not signed in may see: the form itself and the style sheet it uses.
_OPEN_ENDPOINTS = frozenset({"console.sign_in", "console.static"})
# A console page to return to after signing in: /console, or below it, with a query or fragment.
_CONSOLE_PAGE = re.compile(r"/console(?:[/?#][^\s\x00-\x1f\x7f-\x9f\\]*)?")


def configure(app: Flask) -> None:
    """Session cookie settings; the signing secret is the store's, shared by every server using it."""
    store, settings = app.extensions["lookout_backend"].store, app.extensions["lookout_backend"].settings
    app.secret_key = _session_secret(store.console_settings, Path(settings.data_dir) / LEGACY_SECRET_FILE)
    app.config.update(SESSION_COOKIE_NAME="lookout_console", SESSION_COOKIE_PATH="/console",
                      SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_SECURE=settings.tls_cert is not None,
                      PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=SESSION_HOURS))
    app.extensions["console_open_to_network"] = keys_of(app) is None and not is_loopback(settings.host)
    app.extensions["console_signin_throttle"] = SignInThrottle(store.signin_attempts, settings.signin_lockout_seconds)


def _session_secret(stored: ConsoleSettings, legacy: Path) -> bytes:
    """The secret session cookies are signed with, created once per metadata store: the first server
    to start sets it (nodes starting together agree on the winner). A data dir of an earlier release
    offers the secret of its file instead, so that sessions signed before the upgrade stay valid; the
    file is removed once the store holds a secret, which is from then on the only one."""
    secret = stored.get(SESSION_SECRET_SETTING)
    if secret is None:
        try:
            offered = legacy.read_bytes()
        except FileNotFoundError:
            offered = b""
        secret = stored.setdefault(SESSION_SECRET_SETTING, (offered or secrets.token_bytes(32)).hex())
        if offered and secret == offered.hex():
            log.info("console: adopted the session signing secret of %s into the metadata store", legacy)
    legacy.unlink(missing_ok=True)
    return bytes.fromhex(secret)


def keys_of(app: Flask) -> KeyRing | None:
    return app.extensions.get("lookout_keys")


def keys() -> KeyRing | None:
    return keys_of(current_app)


def _proof(key: AccessKey) -> str:
    """What the session keeps to tie it to the key's current secret (not the secret itself)."""
    signing = current_app.secret_key  # bytes, from `configure`
    signing_bytes = signing if isinstance(signing, bytes) else str(signing).encode()
    return hmac.new(signing_bytes, key.secret.encode(), hashlib.sha256).hexdigest()[:32]


def signed_in_key() -> AccessKey | None:
    """The key this browser signed in with, if its session is still valid (looked up once a request)."""
    if "console_key" not in g:
        ring = keys()
        key = ring.get(session.get("key_id", "")) if ring else None
        live = (key is not None and hmac.compare_digest(session.get("proof", ""), _proof(key))
                and backend().store.console_sessions.is_live(session.get("id", ""), key.key_id, time.time()))
        g.console_key = key if live else None
    return cast(AccessKey | None, g.console_key)


@blueprint.before_request
def require_sign_in() -> ResponseReturnValue | None:
    """With credentials configured, every console page but the sign-in form needs a session; a
    read-only key may look but not change anything."""
    if keys() is None or request.endpoint in _OPEN_ENDPOINTS:
        return None
    key = signed_in_key()
    if key is None:
        if request.method != "GET" or wants_json():
            abort(401, "Sign in to the console first.")
        return redirect(url_for("console.sign_in", next=request.full_path.rstrip("?")), code=303)
    if key.read_only and request.method == "POST" and request.endpoint != "console.sign_out":
        log.warning("console: refused %s %s from %s: access key %s is read-only", request.method, request.path,
                    request.remote_addr, key.key_id)
        abort(403, f"Access key {key.key_id} is read-only: it may look, not change anything.")
    return None


@blueprint.app_context_processor
def console_access() -> dict[str, object]:
    """What every page shows about access: who is signed in, or that the console is open to a network."""
    if keys() is not None:
        return {"signed_in_key": signed_in_key() if request.blueprint == "console" else None}
    return {"open_to_network": current_app.extensions["console_open_to_network"]}


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a console page of this server (no spaces, control characters or
    backslashes), never another site, nor a line break that would add a header of its own."""
    target = target or ""
    if _CONSOLE_PAGE.fullmatch(target) is None:
        return url_for("console.project_list")
    return target


@blueprint.route("/signin", methods=["GET", "POST"])
def sign_in() -> ResponseReturnValue:
    ring = keys()
    if ring is None:
        return redirect(url_for("console.project_list"), code=303)
    target = _safe_next(request.values.get("next"))
    if request.method == "GET":
        return render_template("signin.html", next=target, key_id="")
    key_id = request.form.get("access_key_id", "").strip()
    secret = request.form.get("secret_access_key", "")
    throttle: SignInThrottle = current_app.extensions["console_signin_throttle"]
    names = (f"access key {key_id[:128] or '(none)'}", f"address {request.remote_addr}")
    wait = throttle.wait(*names)
    if wait:  # not even checked: a guesser learns nothing while locked out
        log.warning("console: refused a sign-in for access key %s from %s: locked out for %.0f more seconds after "
                    "%d failed sign-ins", key_id or "(none)", request.remote_addr, wait, MAX_FAILURES)
        minutes = math.ceil(wait / 60)
        page = render_template("signin.html", next=target, key_id=key_id,
                               error=f"Too many failed sign-ins for this access key or from this address: try again "
                                     f"in {minutes} minute{'s' if minutes > 1 else ''}.")
        return page, 429, {"Retry-After": str(math.ceil(wait))}
    key = ring.get(key_id)
    # Compare even for an unknown id, so that timing does not tell which ids exist.
    matches = hmac.compare_digest((key.secret if key else "\x00unknown").encode(), secret.encode())
    if key is None or not matches:
        log.warning("console: failed sign-in for access key %s from %s", key_id or "(none)", request.remote_addr)
        for locked in throttle.failed(*names):
            log.warning("console: %s locked out of signing in for %.0f seconds after %d failed sign-ins", locked,
                        throttle.lockout_seconds, MAX_FAILURES)
        return render_template("signin.html", next=target, key_id=key_id,
                               error="The access key id or the secret access key is not right."), 401
    throttle.succeeded(*names)
    _end_session()
    session.permanent = True
    session.update(id=secrets.token_urlsafe(32), key_id=key.key_id, proof=_proof(key))
    now = time.time()
    backend().store.console_sessions.add(session["id"], key.key_id, now + SESSION_HOURS * 3600, now)
    log.info("console: access key %s signed in from %s", key_id, request.remote_addr)
    return redirect(target, code=303)


def _end_session() -> None:
    """Sign this browser's session out everywhere (the store forgets it) and clear its cookie."""
    if session.get("id"):
        backend().store.console_sessions.end(session["id"])
    session.clear()


@blueprint.post("/signout")
def sign_out() -> ResponseReturnValue:
    _end_session()
    return redirect(url_for("console.sign_in"), code=303)
