"""Hub test fixtures: a fresh database on SQLite and on PostgreSQL, blob stores, a real broker."""

from __future__ import annotations

import functools
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from hub_support import MOSQUITTO, Broker
from hub_testing import add_role_users, hub_config

from waferscope.hub.blobs import DirectoryBlobStore
from waferscope.hub.db import migrate
from waferscope.hub.db.engine import Database

PG_ADMIN_URL = os.environ.get(
    "WAFERSCOPE_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _pg_reason() -> str | None:
    """Why PostgreSQL cannot be used here, or None when it can."""
    try:
        import psycopg  # noqa: F401
        from sqlalchemy import create_engine, text
    except ImportError:
        return "psycopg is not installed"
    try:
        engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # any failure to connect means "skip"
        return f"PostgreSQL not reachable at {PG_ADMIN_URL} ({type(exc).__name__})"
    return None


@functools.cache
def pg_reason() -> str | None:
    """Checked once per test session."""
    return _pg_reason()


def _create_pg_database() -> tuple[str, object]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"ws_hub_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL on each backend (PostgreSQL skipped when unreachable)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.sqlite'}"
        return
    reason = pg_reason()
    if reason:
        pytest.skip(reason)
    url, drop = _create_pg_database()
    try:
        yield url
    finally:
        drop()  # type: ignore[operator]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'hub.sqlite'}"


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    """A migrated database on each backend."""
    db = Database(db_url)
    migrate.upgrade(db.engine)
    yield db
    db.dispose()


@pytest.fixture
def sqlite_db(sqlite_url: str) -> Iterator[Database]:
    db = Database(sqlite_url)
    migrate.upgrade(db.engine)
    yield db
    db.dispose()


@pytest.fixture
def blob_dir(tmp_path: Path) -> DirectoryBlobStore:
    return DirectoryBlobStore(tmp_path / "blobs")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    if MOSQUITTO is None:
        pytest.skip("the mosquitto binary is not installed (apt-get install mosquitto)")
    b = Broker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


# --------------------------------------------------------------------------- a hub with users
@pytest.fixture
def hub(tmp_path: Path, db_url: str) -> Iterator[object]:
    """A hub (no MQTT) on each database backend, with one user per role."""
    from waferscope.hub.app import Hub

    h = Hub(hub_config(tmp_path, db_url))
    add_role_users(h)
    yield h
    h.stop()


@pytest.fixture
def sqlite_hub(tmp_path: Path) -> Iterator[object]:
    from waferscope.hub.app import Hub

    h = Hub(hub_config(tmp_path))
    add_role_users(h)
    yield h
    h.stop()
