"""Who may swap the engine through the panel (``POST /api/model/reload``), and with which bundle.

The panel has no login: its pages, its read-only API and the alert acknowledgement are for
anyone who can reach it. Loading a bundle is not:

* the bundle folder must be an absolute path under an allowed folder: the one holding the
  configured bundle (``model.path``, else the bundle shipped with the agent) or one of
  ``panel.reload_dirs``; symbolic links and ``..`` are resolved before the check;
* with ``panel.api_token`` or ``panel.api_token_file`` set, the request must carry
  ``Authorization: Bearer <token>`` (401 otherwise);
* a panel listening on an address other than loopback (``0.0.0.0``, a LAN address, a host name)
  with no token configured refuses every reload (403): anyone on the network could otherwise
  make the agent load a bundle of their choosing.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from waferscope.edge.bundles import default_bundle_path
from waferscope.edge.config import EdgeConfig

BEARER = "bearer "


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address; any other name or address counts as the network."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


class ReloadRefusedError(Exception):
    """A reload request this panel does not carry out: the reason and the HTTP status."""

    def __init__(self, reason: str, *, status_code: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code


@dataclass(frozen=True)
class ReloadGuard:
    """The rules of one panel, from its configuration (resolved paths)."""

    allowed: tuple[Path, ...]
    token: str | None
    disabled: str | None  # why every reload is refused, or None

    @classmethod
    def from_config(cls, config: EdgeConfig) -> ReloadGuard:
        """Reads ``panel.api_token_file`` (OSError, naming the option, when it cannot)."""
        panel = config.panel
        token = panel.api_token
        disabled = None
        if panel.api_token_file is not None:
            try:
                token = panel.api_token_file.read_text(encoding="utf-8").strip() or None
            except OSError as exc:
                raise OSError(
                    exc.errno, f"panel.api_token_file: cannot read {panel.api_token_file}"
                ) from None
            if token is None:
                disabled = (
                    f"model reload is disabled: panel.api_token_file {panel.api_token_file} "
                    "is empty"
                )
        if token is None and disabled is None and not is_loopback(panel.host):
            disabled = (
                f"model reload is disabled: the panel listens on {panel.host}, not only on this "
                "machine, and no panel.api_token or panel.api_token_file is configured"
            )
        configured = config.model.path or default_bundle_path()
        allowed: list[Path] = []
        for folder in (configured.resolve().parent, *(d.resolve() for d in panel.reload_dirs)):
            if folder not in allowed:
                allowed.append(folder)
        return cls(tuple(allowed), token, disabled)

    def check(self, authorization: str | None, path: str | None, current: Path) -> Path:
        """The bundle folder to load (``current`` when no path is given), or ReloadRefusedError."""
        if self.disabled:
            raise ReloadRefusedError(self.disabled, status_code=403)
        if self.token is not None:
            given = authorization or ""
            sent = given[len(BEARER) :].strip() if given.lower().startswith(BEARER) else ""
            if not hmac.compare_digest(sent.encode(), self.token.encode()):
                raise ReloadRefusedError(
                    "send the panel's API token as 'Authorization: Bearer <token>'",
                    status_code=401,
                )
        folder = Path(path).expanduser() if path else current
        if not folder.is_absolute():
            raise ReloadRefusedError(
                f"the bundle folder must be an absolute path, not {path!r}", status_code=400
            )
        real = folder.resolve()
        if not any(real == a or real.is_relative_to(a) for a in self.allowed):
            raise ReloadRefusedError(
                f"bundle folder {folder} is not under an allowed folder "
                f"({', '.join(str(a) for a in self.allowed)}); add its folder to "
                "panel.reload_dirs",
                status_code=403,
            )
        return real
