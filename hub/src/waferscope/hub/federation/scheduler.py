"""Starts a federated run when enough new labels exist; hands finished runs' candidates on."""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime

from sqlalchemy import func, select

from waferscope.hub.db.engine import Database
from waferscope.hub.db.schema import Label
from waferscope.hub.federation.control import FederationControl

log = logging.getLogger("waferscope.hub.federation")


class RoundScheduler:
    """Every ``check_interval_s``: finish an ended run, count labels since the last run's start
    (kept in ``<state_dir>/schedule.json``), submit a run when there are ``min_new_labels``."""

    def __init__(self, db: Database, control: FederationControl) -> None:
        self.db = db
        self.control = control
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def _state(self) -> dict[str, str]:
        path = self.control.state_dir / "schedule.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    def new_labels(self) -> int:
        since = self._state.get("last_run_at")
        query = select(func.count()).select_from(Label)
        if since:
            query = query.where(Label.labelled_at > datetime.fromisoformat(since))
        with self.db.session() as s:
            return int(s.scalar(query) or 0)

    def check(self) -> bool:
        """One pass; True when a run was submitted."""
        self.control.finish()
        fresh = self.new_labels()
        if not self.control.should_start(fresh):
            return False
        handle = self.control.submit(fresh)
        started = handle.started_at.replace(tzinfo=None).isoformat()
        path = self.control.state_dir / "schedule.json"
        path.write_text(json.dumps({"last_run_at": started}) + "\n", encoding="utf-8")
        log.info("federated run started: %d new labels", fresh)
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.control.config.check_interval_s):
            try:
                self.check()
            except Exception:
                log.exception("federation scheduling failed")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hub-federation", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
