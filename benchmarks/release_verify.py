"""Time signing and verifying a release: the shipped engine bundle, and optionally an edge image.

    .venv/bin/python benchmarks/release_verify.py [--image IMAGE.tar --root ROOT.pub] [--repeat 5]

Prints a Markdown table (median of --repeat runs): sign, verify (stream + hash), verify and
unpack, and — for an image built by firmware_images/build_image.py — the stdlib + openssl
verifier against the reference one.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from waferscope.protocols.release import (
    build_release,
    delegate,
    generate,
    load_private,
    trusted_roots,
    verify_release,
)

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "edge" / "src" / "waferscope" / "edge" / "bundles" / "default"


def median_s(run: Callable[[int], object], repeat: int) -> float:
    times = []
    for i in range(repeat):
        began = time.perf_counter()
        run(i)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path)
    parser.add_argument("--root", type=Path)
    parser.add_argument("--repeat", type=int, default=5)
    a = parser.parse_args()
    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        generate(tmp, "root")
        generate(tmp, "release")
        root, key = load_private(tmp / "root.key"), load_private(tmp / "release.key")
        expires = datetime.now(UTC) + timedelta(days=1)
        doc = delegate(root, key.public_key(), expires=expires)
        out = tmp / "r.wsrelease"

        def sign(_: int) -> object:
            return build_release(
                SHIPPED, out, key=key, delegation=doc, channel="stable", version=1, expires=expires
            )

        sign_s = median_s(sign, a.repeat)
        roots = trusted_roots([tmp / "root.pub"])
        size = out.stat().st_size / 1e6
        rows.append(("sign shipped bundle", size, sign_s))
        rows.append(("verify", size, median_s(lambda _: verify_release(out, roots), a.repeat)))
        rows.append(
            (
                "verify + unpack",
                size,
                median_s(lambda i: verify_release(out, roots, extract_to=tmp / f"x{i}"), a.repeat),
            )
        )
        if a.image and a.root:
            with tarfile.open(a.image) as tar:
                tar.extractall(tmp / "image", filter="data")
            signed = tmp / "image" / "image.wsrelease"
            isize = signed.stat().st_size / 1e6
            image_roots = trusted_roots([a.root])
            rows.append(
                ("image: verify (reference)", isize,
                 median_s(lambda _: verify_release(signed, image_roots), a.repeat))
            )  # fmt: skip
            cmd = [sys.executable, str(tmp / "image" / "verify_image.py"), "--root", str(a.root)]
            rows.append(
                ("image: verify_image.py (stdlib + openssl)", isize,
                 median_s(lambda _: subprocess.run([*cmd, str(signed)], check=True,
                                                   capture_output=True), a.repeat))
            )  # fmt: skip
    print("| step | release MB | median s |")
    print("| --- | ---: | ---: |")
    for name, mb, secs in rows:
        print(f"| {name} | {mb:.1f} | {secs:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
