"""Keys and signed releases for the tests of every part: a root, a certified release key, and
helpers that rewrite a release file's tar members (the attacks)."""

from __future__ import annotations

import io
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sample_wafers import encoded_maps

from waferscope.protocols.bundle import read_manifest, write_manifest
from waferscope.protocols.inference import OnnxRuntimeRunner, load_bundle
from waferscope.protocols.release import build_release, delegate, generate, load_private
from waferscope.protocols.release.golden import add_golden
from waferscope.protocols.release.keys import key_id


@dataclass(frozen=True)
class Signer:
    """A root key pair on disk and a release key certified by it."""

    folder: Path
    root: Ed25519PrivateKey
    release: Ed25519PrivateKey
    delegation_days: float = 90

    @property
    def root_pub(self) -> Path:
        return self.folder / "root.pub"

    @property
    def roots(self) -> dict[str, object]:
        return {key_id(self.root.public_key()): self.root.public_key()}

    def sign(
        self,
        bundle: Path,
        out: Path,
        version: int,
        *,
        channel: str = "stable",
        days: float = 30,
        min_agent_version: str = "",
        channels: tuple[str, ...] = (),
    ) -> Path:
        doc = delegate(
            self.root,
            self.release.public_key(),
            expires=datetime.now(UTC) + timedelta(days=self.delegation_days),
            channels=channels,
        )
        build_release(
            bundle,
            out,
            key=self.release,
            delegation=doc,
            channel=channel,
            version=version,
            expires=datetime.now(UTC) + timedelta(days=days),
            min_agent_version=min_agent_version,
        )
        return out


def make_signer(folder: Path, delegation_days: float = 90) -> Signer:
    if not (folder / "root.key").exists():
        generate(folder, "root")
        generate(folder, "release")
    return Signer(
        folder,
        load_private(folder / "root.key"),
        load_private(folder / "release.key"),
        delegation_days,
    )


Member = tuple[tarfile.TarInfo, bytes]


def rewrite(path: Path, change: Callable[[list[Member]], list[Member]]) -> Path:
    """Rewrite the tar at ``path`` with ``change`` applied to its (info, data) members."""
    with tarfile.open(path, "r:") as tar:
        members = [(m, tar.extractfile(m).read() if m.isreg() else b"") for m in tar]  # type: ignore[union-attr]
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in change(members):
            if info.isreg():
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return path


def candidate(source: Path, dest: Path, val_npz: Path, model_version: str) -> Path:
    """A copy of ``source`` named ``model_version`` with a golden set from its own engine."""
    shutil.copytree(source, dest)
    manifest = read_manifest(dest)
    manifest.model_version = model_version
    write_manifest(dest, manifest)
    runner = OnnxRuntimeRunner(load_bundle(dest).engine_path)
    x, _ = encoded_maps(val_npz, 24)  # encoding v1, 64 px: what both test engines read
    assert x.shape[1:] == load_bundle(dest).encoding.shape
    add_golden(dest, x, lambda b: runner.run(b).pattern_logits)
    runner.close()
    return dest


def release_toml(keys: Signer, **settings: object) -> str:
    lines = [f'trusted_root_keys = ["{keys.root_pub}"]']
    lines += [f"{k} = {v}" for k, v in settings.items()]
    return "[release]\n" + "\n".join(lines) + "\n"
