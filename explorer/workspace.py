"""Where a visitor's files live: one shared workspace locally, one per browser session when hosted.

A workspace is an upload area plus an index folder. Run locally there is one user, so every tab
and every page load share the upload area and the app's index folder, as before. In hosted mode
(a public demo where strangers share one process) each gradio session gets a private workspace
under `base/ws-<digest of the session id>`; nothing outside it is listed to that session, it is
deleted when the session ends (the page is closed) or after `ttl_seconds` without use, and the
disk it may fill is capped per session and for all sessions together.
"""
from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .index import IndexRegistry
from .paths import MAX_UPLOAD_BYTES, PathRefused, UploadArea



@dataclass
class Workspace:
    key: str                     # "local", or a digest of the session id
    uploads: UploadArea
    indexes: IndexRegistry
    folder: Path | None = None   # the private folder (hosted), None for the shared one
    last_used: float = field(default_factory=time.monotonic)

    def disk_bytes(self) -> int:
        return 0 if self.folder is None else folder_bytes(self.folder)


def folder_bytes(folder: Path) -> int:
    """Bytes of the regular files under `folder` (links are not followed)."""
    total = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


class Workspaces:
    """The workspace of each session. `hosted=False`: always the one shared workspace."""

    def __init__(self, shared: Workspace, *, hosted: bool, base: Path | None = None,
                 ttl_seconds: float = 2 * 3600, session_quota: int = 1 << 30, total_quota: int = 8 << 30):
        self.shared, self.hosted = shared, hosted
        self.ttl_seconds, self.session_quota, self.total_quota = ttl_seconds, session_quota, total_quota
        self._sessions: dict[str, Workspace] = {}
        self._lock = threading.Lock()
        self.base = None if base is None else Path(base)
        if hosted and self.base is None:
            # Sessions do not outlive the process, so neither do their files.
            self.base = Path(tempfile.mkdtemp(prefix="clip-explorer-sessions-"))
            atexit.register(shutil.rmtree, self.base, ignore_errors=True)
        if hosted:
            self.base.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key_of(session: str) -> str:
        return hashlib.sha256(session.encode()).hexdigest()[:24]

    def get(self, session: str | None) -> Workspace:
        """The workspace of `session` (gradio's session hash), made on first use."""
        if not self.hosted:
            return self.shared
        if not session:
            raise PathRefused("this request has no session; reload the page")
        self.expire()
        key = self.key_of(session)
        with self._lock:
            ws = self._sessions.get(key)
            if ws is None:
                folder = self.base / f"ws-{key}"
                ws = Workspace(key, UploadArea(folder / "uploads"), IndexRegistry(folder / "indexes"), folder)
                self._sessions[key] = ws
            ws.last_used = time.monotonic()
            return ws

    def end(self, session: str | None) -> None:
        """Delete a session's workspace (its page was closed)."""
        if self.hosted and session:
            with self._lock:
                ws = self._sessions.pop(self.key_of(session), None)
            if ws is not None:
                _remove(ws)

    def expire(self) -> int:
        """Delete the workspaces unused for `ttl_seconds`; returns how many."""
        cutoff = time.monotonic() - self.ttl_seconds
        with self._lock:
            old = [k for k, ws in self._sessions.items() if ws.last_used < cutoff]
            gone = [self._sessions.pop(k) for k in old]
        for ws in gone:
            _remove(ws)
        return len(gone)

    def sessions(self) -> int:
        with self._lock:
            return len(self._sessions)

    def upload_room(self, ws: Workspace) -> int:
        """How many bytes the next upload into `ws` may unpack to; PathRefused when none."""
        if not self.hosted:
            return MAX_UPLOAD_BYTES
        mine = ws.disk_bytes()
        everyone = folder_bytes(self.base)
        room = min(MAX_UPLOAD_BYTES, self.session_quota - mine, self.total_quota - everyone)
        if room <= 0:
            if self.session_quota - mine <= 0:
                raise PathRefused(f"your uploads fill this session's {_size(self.session_quota)}; "
                                  "reload the page to start a fresh session")
            raise PathRefused("the demo's disk is full with other visitors' uploads; try again later")
        return room


def _remove(ws: Workspace) -> None:
    ws.indexes.close_all()
    if ws.folder is not None:
        shutil.rmtree(ws.folder, ignore_errors=True)
