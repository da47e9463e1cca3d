"""Change notification for the hot folder: Linux inotify through ctypes, else plain polling.

``wait(timeout)`` returns the names that were *renamed into* the folder since the last call
(complete files, by the rename-in convention) and whether anything changed at all; without
inotify it sleeps for ``timeout`` and reports "maybe changed", and the folder is polled.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import struct
import sys
import time
from pathlib import Path

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_MODIFY = 0x00000002
IN_Q_OVERFLOW = 0x00004000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
_EVENT = struct.Struct("iIII")


class FolderEvents:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._fd = -1
        if sys.platform.startswith("linux"):
            self._fd = self._open(folder)

    @staticmethod
    def _open(folder: Path) -> int:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            fd = int(libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC))
            if fd < 0:
                return -1
            mask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_MODIFY
            if libc.inotify_add_watch(fd, os.fsencode(folder), mask) < 0:
                os.close(fd)
                return -1
            return fd
        except (OSError, AttributeError):
            return -1

    @property
    def native(self) -> bool:
        return self._fd >= 0

    def wait(self, timeout: float) -> tuple[set[str], bool]:
        """(names renamed in, whether anything happened) within ``timeout`` seconds."""
        if self._fd < 0:
            time.sleep(timeout)
            return set(), True
        ready, _, _ = select.select([self._fd], [], [], timeout)
        if not ready:
            return set(), False
        renamed: set[str] = set()
        try:
            data = os.read(self._fd, 1 << 16)
        except BlockingIOError:
            return renamed, False
        offset = 0
        while offset + _EVENT.size <= len(data):
            _, mask, _, length = _EVENT.unpack_from(data, offset)
            raw = data[offset + _EVENT.size : offset + _EVENT.size + length]
            offset += _EVENT.size + length
            name = os.fsdecode(raw.rstrip(b"\0"))
            if mask & IN_MOVED_TO and name:
                renamed.add(name)
        return renamed, True

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
