"""Users, roles and tokens: argon2id password hashes, HS256 JWT bearer tokens, permissions.

Four roles, each with the permissions of the one before it plus its own:

========  ==========================================================================
operator  view results, wafers, trends, devices and alerts; acknowledge alerts
reviewer  + review (confirm / correct labels), upload wafer files, SHAP explanations
engineer  + export labels, model registry actions, releases and rollouts, training jobs (the
          train-worker's account), read the audit log and dead letters
admin     + manage users
========  ==========================================================================

Every route declares the one permission it needs (``opt={"permission": ...}``) and a single
guard checks it; a route that declares none is refused unless it is marked public, so a new route
cannot be open by mistake (``tests/hub/test_api_auth.py`` walks every route for every role).
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from waferscope.protocols.errors import WaferscopeError

ROLES: Final = ("operator", "reviewer", "engineer", "admin")

VIEW: Final = "view"
ACK_ALERTS: Final = "alerts.ack"
REVIEW: Final = "review"
UPLOAD: Final = "upload"
EXPLAIN: Final = "explain"
EXPORT: Final = "export"
MODELS: Final = "models"
RELEASES: Final = "releases"
AUDIT: Final = "audit.read"
DEAD_LETTERS: Final = "deadletters.read"
USERS: Final = "users"
TRAINING: Final = "training"

_OWN: Final = {
    "operator": {VIEW, ACK_ALERTS},
    "reviewer": {REVIEW, UPLOAD, EXPLAIN},
    "engineer": {EXPORT, MODELS, RELEASES, AUDIT, DEAD_LETTERS, TRAINING},
    "admin": {USERS},
}


def _cumulative() -> dict[str, frozenset[str]]:
    out: dict[str, frozenset[str]] = {}
    acc: set[str] = set()
    for role in ROLES:
        acc |= _OWN[role]
        out[role] = frozenset(acc)
    return out


ROLE_PERMISSIONS: Final = _cumulative()
PERMISSIONS: Final = ROLE_PERMISSIONS["admin"]


def allowed(role: str, permission: str) -> bool:
    return permission in ROLE_PERMISSIONS.get(role, frozenset())


class AuthError(WaferscopeError):
    """Bad credentials or a bad token."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is calling (from a verified token)."""

    username: str
    role: str
    via: str  # "bearer" | "cookie"

    def can(self, permission: str) -> bool:
        return allowed(self.role, permission)


# --------------------------------------------------------------------------- passwords
_HASHER: Final = PasswordHasher()  # argon2id, the library's current recommended parameters
MIN_PASSWORD: Final = 8


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AuthError(f"a password needs at least {MIN_PASSWORD} characters")
    return _HASHER.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    try:
        return _HASHER.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True


# A hash to verify against when the user does not exist, so the answer takes as long.
_DUMMY_HASH: Final = _HASHER.hash(secrets.token_urlsafe(16))


def burn_verification_time(password: str) -> None:
    verify_password(_DUMMY_HASH, password)


# --------------------------------------------------------------------------- tokens
ALGORITHM: Final = "HS256"
ISSUER: Final = "waferscope-hub"


class TokenIssuer:
    """Signs and checks the hub's JWTs (HS256 with a key shared by the hub's processes)."""

    def __init__(self, secret: str, ttl_s: int) -> None:
        if len(secret) < 32:
            raise AuthError("the JWT secret needs at least 32 characters")
        self._secret = secret
        self.ttl_s = ttl_s

    def issue(self, username: str, role: str, *, ttl_s: int | None = None) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": username,
            "role": role,
            "iat": now,
            "exp": now + (ttl_s or self.ttl_s),
            "jti": secrets.token_hex(8),
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> tuple[str, str]:
        """(username, role) of a valid token; :class:`AuthError` otherwise."""
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "iss"]},
            )
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        role = claims.get("role")
        if role not in ROLES:
            raise AuthError("invalid token: unknown role")
        return str(claims["sub"]), str(role)


def load_or_create_secret(path: Path) -> str:
    """The JWT key kept in a file (created with 0600 permissions on first use)."""
    if path.is_file():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    tmp.write_text(secret + "\n", encoding="utf-8")
    tmp.chmod(0o600)
    try:
        os.link(tmp, path)  # fails if another process won the race: keep its key
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text(encoding="utf-8").strip()
