"""The audit log: logins, label changes, model actions, exports, user changes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from waferscope.hub.db.engine import utcnow
from waferscope.hub.db.schema import AuditEntry


def audit(
    session: Session,
    actor: str,
    action: str,
    target: str = "",
    detail: dict[str, Any] | None = None,
    *,
    remote_addr: str = "",
) -> AuditEntry:
    """Record one action in the caller's transaction (it commits with the change it describes)."""
    entry = AuditEntry(
        at=utcnow(),
        actor=actor[:64],
        action=action[:48],
        target=target[:255],
        detail=detail,
        remote_addr=remote_addr[:64],
    )
    session.add(entry)
    return entry


def recent_audit(
    session: Session, *, limit: int = 100, action: str | None = None
) -> list[AuditEntry]:
    stmt = select(AuditEntry)
    if action:
        stmt = stmt.where(AuditEntry.action == action)
    return list(
        session.scalars(stmt.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit))
    )
