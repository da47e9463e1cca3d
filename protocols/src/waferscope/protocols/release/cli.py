"""`waferscope release keygen | sign | verify`: make keys, sign a bundle, check a release file."""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from waferscope.protocols.release import build, envelope, golden, keys, verify
from waferscope.protocols.release.errors import ReleaseError


def keygen(
    out_dir: Annotated[Path, typer.Argument(help="Folder for <name>.key and <name>.pub.")],
    name: Annotated[str, typer.Option(help="File name stem of the key pair.")] = "release",
    root_key: Annotated[
        Path | None,
        typer.Option(
            "--root-key",
            help="Certify the new key with this root private key: also writes "
            "<name>.delegation.json. Without it the pair is a root key pair.",
        ),
    ] = None,
    days: Annotated[int, typer.Option(help="Days the delegation is valid.", min=1)] = 90,
    channel: Annotated[
        list[str] | None, typer.Option(help="Channel the key may sign (repeat; none = any).")
    ] = None,
) -> None:
    """Generate an Ed25519 key pair (a root key, or a release key certified by a root key)."""
    root = keys.load_private(root_key) if root_key is not None else None
    key_path, pub_path = keys.generate(out_dir, name)
    print(f"wrote {key_path} (private, keep it secret) and {pub_path}")
    print(f"key id {keys.key_id(keys.load_public(pub_path))}")
    if root is not None:
        doc = build.delegate(
            root,
            keys.load_public(pub_path),
            expires=datetime.now(UTC) + timedelta(days=days),
            channels=channel or (),
        )
        path = out_dir / f"{name}.delegation.json"
        path.write_bytes(envelope.to_bytes(doc))
        print(f"wrote {path} (certified by root {keys.key_id(root.public_key())[:16]}…)")


def sign(
    bundle: Annotated[Path, typer.Argument(help="The engine bundle folder.")],
    key: Annotated[Path, typer.Option(help="Release private key (PEM).")],
    delegation: Annotated[Path, typer.Option(help="The key's <name>.delegation.json.")],
    version: Annotated[int, typer.Option(help="Monotonic release number.", min=1)],
    out: Annotated[Path, typer.Option("--out", "-o", help="The release file to write.")],
    channel: Annotated[str, typer.Option(help="Release channel.")] = "stable",
    days: Annotated[int, typer.Option(help="Days until the release expires.", min=1)] = 30,
    min_agent_version: Annotated[
        str, typer.Option(help="Oldest edge agent able to run it (PEP 440; empty = any).")
    ] = "",
    golden_maps: Annotated[
        list[Path] | None,
        typer.Option(
            "--golden-maps",
            help="Tester or dataset files whose first wafers become the golden set "
            "(the engine runs here, needs onnxruntime). Repeat for several files.",
        ),
    ] = None,
) -> None:
    """Sign a bundle folder as one release file (adding a golden set when asked)."""
    private = keys.load_private(key)
    try:
        doc = envelope.from_bytes(delegation.read_bytes(), str(delegation))
    except OSError as exc:
        raise ReleaseError(f"{delegation}: cannot read ({exc.strerror})") from None
    with tempfile.TemporaryDirectory(prefix="waferscope-release-") as tmp:
        source = bundle
        if golden_maps:
            source = Path(tmp) / "bundle"
            shutil.copytree(bundle, source, symlinks=True)
            _add_golden(source, golden_maps)
        manifest = build.build_release(
            source,
            out,
            key=private,
            delegation=doc,
            channel=channel,
            version=version,
            expires=datetime.now(UTC) + timedelta(days=days),
            min_agent_version=min_agent_version,
        )
    print(
        f"wrote {out}: release {manifest.version} ({manifest.channel}), "
        f"{len(manifest.files)} files, model {manifest.model_version}"
    )


def _add_golden(folder: Path, files: list[Path]) -> None:
    from itertools import chain

    from waferscope.protocols.formats import read_maps
    from waferscope.protocols.inference import OnnxRuntimeRunner, load_bundle

    inputs = golden.golden_inputs(chain.from_iterable(read_maps(f) for f in files), folder)
    runner = OnnxRuntimeRunner(load_bundle(folder).engine_path)
    try:
        golden.add_golden(folder, inputs, lambda x: runner.run(x).pattern_logits)
    finally:
        runner.close()


def verify_command(
    release: Annotated[Path, typer.Argument(help="The release file.")],
    root: Annotated[list[Path], typer.Option(help="Trusted root public key (PEM); repeat.")],
    min_version: Annotated[
        int, typer.Option(help="Refuse releases below this version.", min=0)
    ] = 0,
    agent_version: Annotated[
        str | None, typer.Option(help="Check min_agent_version against this agent version.")
    ] = None,
    extract: Annotated[
        Path | None, typer.Option(help="Also unpack the verified bundle into this new folder.")
    ] = None,
) -> None:
    """Verify a release file; print its manifest as JSON (exit status 1 on any refusal)."""
    accepted = verify.AcceptedRelease(min_version, "") if min_version else None
    done = verify.verify_release(
        release,
        keys.trusted_roots(root),
        accepted=accepted,
        agent_version=agent_version,
        extract_to=extract,
    )
    doc = json.loads(envelope.canonical_json(done.manifest))
    print(json.dumps({"verified": True, "key_id": done.key_id, "manifest": doc}, indent=2))


def register(app: typer.Typer) -> None:
    release = typer.Typer(
        name="release",
        help="Signed engine releases: keys, signing, verification.",
        no_args_is_help=True,
    )
    release.command("keygen")(keygen)
    release.command("sign")(sign)
    release.command("verify")(verify_command)
    app.add_typer(release, name="release")
