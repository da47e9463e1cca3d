"""Operator login of the panel: a scrypt-hashed token, signed session cookies, CSRF tokens.

With ``panel.auth.operator_token_hash`` set, every state-changing request (acknowledging an
alert, by form or API) needs either ``Authorization: Bearer <operator token>`` or a session
from the login form. A session is a cookie (``HttpOnly``, ``SameSite=Strict``) holding the
operator's name, its expiry and an HMAC under a key drawn when the panel starts (a restart ends
every session); a form post must also carry the session's CSRF token, a JSON post with the
cookie the ``X-CSRF-Token`` header. Read-only pages stay open unless ``panel.read_only_open``
is false. Loading a bundle keeps its own token (``access.py``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from waferscope.protocols.errors import WaferscopeError

if TYPE_CHECKING:
    from waferscope.edge.config import PanelConfig

COOKIE: Final = "waferscope_panel"
CSRF_HEADER: Final = "x-csrf-token"
SCHEME: Final = "scrypt"
# scrypt cost: 16 MiB and ~0.15 s per check on a loaded 2-core x86 (benchmarks/README.md)
N, R, P = 2**14, 8, 1


class TokenHashError(WaferscopeError, ValueError):
    """``panel.auth.operator_token_hash`` is not a hash this module wrote (a config error)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_token(token: str, *, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$salt$hash`` of an operator token (what goes into the configuration)."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(token.encode(), salt=salt, n=N, r=R, p=P, dklen=32)
    return f"{SCHEME}${N}${R}${P}${_b64(salt)}${_b64(digest)}"


def parse_hash(encoded: str) -> tuple[int, int, int, bytes, bytes]:
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        raise TokenHashError(
            "expected 'scrypt$N$r$p$salt$hash' (print one with 'waferscope edge panel-token-hash')"
        )
    try:
        n, r, p = (int(x) for x in parts[1:4])
        salt, digest = _unb64(parts[4]), _unb64(parts[5])
    except ValueError as exc:
        raise TokenHashError(f"unreadable scrypt parameters ({exc})") from None
    if n < 2**10 or n & (n - 1) or not 1 <= r <= 64 or not 1 <= p <= 16 or len(digest) < 16:
        raise TokenHashError("scrypt parameters out of range (N a power of two >= 1024)")
    return n, r, p, salt, digest


def verify_token(token: str, encoded: str) -> bool:
    n, r, p, salt, digest = parse_hash(encoded)
    got = hashlib.scrypt(
        token.encode(), salt=salt, n=n, r=r, p=p, dklen=len(digest), maxmem=256 * 1024 * 1024
    )
    return hmac.compare_digest(got, digest)


@dataclass
class OperatorAuth:
    """The login rules of one panel; ``required`` False: writes are open (no hash configured)."""

    token_hash: str | None
    read_only_open: bool
    session_s: float
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    @classmethod
    def from_config(cls, panel: PanelConfig) -> OperatorAuth:
        token_hash = panel.auth.operator_token_hash
        if token_hash is not None:
            parse_hash(token_hash)
        return cls(token_hash, panel.read_only_open, panel.auth.session_hours * 3600)

    @property
    def required(self) -> bool:
        return self.token_hash is not None

    def _sign(self, text: str) -> str:
        return _b64(hmac.new(self.key, text.encode(), hashlib.sha256).digest())

    def bearer_ok(self, authorization: str | None) -> bool:
        scheme, _, token = (authorization or "").partition(" ")
        if self.token_hash is None or scheme.lower() != "bearer" or not token.strip():
            return False
        return verify_token(token.strip(), self.token_hash)

    def login(self, name: str, token: str) -> str | None:
        """A session cookie value for ``name``, or None when the token is wrong."""
        if self.token_hash is None or not verify_token(token, self.token_hash):
            return None
        expires = int(time.time() + self.session_s)
        body = f"{_b64(name.encode())}.{expires}"
        return f"{body}.{self._sign(body)}"

    def operator(self, cookie: str | None) -> str | None:
        """The logged-in operator's name from a session cookie, or None (absent, forged, old)."""
        if not cookie or cookie.count(".") != 2:
            return None
        name64, expires, sig = cookie.split(".")
        if not hmac.compare_digest(sig, self._sign(f"{name64}.{expires}")):
            return None
        try:
            if int(expires) < time.time():
                return None
            return _unb64(name64).decode()
        except (ValueError, UnicodeDecodeError):
            return None

    def csrf(self, cookie: str | None) -> str:
        """The CSRF token of a session ('' without one)."""
        return self._sign(f"csrf:{cookie}") if cookie else ""

    def csrf_ok(self, cookie: str | None, sent: str | None) -> bool:
        return bool(cookie and sent) and hmac.compare_digest(self.csrf(cookie), sent or "")
