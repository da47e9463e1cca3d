"""The edge's record of signed releases in its SQLite store: accepted versions, slots, states.

The highest version ever accepted is kept even when that release was later rolled back, so a
replayed older (or same-numbered, different) release is refused: rollback and freeze attacks
cannot take the edge back to an engine it left.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from waferscope.edge.store import Store
from waferscope.protocols.release import AcceptedRelease, VerifiedRelease


class ReleaseState(StrEnum):
    """Where a release stands on this edge."""

    SHADOW = "shadow"  # unpacked, healthy, classifying beside the active engine
    ACTIVE = "active"  # the engine whose results are kept
    LAST_KNOWN_GOOD = "last_known_good"  # the previous active one, kept for a rollback
    ROLLED_BACK = "rolled_back"  # refused by the health gate, the shadow trial or at run time
    RETIRED = "retired"  # its slot was reused


@dataclass(frozen=True, slots=True)
class ReleaseRow:
    version: int
    digest: str
    channel: str
    model_version: str
    slot: str
    state: ReleaseState
    detail: str


class ReleaseLedger:
    """Reads and writes the ``releases`` table."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def highest(self) -> AcceptedRelease | None:
        """The highest version accepted so far (and its content digest)."""
        with self._store.transaction() as conn:
            row = conn.execute(
                "SELECT version, digest FROM releases ORDER BY version DESC LIMIT 1"
            ).fetchone()
        return None if row is None else AcceptedRelease(int(row[0]), str(row[1]))

    def accept(self, release: VerifiedRelease, slot: str) -> None:
        """Record a verified release in ``slot`` (in shadow); retire what the slot held."""
        m = release.manifest
        now = time.time()
        with self._store.transaction() as conn:
            conn.execute(
                "UPDATE releases SET state = ?, updated_at = ? WHERE slot = ? AND version != ?",
                (ReleaseState.RETIRED, now, slot, release.version),
            )
            conn.execute(
                "INSERT INTO releases (version, digest, channel, model_version, slot, state,"
                " detail, accepted_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, '', ?, ?)"
                " ON CONFLICT(version) DO UPDATE SET slot = excluded.slot,"
                " state = excluded.state, detail = '', updated_at = excluded.updated_at",
                (
                    release.version,
                    release.digest,
                    m.channel,
                    m.model_version,
                    slot,
                    ReleaseState.SHADOW,
                    now,
                    now,
                ),
            )

    def set_state(self, version: int, state: ReleaseState, detail: str = "") -> None:
        with self._store.transaction() as conn:
            conn.execute(
                "UPDATE releases SET state = ?, detail = ?, updated_at = ? WHERE version = ?",
                (state, detail, time.time(), version),
            )

    def commit(self, version: int) -> None:
        """``version`` becomes active; the active one before it becomes last-known-good."""
        now = time.time()
        with self._store.transaction() as conn:
            conn.execute(
                "UPDATE releases SET state = ?, updated_at = ? WHERE state = ?",
                (ReleaseState.RETIRED, now, ReleaseState.LAST_KNOWN_GOOD),
            )
            conn.execute(
                "UPDATE releases SET state = ?, updated_at = ? WHERE state = ?",
                (ReleaseState.LAST_KNOWN_GOOD, now, ReleaseState.ACTIVE),
            )
            conn.execute(
                "UPDATE releases SET state = ?, detail = '', updated_at = ? WHERE version = ?",
                (ReleaseState.ACTIVE, now, version),
            )

    def revert(self, version: int, detail: str) -> ReleaseRow | None:
        """Roll ``version`` back; the last-known-good release (if any) is active again."""
        now = time.time()
        with self._store.transaction() as conn:
            was_active = conn.execute(
                "SELECT 1 FROM releases WHERE version = ? AND state = ?",
                (version, ReleaseState.ACTIVE),
            ).fetchone()
            conn.execute(
                "UPDATE releases SET state = ?, detail = ?, updated_at = ? WHERE version = ?",
                (ReleaseState.ROLLED_BACK, detail, now, version),
            )
            if was_active:
                conn.execute(
                    "UPDATE releases SET state = ?, updated_at = ? WHERE state = ?",
                    (ReleaseState.ACTIVE, now, ReleaseState.LAST_KNOWN_GOOD),
                )
        return self.in_state(ReleaseState.ACTIVE)

    def in_state(self, state: ReleaseState) -> ReleaseRow | None:
        with self._store.transaction() as conn:
            row = conn.execute(
                "SELECT version, digest, channel, model_version, slot, state, detail"
                " FROM releases WHERE state = ? ORDER BY version DESC LIMIT 1",
                (state,),
            ).fetchone()
        return None if row is None else _row(row)

    def first_time(self, command_id: str) -> bool:
        """Record a deploy command id; False when it was executed before (at most once)."""
        with self._store.transaction() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO deploy_commands (command_id, status, received_at)"
                " VALUES (?, 'received', ?)",
                (command_id, time.time()),
            )
            return cur.rowcount == 1

    def next_ack_sequence(self) -> int:
        with self._store.transaction() as conn:
            row = conn.execute(
                "UPDATE counters SET value = value + 1 WHERE stream = 'deploy_ack' RETURNING value"
            ).fetchone()
        return int(row[0])

    def all(self) -> list[ReleaseRow]:
        with self._store.transaction() as conn:
            rows = conn.execute(
                "SELECT version, digest, channel, model_version, slot, state, detail"
                " FROM releases ORDER BY version DESC"
            ).fetchall()
        return [_row(r) for r in rows]


def _row(r: tuple[object, ...]) -> ReleaseRow:
    return ReleaseRow(
        int(r[0]),  # type: ignore[call-overload]
        str(r[1]),
        str(r[2] or ""),
        str(r[3] or ""),
        str(r[4] or ""),
        ReleaseState(str(r[5])),
        str(r[6] or ""),
    )


def slot_path(slots_dir: Path, slot: str) -> Path:
    """The bundle folder of slot ``a`` or ``b``."""
    return slots_dir / slot / "bundle"
