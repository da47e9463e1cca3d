#!/usr/bin/env python3
"""Build a signed waferscope edge image: one tar that installs offline on an air-gapped box.

    python firmware_images/build_image.py --key release.key --delegation release.delegation.json \
        --version 12 -o out/waferscope-edge-image-12.tar [--bundle DIR] [--wheels DIR]

The payload — the agent's wheels (protocols, edge and every dependency, built with
``pip wheel -c constraints.txt``) and the engine bundle — is signed as a waferscope release
(``image.wsrelease``: the same format, keys and rules as an engine release) and packed with
``install.sh`` and ``verify_image.py`` (stdlib + openssl) into one tar (firmware_images/README.md).
Runs with the development virtualenv (it needs waferscope-protocols for signing).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from waferscope.protocols.bundle import read_manifest
from waferscope.protocols.release import build_release, envelope, load_private

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHIPPED_BUNDLE = REPO / "edge" / "src" / "waferscope" / "edge" / "bundles" / "default"
IMAGE_SCRIPTS = ("install.sh", "verify_image.py")


def build_wheels(dest: Path) -> None:
    """The agent and all it needs, as wheels (from PyPI or pip's cache, pinned by constraints)."""
    subprocess.run(
        [
            sys.executable, "-m", "pip", "wheel", "--quiet", "-c", str(REPO / "constraints.txt"),
            "-w", str(dest), f"{REPO / 'protocols'}[inference,tracing]", str(REPO / "edge"),
        ],
        check=True,
    )  # fmt: skip


def build_image(
    out: Path,
    *,
    key: Path,
    delegation: Path,
    version: int,
    bundle: Path = SHIPPED_BUNDLE,
    wheels: Path | None = None,
    channel: str = "stable",
    days: int = 90,
) -> Path:
    """Write the image tar ``out``; ``wheels``: a folder of prebuilt wheels (else built now)."""
    with tempfile.TemporaryDirectory(prefix="waferscope-image-") as tmp:
        payload = Path(tmp) / "payload"
        (payload / "wheels").mkdir(parents=True)
        if wheels is None:
            build_wheels(payload / "wheels")
        else:
            for wheel in sorted(wheels.glob("*.whl")):
                shutil.copy2(wheel, payload / "wheels" / wheel.name)
        if not any((payload / "wheels").glob("waferscope_edge-*.whl")):
            raise SystemExit(f"build_image: no waferscope_edge wheel in {wheels or 'the build'}")
        shutil.copytree(bundle, payload / "engine")
        signed = Path(tmp) / "image.wsrelease"
        build_release(
            payload,
            signed,
            key=load_private(key),
            delegation=envelope.from_bytes(delegation.read_bytes(), str(delegation)),
            channel=channel,
            version=version,
            expires=datetime.now(UTC) + timedelta(days=days),
            model_version=read_manifest(bundle).model_version,
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        part = out.with_name(out.name + ".part")
        with tarfile.open(part, "w", format=tarfile.PAX_FORMAT) as tar:
            for name in IMAGE_SCRIPTS:
                tar.add(HERE / name, arcname=name)
            tar.add(signed, arcname="image.wsrelease")
        part.replace(out)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key", type=Path, required=True, help="release private key (PEM)")
    parser.add_argument("--delegation", type=Path, required=True, help="its delegation.json")
    parser.add_argument("--version", type=int, required=True, help="image release number")
    parser.add_argument("--out", "-o", type=Path, required=True, help="the image tar to write")
    parser.add_argument("--bundle", type=Path, default=SHIPPED_BUNDLE, help="engine bundle")
    parser.add_argument("--wheels", type=Path, help="prebuilt wheels (default: pip wheel now)")
    parser.add_argument("--channel", default="stable")
    parser.add_argument("--days", type=int, default=90, help="days until the image expires")
    a = parser.parse_args()
    build_image(
        a.out, key=a.key, delegation=a.delegation, version=a.version, bundle=a.bundle,
        wheels=a.wheels, channel=a.channel, days=a.days,
    )  # fmt: skip
    print(f"wrote {a.out} ({a.out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
