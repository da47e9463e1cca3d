"""The hot folder: testers drop files into a directory; each is processed exactly once.

When is a file complete? (documented in docs/operator-guide.md)

- **Rename-in** (recommended): the tester writes ``name.part`` (or any ignored suffix, or a
  dot-file, or a file in another folder of the same file system) and renames it into place when
  done. A file renamed into the folder is taken at once (inotify ``IN_MOVED_TO`` on Linux).
- **Write in place**: a file is taken when its modification time is at least ``settle_s`` old
  (its size and time have stopped changing).

Files with an ignored suffix and dot-files are never taken. Each taken file is read once,
identified by the SHA-256 of its bytes, and processed through the worker. Its results and the
file's record are committed in one transaction; then the file moves to ``done/`` (or, with a
``<name>.reason.txt``, to ``rejected/``). After a crash, a file still in the folder whose record
exists is only moved (never processed twice); one without a record is processed again (its
results were never committed). A file whose bytes were already processed and moved earlier goes
to ``rejected/`` as a duplicate. A file that would collide with a name in ``done/`` or
``rejected/`` gets the first characters of its digest appended.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import shutil
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from waferscope.edge.config import HotFolderConfig
from waferscope.edge.folder_events import FolderEvents
from waferscope.edge.jobs import IngestJob, JobOutcome, JobStatus
from waferscope.edge.store import FileRecord, Store
from waferscope.edge.worker import Worker

log = logging.getLogger(__name__)


class HotFolder:
    def __init__(
        self, config: HotFolderConfig, worker: Worker, store: Store, tester_id: str | None = None
    ) -> None:
        if not (config.path and config.done_dir and config.rejected_dir):
            raise ValueError("hot folder paths are unset: resolve() the config first")
        self.config = config
        self.incoming: Path = config.path
        self.done: Path = config.done_dir
        self.rejected: Path = config.rejected_dir
        self.worker = worker
        self.store = store
        self.tester_id = tester_id
        self._taken: set[str] = set()  # names handed to the worker and not finished
        self._renamed: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="hot-folder", daemon=True)
        self._events: FolderEvents | None = None

    def start(self) -> None:
        for folder in (self.incoming, self.done, self.rejected):
            folder.mkdir(parents=True, exist_ok=True)
        self._events = FolderEvents(self.incoming)
        log.info("watching %s (%s)", self.incoming, "inotify" if self._events.native else "polling")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if self._events is not None:
            self._events.close()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._taken)

    # ------------------------------------------------------------------ scanning
    def _loop(self) -> None:
        assert self._events is not None
        next_scan = 0.0
        while not self._stop.is_set():
            renamed, changed = self._events.wait(self.config.poll_interval_s)
            self._renamed |= renamed
            now = time.monotonic()
            if changed or now >= next_scan:
                try:
                    self.scan()
                except Exception:
                    log.exception("scanning %s failed", self.incoming)
                next_scan = now + self.config.poll_interval_s

    def _ignored(self, name: str) -> bool:
        return (
            name.startswith(".")
            or name.endswith(".reason.txt")
            or any(name.endswith(s) for s in self.config.ignore_suffixes)
        )

    def scan(self) -> int:
        """Hand every complete, not yet taken file to the worker; return how many."""
        handed = 0
        try:
            entries = sorted(os.scandir(self.incoming), key=lambda e: e.name)
        except FileNotFoundError:
            self.incoming.mkdir(parents=True, exist_ok=True)
            return 0
        now = time.time()
        for entry in entries:
            if self._stop.is_set() or not self.worker.accepting:
                break
            name = entry.name
            with self._lock:
                if name in self._taken:
                    continue
            if self._ignored(name) or not entry.is_file(follow_symlinks=False):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if name not in self._renamed and now - st.st_mtime < self.config.settle_s:
                continue  # still being written (or just closed): wait until it settles
            self._renamed.discard(name)
            if self._take(Path(entry.path), st.st_size):
                handed += 1
        return handed

    def _take(self, path: Path, size: int) -> bool:
        name = path.name
        if size > self.config.max_file_bytes:
            self._reject_unread(path, size)
            return False
        try:
            content = path.read_bytes()
        except FileNotFoundError:
            return False
        digest = hashlib.sha256(content).hexdigest()
        job = IngestJob(
            name=name,
            digest=digest,
            origin="folder",
            path=path,
            content=content,
            tester_id=self.tester_id,
            received=datetime.now(UTC),
            on_done=self._finished,
        )
        with self._lock:
            self._taken.add(name)
        try:
            self.worker.submit(job, timeout=1.0)
        except queue.Full:
            with self._lock:
                self._taken.discard(name)
            return False
        return True

    def _reject_unread(self, path: Path, size: int) -> None:
        """A file over ``max_file_bytes``: recorded and moved to rejected/ without reading it."""
        name = path.name
        digest = hashlib.sha256(f"oversize:{name}:{size}".encode()).hexdigest()
        reason = (
            f"{name}: {size:,} bytes is more than the {self.config.max_file_bytes:,}-byte limit"
        )
        if self.store.file_record(digest) is None:
            record = FileRecord(
                digest, name, "folder", "rejected", error_code="too_large", error_message=reason
            )
            self.store.commit(files=[record])
        self._move(path, self.rejected, digest, f"file: {name}\nerror: too_large: {reason}")
        self.store.set_file_state(digest, "moved")

    # ------------------------------------------------------------------ completion (worker thread)
    def _finished(self, job: IngestJob, outcome: JobOutcome) -> None:
        assert job.path is not None
        try:
            self._settle(job, outcome)
        finally:
            with self._lock:
                self._taken.discard(job.name)

    def _settle(self, job: IngestJob, outcome: JobOutcome) -> None:
        assert job.path is not None
        if outcome.status in (JobStatus.PAUSED, JobStatus.SHUTDOWN):
            return  # stays in the folder; taken again later
        if outcome.status is JobStatus.DUPLICATE:
            record = outcome.record
            if record is not None and record.state != "moved" and record.name == job.name:
                outcome = JobOutcome(  # committed before a crash: finish the move only
                    JobStatus.REJECTED if record.state == "rejected" else JobStatus.ACCEPTED,
                    record.error_code,
                    record.error_message,
                )
            else:
                outcome = JobOutcome(
                    JobStatus.REJECTED,
                    "duplicate",
                    f"{job.name}: the same bytes were already processed as "
                    f"{record.name if record else 'an earlier file'} ({job.digest[:12]})",
                )
                self._move(job.path, self.rejected, job.digest, outcome.error_message)
                return
        if outcome.status is JobStatus.REJECTED:
            self._move(job.path, self.rejected, job.digest, self._reason(job, outcome))
        else:
            reason = self._reason(job, outcome) if outcome.status is JobStatus.PARTIAL else None
            self._move(job.path, self.done, job.digest, reason)
        self.store.set_file_state(job.digest, "moved")

    @staticmethod
    def _reason(job: IngestJob, outcome: JobOutcome) -> str:
        lines = [f"file: {job.name}", f"sha256: {job.digest}", f"status: {outcome.status}"]
        if outcome.error_code:
            lines.append(f"error: {outcome.error_code}: {outcome.error_message}")
        if outcome.location:
            lines.append(f"where: {outcome.location}")
        for w in outcome.wafers:
            if w.error_code:
                lines.append(f"wafer #{w.index}: {w.error_code}: {w.error_message}")
        return "\n".join(lines)

    def _move(self, path: Path, folder: Path, digest: str, reason: str | None) -> Path:
        target = folder / path.name
        if target.exists():
            target = folder / f"{path.name}~{digest[:12]}"
        if reason is not None:  # the reason first: a file in rejected/ always has its reason
            note = folder / f"{target.name}.reason.txt"
            tmp = folder / f".{target.name}.reason.tmp"
            tmp.write_text(reason + "\n", encoding="utf-8")
            tmp.replace(note)
        try:
            os.replace(path, target)
        except FileNotFoundError:
            return target  # already moved (a crash between move and state update)
        except OSError:
            shutil.move(str(path), str(target))  # another file system
        return target
