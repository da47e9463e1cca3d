"""Workspace rules: separate distributions, no cross-imports, an edge install without torch."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
PARTS = ("protocols", "edge", "hub", "trainer", "appliance")
TORCH_STACK = {"torch", "torchvision", "timm", "nvidia-cudnn-cu13", "triton"}
HUB_STACK = {"sqlalchemy", "alembic", "psycopg", "psycopg2", "psycopg2-binary", "argon2-cffi"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(dist_name: str, extras: frozenset[str] = frozenset()) -> set[str]:
    """Every distribution a distribution pulls in (its installed requirement tree).

    Optional extras are followed only where a requirement asks for them (``pkg[extra]``), or for
    the top distribution when ``extras`` names them; a plain install pulls none.
    """
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(_norm(dist_name), extras)]
    while todo:
        name, wanted = todo.pop()
        if (name, wanted) in seen:
            continue
        seen.add((name, wanted))
        try:
            reqs = distribution(name).requires or []
        except PackageNotFoundError:
            continue
        for raw in reqs:
            req = Requirement(raw)
            if req.marker is not None and not any(
                req.marker.evaluate({"extra": extra}) for extra in ("", *wanted)
            ):
                continue  # extras nobody asked for and other platforms are not pulled
            todo.append((_norm(req.name), frozenset(req.extras)))
    return {name for name, _ in seen}


def direct_requirements(dist_name: str) -> list[Requirement]:
    return [Requirement(raw) for raw in distribution(dist_name).requires or []]


def test_each_part_is_its_own_distribution() -> None:
    for part in PARTS:
        dist = distribution(f"waferscope-{part}")
        assert dist.version
        assert (REPO / part / "pyproject.toml").is_file()
        assert (REPO / part / "src" / "waferscope" / part / "__init__.py").is_file()
        # waferscope is a namespace package shared by the parts: no __init__.py at its root
        assert not (REPO / part / "src" / "waferscope" / "__init__.py").exists()


def test_edge_install_pulls_neither_torch_nor_the_hub_stack() -> None:
    edge = closure("waferscope-edge")
    assert "waferscope-protocols" in edge
    assert not edge & TORCH_STACK, edge & TORCH_STACK
    assert not edge & HUB_STACK, edge & HUB_STACK
    assert not {"waferscope-hub", "waferscope-trainer"} & edge


def test_edge_pulls_onnxruntime_through_the_protocols_inference_extra() -> None:
    edge = {_norm(r.name): r for r in direct_requirements("waferscope-edge")}
    assert "inference" in edge["waferscope-protocols"].extras
    assert "onnxruntime" not in edge  # one place says which onnxruntime: protocols' extra
    assert "onnxruntime" in closure("waferscope-edge")
    assert "onnxruntime" in closure("waferscope-protocols", frozenset({"inference"}))


def test_hub_and_protocols_do_not_pull_torch() -> None:
    assert not closure("waferscope-hub") & TORCH_STACK
    protocols = closure("waferscope-protocols")
    assert not protocols & (TORCH_STACK | HUB_STACK | {"onnxruntime", "paho-mqtt"})
    assert "torch" in closure("waferscope-trainer")  # the check above can fail: trainer does


def test_the_appliance_needs_no_torch() -> None:
    appliance = closure("waferscope-appliance")
    assert {"waferscope-edge", "waferscope-hub"} <= appliance
    assert not appliance & TORCH_STACK


def test_import_rule_edge_hub_trainer_independent() -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("import-linter is not installed (scripts/setup.sh installs it)")
    proc = subprocess.run(
        [exe, "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 kept, 0 broken" in proc.stdout


def test_modules_stay_small() -> None:
    too_big = []
    for part in PARTS:
        for path in (REPO / part / "src").rglob("*.py"):
            if "/pb/" in path.as_posix():
                continue  # generated code
            lines = path.read_text(encoding="utf-8").count("\n")
            if lines > 600:
                too_big.append(f"{path.relative_to(REPO)}: {lines} lines")
    assert not too_big, too_big


def test_no_machine_specific_paths_in_sources() -> None:
    bad = []
    for path in REPO.rglob("*"):
        if not path.is_file() or path.suffix not in {".py", ".md", ".sh", ".toml", ".proto"}:
            continue
        rel = path.relative_to(REPO).as_posix()
        if (
            rel.startswith((".venv", "benchmarks/.work", "test-artifacts", "out/"))
            or rel == Path(__file__).relative_to(REPO).as_posix()
        ):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for marker in ("/work/", "/root/", "/home/", "/opt/pypi"):
            if marker in text:
                bad.append(f"{rel}: {marker}")
    assert not bad, bad


def test_the_broker_roles_topic_lists_are_fresh() -> None:
    """The provisioned broker's ACL follows protocols/topics.py (a new topic reaches the role)."""
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_broker_acl_vars.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
