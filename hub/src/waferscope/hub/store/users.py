"""Local users of the UI and API."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from waferscope.hub.auth import (
    ROLES,
    AuthError,
    burn_verification_time,
    hash_password,
    needs_rehash,
    verify_password,
)
from waferscope.hub.db.engine import utcnow
from waferscope.hub.db.schema import User
from waferscope.hub.store.audit import audit
from waferscope.protocols.errors import TopicError
from waferscope.protocols.topics import validate_id


def add_user(
    session: Session, username: str, password: str, role: str, *, actor: str = "cli"
) -> User:
    if role not in ROLES:
        raise AuthError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
    try:
        validate_id(username, "user name")
    except TopicError as exc:
        raise AuthError(str(exc)) from None
    if session.scalar(select(User).where(User.username == username)) is not None:
        raise AuthError(f"user {username!r} exists already")
    user = User(
        username=username,
        password_hash=hash_password(password),
        role=role,
        active=True,
        created_at=utcnow(),
    )
    session.add(user)
    audit(session, actor, "user.add", username, {"role": role})
    return user


def set_password(session: Session, username: str, password: str, *, actor: str = "cli") -> None:
    user = get_user(session, username)
    if user is None:
        raise AuthError(f"no user {username!r}")
    user.password_hash = hash_password(password)
    audit(session, actor, "user.password", username)


def set_role(session: Session, username: str, role: str, *, actor: str) -> None:
    if role not in ROLES:
        raise AuthError(f"unknown role {role!r}")
    user = get_user(session, username)
    if user is None:
        raise AuthError(f"no user {username!r}")
    before = user.role
    user.role = role
    audit(session, actor, "user.role", username, {"before": before, "after": role})


def set_active(session: Session, username: str, active: bool, *, actor: str) -> None:
    user = get_user(session, username)
    if user is None:
        raise AuthError(f"no user {username!r}")
    user.active = active
    audit(session, actor, "user.enable" if active else "user.disable", username)


def get_user(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def authenticate(
    session: Session, username: str, password: str, *, remote_addr: str = ""
) -> User | None:
    """The user when the password matches (and the account is active); audits the attempt."""
    user = get_user(session, username)
    if user is None or not user.active:
        burn_verification_time(password)
        audit(session, username or "?", "login.failed", username, remote_addr=remote_addr)
        return None
    if not verify_password(user.password_hash, password):
        audit(session, username, "login.failed", username, remote_addr=remote_addr)
        return None
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login = utcnow()
    audit(session, username, "login", username, remote_addr=remote_addr)
    return user
