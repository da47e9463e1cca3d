"""MQTT credentials per edge: Mosquitto password and ACL files the hub writes.

Each edge gets its own user name (its device id) and a random password; the broker's ACL lets a
user publish only under its own device level and read only its own deploy topic, so one edge's
credentials cannot speak for another (``docs/messages.md``, access control). The hub's own user
reads every edge-to-hub topic and writes deploy commands.

Password file lines use Mosquitto's ``$7$`` format: PBKDF2-HMAC-SHA512, 101 iterations, a 12-byte
salt, base64 (what ``mosquitto_passwd`` writes), so no Mosquitto tool is needed on the hub.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from waferscope.protocols import topics

ITERATIONS = 101


def mosquitto_hash(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, ITERATIONS)
    return f"$7${ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def acl_text(hub_user: str) -> str:
    root = topics.PREFIX
    to_edge = topics.kinds_towards(topics.Direction.HUB_TO_EDGE)
    lines = [
        "# Written by 'waferscope hub edge-credentials'. Edge user name = device id.",
        f"user {hub_user}",
        f"topic read {root}/#",
        *(f"topic write {root}/+/+/{kind.value}" for kind in to_edge),
        "",
        "# every other user: an edge, confined to its own device level",
    ]
    to_hub = topics.kinds_towards(topics.Direction.EDGE_TO_HUB)
    lines += [f"pattern write {root}/+/%u/{kind.value}" for kind in to_hub]
    lines += [f"pattern read {root}/+/%u/{kind.value}" for kind in to_edge]
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(mode)
    tmp.replace(path)


def issue_edge_credentials(
    device_ids: Iterable[str], password_file: Path, acl_file: Path, *, hub_user: str
) -> dict[str, str]:
    """New passwords for ``device_ids`` (and for the hub user when it has none yet).

    Returns {user: password}; the password file keeps every other user's line as it was.
    """
    users = [topics.validate_id(d) for d in device_ids]
    existing: dict[str, str] = {}
    if password_file.is_file():
        for line in password_file.read_text(encoding="utf-8").splitlines():
            name, sep, value = line.partition(":")
            if sep and name:
                existing[name] = value
    if hub_user not in existing:
        users.append(hub_user)
    issued = {}
    for user in users:
        password = secrets.token_urlsafe(18)
        existing[user] = mosquitto_hash(password)
        issued[user] = password
    password_file.parent.mkdir(parents=True, exist_ok=True)
    _write(password_file, "".join(f"{u}:{h}\n" for u, h in sorted(existing.items())), 0o600)
    _write(acl_file, acl_text(hub_user), 0o644)
    return issued
