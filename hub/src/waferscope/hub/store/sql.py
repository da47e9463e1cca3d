"""The few statements that differ between SQLite and PostgreSQL, in one place."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, func
from sqlalchemy.sql.elements import ColumnClause


def _insert(conn: Connection, table: Table) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def insert_new(
    conn: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    key: str,
) -> set[Any]:
    """Insert the rows whose ``key`` is not in the table yet; return the keys that were new.

    One statement for the whole batch (``INSERT ... ON CONFLICT DO NOTHING RETURNING key``), so
    a redelivered message is a no-op and the caller learns which rows are new.
    """
    if not rows:
        return set()
    stmt = _insert(conn, table).on_conflict_do_nothing().returning(table.c[key])
    result = conn.execute(stmt, list(rows))
    return {row[0] for row in result}


def insert_ignore(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows, silently skipping those that collide with a unique key."""
    if rows:
        conn.execute(_insert(conn, table).on_conflict_do_nothing(), list(rows))


def upsert(
    conn: Connection,
    table: Table,
    row: dict[str, Any],
    *,
    keys: Sequence[str],
    update: dict[str, Any],
    where: ColumnElement[bool] | None = None,
) -> None:
    """Insert ``row``, or update the existing row with ``update`` (optionally only ``where``)."""
    stmt = _insert(conn, table).values(**row)
    stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_=update, where=where)
    conn.execute(stmt)


def excluded(conn: Connection, table: Table) -> Any:
    """The ``excluded`` pseudo-table of an upsert (the row that was to be inserted)."""
    return _insert(conn, table).excluded


def greatest(conn: Connection, a: Any, b: Any) -> ColumnElement[Any]:
    """The larger of two values (``max(a, b)`` in SQLite, ``GREATEST`` in PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        return func.greatest(a, b)
    return func.max(a, b)


def day_bucket(dialect: str, column: ColumnClause[Any] | Any) -> ColumnElement[Any]:
    """The calendar day (UTC) of a timestamp column, as a value that groups and sorts; its text
    starts with YYYY-MM-DD on both dialects (a timestamp at midnight, or a date string)."""
    if dialect == "postgresql":
        return func.date_trunc("day", column)
    return func.date(column)
