"""Generated documentation stays fresh, and the troubleshooting generator leaves nothing out.

docs/troubleshooting.md is written by scripts/gen_troubleshooting.py from the error classes,
outcome codes and statuses in the code (`just docs`); like docs/edge-config.md and
docs/hub-config.md, the committed page must be what the generator writes now.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
GENERATOR = REPO / "scripts" / "gen_troubleshooting.py"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_troubleshooting", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def test_troubleshooting_page_is_fresh() -> None:
    proc = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, (
        "docs/troubleshooting.md is stale or an error has no entry; run `just docs`:\n"
        + proc.stderr
    )


def test_every_error_class_code_and_status_is_on_the_page() -> None:
    gen = _generator()
    found, problems = gen.discover(REPO)
    assert not problems + gen.check(found)
    assert "protocols.FormatError" in found.classes
    assert "appliance.ApplianceError" in found.classes
    assert {"format_error", "duplicate", "queue_full", "too_large", "invalid_wafer"} <= set(
        found.codes
    )
    page = (REPO / "docs" / "troubleshooting.md").read_text(encoding="utf-8")
    for cls in found.classes.values():
        assert f"`{cls.name}`" in page
    for code in found.codes:
        assert f"### `{code}`" in page
    for status in found.submit_statuses:
        assert f"`{status}`" in page


def test_an_undocumented_error_class_or_code_fails_the_generator(tmp_path: Path) -> None:
    gen = _generator()
    edge = tmp_path / "edge" / "src" / "waferscope" / "edge"
    edge.mkdir(parents=True)
    (edge / "surprise.py").write_text(
        "class SurpriseError(Exception):\n    pass\n", encoding="utf-8"
    )
    (edge / "worker.py").write_text(
        'def f(JobOutcome):\n    return JobOutcome("rejected", "brand_new_code", "why")\n',
        encoding="utf-8",
    )
    problems = "\n".join(gen.iter_problems(tmp_path))
    assert "SurpriseError has no entry" in problems
    assert "'brand_new_code' has no entry" in problems


@pytest.mark.parametrize(
    "page",
    [
        "README.md",
        "docs/architecture.md",
        "docs/configuration.md",
        "docs/demo.md",
        "docs/operator-guide.md",
        "docs/reviewer-guide.md",
        "docs/troubleshooting.md",
    ],
)
def test_relative_links_resolve(page: str) -> None:
    path = REPO / page
    text = path.read_text(encoding="utf-8")
    broken = [
        target
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
        if "://" not in target and not (path.parent / target).exists()
    ]
    assert not broken, f"{page}: links to missing files {broken}"
