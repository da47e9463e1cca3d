"""The ``[release]`` section: which roots the edge trusts, how releases are fetched, the gates."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from waferscope.protocols.release.http_fetch import HttpFetchOptions
from waferscope.protocols.release.transfer import ReleaseTransferError
from waferscope.protocols.settings import Section


class ReleaseConfig(Section):
    """Signed engine releases: trust, A/B slots, the local health gate and the shadow trial
    (docs/edge.md#engine-releases)."""

    trusted_root_keys: list[Path] = Field(
        default_factory=list,
        description="PEM files of the Ed25519 root public keys releases must chain to "
        "(`waferscope release keygen`). Empty: every release is refused.",
    )
    slots_dir: Path | None = Field(
        default=None,
        description="Folder of the A/B engine slots and downloads. Empty: <data_dir>/releases.",
    )
    hub_ca_file: Path | None = Field(
        default=None,
        description="PEM CA bundle the hub's TLS certificate must chain to for HTTPS release "
        "downloads. Empty: the system's roots.",
    )
    hub_token: str | None = Field(
        default=None,
        description="Bearer token sent with HTTPS release downloads "
        "('Authorization: Bearer <token>'; prefer hub_token_file).",
    )
    hub_token_file: Path | None = Field(
        default=None,
        description="File holding hub_token (read at each download, so it can be rotated).",
    )
    allow_plain_http: bool = Field(
        default=False,
        description="Accept http:// release locations, to a loopback host only (tests). "
        "Off: only https:// is fetched.",
    )
    download_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Connect and read timeout of one HTTPS release request.",
    )
    download_retries: int = Field(
        default=3,
        ge=0,
        le=20,
        description="Further tries (with doubling backoff from 0.5 s) after a broken "
        "connection, a timeout or a 5xx; the partial file is kept and resumed.",
    )
    max_download_bytes: int = Field(
        default=2 * 1024**3,
        gt=0,
        description="Largest release file fetched; a command announcing more is refused.",
    )
    golden_max_abs_diff: float = Field(
        default=0.5,
        gt=0,
        description="Health gate: largest difference allowed between the candidate's pattern "
        "logits and those of the golden set shipped in the release.",
    )
    golden_min_agreement: float = Field(
        default=0.95,
        ge=0,
        le=1,
        description="Health gate: share of golden wafers whose top class must match.",
    )
    latency_budget_ms: float = Field(
        default=250.0,
        gt=0,
        description="Health gate and shadow trial: mean candidate inference time per wafer.",
    )
    shadow_wafers: int = Field(
        default=50,
        ge=0,
        description="Live wafers the candidate classifies in shadow before it may take over "
        "(0: take over right after the health gate).",
    )
    shadow_max_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="End the shadow trial after this long if at least one wafer was shadowed.",
    )
    min_agreement: float = Field(
        default=0.8,
        ge=0,
        le=1,
        description="Shadow trial: share of wafers on which the candidate's pattern must match "
        "the active engine's for it to take over.",
    )
    max_shadow_errors: int = Field(
        default=0,
        ge=0,
        description="Shadow trial: candidate run-time failures tolerated before it is rolled back.",
    )

    @model_validator(mode="after")
    def _one_token(self) -> ReleaseConfig:
        if self.hub_token is not None and self.hub_token_file is not None:
            raise ValueError("set hub_token or hub_token_file, not both")
        return self

    def fetch_options(self) -> HttpFetchOptions:
        """The HTTPS download settings (reads hub_token_file; ReleaseTransferError if it cannot)."""
        token = self.hub_token
        if self.hub_token_file is not None:
            try:
                token = self.hub_token_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ReleaseTransferError(
                    f"release.hub_token_file {self.hub_token_file}: {exc.strerror or exc}"
                ) from None
        return HttpFetchOptions(
            ca_file=self.hub_ca_file,
            token=token or None,
            allow_plain_http=self.allow_plain_http,
            max_bytes=self.max_download_bytes,
            timeout_s=self.download_timeout_s,
            retries=self.download_retries,
        )

    def resolved(self, base: Path, data_dir: Path) -> ReleaseConfig:
        """A copy with relative paths taken from ``base`` and the default slots folder filled."""

        def under(p: Path) -> Path:
            p = p.expanduser()
            return p if p.is_absolute() else (base / p).resolve()

        return self.model_copy(
            update={
                "trusted_root_keys": [under(p) for p in self.trusted_root_keys],
                "hub_ca_file": under(self.hub_ca_file) if self.hub_ca_file else None,
                "hub_token_file": under(self.hub_token_file) if self.hub_token_file else None,
                "slots_dir": under(self.slots_dir) if self.slots_dir else data_dir / "releases",
            }
        )
