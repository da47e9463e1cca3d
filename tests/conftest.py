"""Shared fixtures: where the real data lives, a place for artifacts a run keeps, and the
tiny test engine bundle (built once with torch, shared by test workers and runs).

``tests/support`` (helpers any part's tests may import: ``sample_wafers``, ``tiny_bundle``) is
put on ``sys.path`` here.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests" / "support"))


def data_root() -> Path:
    """The real-data folder: $WAFER_DATA_DIR, else ../shared/data next to the checkout."""
    env = os.environ.get("WAFER_DATA_DIR")
    return Path(env) if env else (REPO_ROOT.parent / "shared" / "data")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    root = data_root()
    if not (root / "README.md").is_file():
        pytest.skip(f"real data not found at {root} (set WAFER_DATA_DIR)")
    return root


@pytest.fixture(scope="session")
def tester_dir(data_dir: Path) -> Path:
    return data_dir / "tester"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Files a test run keeps for people to look at (pictures, screenshots)."""
    out = REPO_ROOT / "test-artifacts"
    out.mkdir(exist_ok=True)
    return out


def cache_root() -> Path:
    """Where built test artifacts (the tiny bundle) are cached across runs."""
    return Path(
        os.environ.get(
            "WAFERSCOPE_TEST_CACHE", Path(tempfile.gettempdir()) / "waferscope-test-cache"
        )
    )


@pytest.fixture(scope="session")
def val_npz(data_dir: Path) -> Path:
    return data_dir / "wm811k" / "val.npz"


@pytest.fixture(scope="session")
def built_bundle(val_npz: Path) -> tuple[Path, Path]:
    """(bundle folder, torch state-dict file) of the tiny test model; read-only, shared."""
    pytest.importorskip(
        "torch", reason="the test bundle is built with torch (a trainer dependency)"
    )
    import tiny_bundle

    return tiny_bundle.cached_bundle(val_npz, cache_root())


@pytest.fixture(scope="session")
def bundle_dir(built_bundle: tuple[Path, Path]) -> Path:
    return built_bundle[0]


@pytest.fixture
def bundle_copy(bundle_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the bundle a test may change."""
    target = tmp_path / "bundle"
    shutil.copytree(bundle_dir, target)
    return target
