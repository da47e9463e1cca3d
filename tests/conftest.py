"""Shared fixtures: where the real data lives, and a place for artifacts a run keeps."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


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
