"""Ansible filter: a Mosquitto password-file hash ($7$, PBKDF2-HMAC-SHA512) that is the same on
every run for the same user and password, so a second apply changes nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac

ITERATIONS = 101  # what mosquitto_passwd writes


def mosquitto_passwd(password: str, user: str) -> str:
    """``$7$101$<salt>$<digest>`` with a 12-byte salt derived from the user and password."""
    salt = hmac.new(password.encode(), b"mosquitto-salt:" + user.encode(), "sha256").digest()[:12]
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, ITERATIONS)
    return f"$7${ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


class FilterModule:
    """The filters of waferscope's playbooks."""

    def filters(self) -> dict[str, object]:
        return {"mosquitto_passwd": mosquitto_passwd}
