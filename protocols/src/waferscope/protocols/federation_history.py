"""The run-state files of a federated run: the contract between the trainer's ServerApp, which
writes them (``server_state.py``), and the hub, which shows round progress from them.

In a run's folder (``<run.output_dir>/<name>/`` of the server's train config):

* ``history.jsonl`` (:data:`HISTORY_FILE`): one JSON object per finished round, appended
  atomically per line: ``round`` (1, 2, ...), ``nodes`` (Flower node ids that trained),
  ``node_digests`` (node id -> SHA-256 of its data), ``train`` (aggregated node metrics),
  ``federated_eval``, ``gate`` (``gate-macro-f1``, ``gate-accuracy``), ``score`` (the selection
  metric on the gate set), ``seconds``, ``bytes_down``, ``bytes_up``, ``privacy`` (``epsilon``,
  ``delta``, ... when DP is on, else empty).
* ``summary.json`` (:data:`SUMMARY_FILE`): written when the run ends: ``rounds``,
  ``best_score``, ``best_epoch`` (round), ``initial_score``, ``strategy``, ``seconds``,
  ``privacy``.
* ``bundle/`` (:data:`BUNDLE_DIR`): the candidate engine bundle, when the run built one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from waferscope.protocols.errors import WaferscopeError

HISTORY_FILE = "history.jsonl"
SUMMARY_FILE = "summary.json"
BUNDLE_DIR = "bundle"


class FederationHistoryError(WaferscopeError):
    """A run-state file of a federated run cannot be read."""


@dataclass(frozen=True)
class RoundRow:
    """One finished round as the history file records it."""

    round: int
    nodes: list[int]
    score: float
    gate: dict[str, float]
    seconds: float
    bytes_down: int
    bytes_up: int
    train: dict[str, float] = field(default_factory=dict)
    privacy: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> RoundRow:
        return cls(
            round=int(doc["round"]),
            nodes=[int(n) for n in doc["nodes"]],
            score=float(doc["score"]),
            gate={k: float(v) for k, v in doc.get("gate", {}).items()},
            seconds=float(doc["seconds"]),
            bytes_down=int(doc["bytes_down"]),
            bytes_up=int(doc["bytes_up"]),
            train={k: float(v) for k, v in doc.get("train", {}).items()},
            privacy={k: float(v) for k, v in (doc.get("privacy") or {}).items()},
        )


def read_history(run_dir: Path) -> list[RoundRow]:
    """The finished rounds of a run (empty before the first one ends)."""
    path = run_dir / HISTORY_FILE
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(RoundRow.from_json(json.loads(line)))
        except (ValueError, KeyError, TypeError) as exc:
            raise FederationHistoryError(f"{path}:{number}: not a round record: {exc}") from None
    return rows


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """The summary of a finished run, or None while it runs."""
    path = run_dir / SUMMARY_FILE
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise FederationHistoryError(f"{path}: not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise FederationHistoryError(f"{path}: not a JSON object")
    return doc
