"""Time fetching a release file on loopback: BundleTransfer gRPC against HTTPS (with a resume).

    .venv/bin/python benchmarks/release_fetch.py [--mb 64] [--repeat 3]

Serves one file of random bytes (the fetchers do not open it; only its size and SHA-256 count)
from the gRPC server in ``protocols.release.transfer`` and from the loopback HTTPS test server
(``tests/support/https_release_server.py``: a CA made with ``cryptography``, Python's
``http.server``); prints a Markdown table of median wall time, MB/s and the client's CPU time for
a full download and for a resume of the second half from a ``.part`` file.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))

from https_release_server import Behaviour, ReleaseHttpsServer, make_tls  # noqa: E402

from waferscope.protocols.release import http_fetch, transfer  # noqa: E402


def measure(run: Callable[[int], object], repeat: int) -> tuple[float, float]:
    """(median wall s, median CPU s of this process: client and servers) of ``repeat`` runs."""
    walls, cpus = [], []
    for i in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        run(i)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    a = parser.parse_args()
    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        served = tmp / "served"
        served.mkdir()
        body = os.urandom(a.mb * 1024 * 1024)
        (served / "r.wsrelease").write_bytes(body)
        sha256, size = hashlib.sha256(body).hexdigest(), len(body)
        tls = make_tls(tmp / "tls")
        options = http_fetch.HttpFetchOptions(ca_file=tls.ca_file, token="bench-token-0123456789")
        behaviour = Behaviour(files={"/r": body}, token="bench-token-0123456789")

        def fresh(name: str, i: int, half: bool) -> Path:
            dest = tmp / "got" / f"{name}-{i}.wsrelease"
            dest.parent.mkdir(exist_ok=True)
            if half:
                dest.with_name(dest.name + ".part").write_bytes(body[: size // 2])
            return dest

        server, port = transfer.serve(served)
        try:
            with ReleaseHttpsServer(tls, behaviour) as srv:
                for half in (False, True):
                    what = "resume 2nd half" if half else "full"

                    def grpc_run(i: int, half: bool = half) -> Path:
                        dest = fresh(f"grpc-{half}", i, half)
                        return transfer.download(f"127.0.0.1:{port}", sha256, size, dest)

                    def https_run(i: int, half: bool = half) -> Path:
                        dest = fresh(f"https-{half}", i, half)
                        return http_fetch.download(
                            srv.url("/r"), sha256, size, dest, options=options
                        )

                    rows.append((f"gRPC BundleTransfer, {what}", *measure(grpc_run, a.repeat)))
                    rows.append((f"HTTPS (httpx, TLS), {what}", *measure(https_run, a.repeat)))
        finally:
            server.stop(0)
    print(
        f"| fetch ({a.mb} MiB file, loopback) | median s | file MiB/s | CPU s (client + server) |"
    )
    print("| --- | ---: | ---: | ---: |")
    for name, wall, cpu in rows:
        print(f"| {name} | {wall:.3f} | {a.mb / wall:.0f} | {cpu:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
