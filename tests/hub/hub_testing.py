"""Helpers of the hub tests (imported by name: tests of other parts have their own conftest)."""

from __future__ import annotations

from pathlib import Path

JWT_SECRET = "test-secret-" + "x" * 40
PASSWORD = "correct horse battery"
ROLE_USERS = {
    "operator": "operator1",
    "reviewer": "reviewer1",
    "engineer": "engineer1",
    "admin": "admin1",
}


def hub_config(tmp_path: Path, db_url: str | None = None, **sections: object):  # type: ignore[no-untyped-def]
    from waferscope.hub.config import HubConfig

    doc: dict[str, object] = {
        "data_dir": str(tmp_path / "hub-data"),
        "mqtt": {"enabled": False},
        "auth": {"jwt_secret": JWT_SECRET},
        **sections,
    }
    if db_url:
        doc["database"] = {"url": db_url}
    return HubConfig.model_validate(doc)


def add_role_users(hub) -> None:  # type: ignore[no-untyped-def]
    from waferscope.hub.store.users import add_user

    with hub.db.session(write=True) as s:
        for role, name in ROLE_USERS.items():
            add_user(s, name, PASSWORD, role)


def bearer(hub, role: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"Authorization": f"Bearer {hub.tokens.issue(ROLE_USERS[role], role)}"}


def feed(hub, messages_: list) -> None:  # type: ignore[no-untyped-def]
    """Push encoded messages through the ingest's decode-and-commit path (no broker)."""
    from waferscope.hub.ingest.handler import Incoming
    from waferscope.protocols import messages, topics
    from waferscope.protocols.topics import TopicKind

    kinds = {
        "WaferResult": TopicKind.RESULT,
        "Alert": TopicKind.ALERT,
        "DeviceStatus": TopicKind.STATUS,
        "DeviceBirth": TopicKind.BIRTH,
    }
    items = [
        Incoming(
            topics.topic_name(kinds[m.DESCRIPTOR.name], m.device_id, site="fab3"),
            messages.encode(m),
        )
        for m in messages_
    ]
    assert hub.writer.handle(items)
