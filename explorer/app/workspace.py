"""Where a visitor's files live: one shared workspace locally, one per browser session when hosted.

A workspace is an upload area, an index folder and a downloads folder. Run locally there is one
user, so every tab and every page load share them, as before. In hosted mode (a public demo where
strangers share one process) each gradio session gets a private workspace under
`base/ws-<digest of the session id>`; nothing outside it is listed to that session, and everything
the app writes for it (unpacked uploads, indexes, classifier downloads, prompt-set files) lies there.

The disk is capped per session (`session_quota`) and for everyone together (`total_quota`, which also
counts gradio's own cache when it lies under `base` or in `counted`). An upload reserves its room
before it is unpacked (`reserve`), under one lock, so uploads running at once cannot pass a quota
together. A new visitor is never refused because of others: when the shared quota is short, the
least recently active sessions are evicted first (never the one asking, never one in use), and an
evicted session is told so when it returns (`notice`). A session in use (`in_use`) never expires.
Its workspace is deleted when the session ends (the page is closed), after `ttl_seconds` unused,
and with every other on exit or on SIGTERM/SIGINT (`remove_all`, app.py). The hosted `base` is
`SESSIONS_DIR/<pid>-<start>-...` (`new_base`), so a run killed outright leaves a folder the next
run's `sweep_dead` recognises and removes.
"""
from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from explorer.index.registry import IndexRegistry
from explorer.inputs.roots import PathRefused, UploadArea

SESSIONS_DIR = Path(tempfile.gettempdir()) / "clip-explorer-sessions"
LOCAL_DOWNLOADS = Path(tempfile.gettempdir()) / "clip-explorer-downloads"
EVICTED = "your files were removed to make room for other visitors; upload them again"
EXPIRED = "your files were removed after {minutes:g} minutes unused; upload them again"
KEEP_DOWNLOADS = 8          # download folders of one kind a workspace keeps (the newest)
REMEMBER_GONE = 10_000      # sessions remembered as evicted or expired, to tell them when they return


@dataclass
class Workspace:
    key: str                     # "local", or a digest of the session id
    uploads: UploadArea
    indexes: IndexRegistry
    folder: Path | None = None   # the private folder (hosted), None for the shared one
    last_used: float = field(default_factory=time.monotonic)
    busy: int = 0                # requests of this session running now (Workspaces.in_use)
    reserved: int = 0            # bytes reserved for unpacks running now (Workspaces.reserve)
    gone: str | None = None      # why this session's earlier files are gone (told when it returns)
    told: bool = False           # the page has shown `gone` (once is enough)
    ended: bool = False          # its page was closed while a request still ran: removed when it ends

    def disk_bytes(self) -> int:
        return 0 if self.folder is None else folder_bytes(self.folder)

    def downloads(self, kind: str, name: str | None = None) -> Path:
        """A new folder for files the app offers for download (`kind`: "classifiers", "prompt-sets"):
        hosted, inside the workspace (counted in its quota, deleted with it); locally, under the temp
        folder. `name` names it (the same name, the same folder); else a fresh one is made. Only the
        newest KEEP_DOWNLOADS of a kind are kept."""
        base = (self.folder / "downloads" if self.folder is not None else LOCAL_DOWNLOADS) / kind
        base.mkdir(parents=True, exist_ok=True)
        folder = base / name if name else Path(tempfile.mkdtemp(dir=base))
        folder.mkdir(exist_ok=True)
        os.utime(folder)
        older = sorted((p for p in base.iterdir() if p.is_dir() and p != folder), key=_mtime, reverse=True)
        for old in older[KEEP_DOWNLOADS - 1:]:
            shutil.rmtree(old, ignore_errors=True)
        return folder


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


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


# ---- the hosted base folder: one per run, known by its process --------------------------------------
def _started(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, from /proc), or None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fp:
            return fp.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def new_base(parent: Path = SESSIONS_DIR) -> Path:
    """A new folder for this run's sessions: parent/<pid>-<start time>-<random>."""
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-{_started(os.getpid()) or 0}-", dir=parent))


def _alive(pid: int, started: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    now = _started(pid)
    return now is None or started == "0" or now == started  # the same pid, a later process: dead run


def sweep_dead(parent: Path = SESSIONS_DIR) -> list[Path]:
    """Remove the session folders of runs that are no longer running (killed before they could
    clean up) -> the folders removed. A folder whose process lives is left alone."""
    removed = []
    for child in sorted(parent.iterdir()) if parent.is_dir() else []:
        pid, _, rest = child.name.partition("-")
        if not (pid.isdigit() and child.is_dir()) or child.is_symlink():
            continue
        if not _alive(int(pid), rest.partition("-")[0]):
            shutil.rmtree(child, ignore_errors=True)
            removed.append(child)
    return removed


class Workspaces:
    """The workspace of each session. `hosted=False`: always the one shared workspace.

    `base` (hosted): where the sessions' folders go; None makes one with `new_base` after sweeping
    dead runs' folders, and removes it on exit. `own_base`: remove `base` itself in `remove_all`
    (default: when made here). `counted`: other folders whose bytes count in `total_quota` (gradio's
    cache when it lies outside `base`). `upload_total`: the most one upload may unpack to."""

    def __init__(self, shared: Workspace, *, hosted: bool, base: Path | None = None,
                 ttl_seconds: float = 2 * 3600, session_quota: int = 1 << 30, total_quota: int = 8 << 30,
                 upload_total: int = 500 << 20, counted: tuple[Path, ...] = (), own_base: bool | None = None):
        self.shared, self.hosted = shared, hosted
        self.ttl_seconds, self.session_quota, self.total_quota = ttl_seconds, session_quota, total_quota
        self.upload_total, self.counted = upload_total, tuple(Path(c) for c in counted)
        self._sessions: dict[str, Workspace] = {}
        self._gone: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.RLock()
        # Set by the UI (it knows gradio): delete gradio's cached files older than a grace period,
        # those it keeps (the examples) excepted; called when the shared quota is short after eviction.
        self.trim_cache: Callable[[], None] | None = None
        self._pid = os.getpid()  # a forked worker's copy never deletes what the main process holds
        self.base = None if base is None else Path(base)
        self.own_base = bool(own_base) if own_base is not None else (hosted and base is None)
        if hosted and self.base is None:
            sweep_dead()
            self.base = new_base()
        if hosted:
            self.base.mkdir(parents=True, exist_ok=True)
            atexit.register(self.remove_all)  # a signal skips atexit: app.py's handlers call remove_all

    @staticmethod
    def key_of(session: str) -> str:
        return hashlib.sha256(session.encode()).hexdigest()[:24]

    def get(self, session: str | None) -> Workspace:
        """The workspace of `session` (gradio's session hash), made on first use; its use is noted
        (the least recently used are evicted first, the unused expire)."""
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
                ws = Workspace(key, UploadArea(folder / "uploads"), IndexRegistry(folder / "indexes"), folder,
                               gone=self._gone.pop(key, None))
                self._sessions[key] = ws
            ws.ended = False
            ws.last_used = time.monotonic()
            return ws

    def notice(self, session: str | None) -> str | None:
        """Why this session's earlier files are gone (evicted or expired), until it uploads again."""
        return self.get(session).gone if self.hosted and session else None

    @contextmanager
    def in_use(self, session: str | None):
        """Marks the session in use while the block runs: it neither expires nor is evicted, and its
        page closing removes it only once the block ends. Yields its workspace (None without a session
        when hosted: the request itself says what is wrong)."""
        if self.hosted and not session:
            yield None
            return
        ws = self.get(session)
        with self._lock:
            ws.busy += 1
        try:
            yield ws
        finally:
            with self._lock:
                ws.busy -= 1
                ws.last_used = time.monotonic()
                if ws.ended and not ws.busy and not ws.reserved:
                    self._drop(ws, None)

    def end(self, session: str | None) -> None:
        """Delete a session's workspace (its page was closed); one in use goes when its request ends."""
        if not (self.hosted and session):
            return
        with self._lock:
            ws = self._sessions.get(self.key_of(session))
            if ws is not None and (ws.busy or ws.reserved):
                ws.ended = True
            elif ws is not None:
                self._drop(ws, None)

    def expire(self) -> int:
        """Delete the workspaces unused for `ttl_seconds` (none in use); returns how many."""
        cutoff = time.monotonic() - self.ttl_seconds
        with self._lock:
            old = [
                ws for ws in self._sessions.values()
                if ws.last_used < cutoff and not ws.busy and not ws.reserved
            ]
            for ws in old:
                self._drop(ws, EXPIRED.format(minutes=self.ttl_seconds / 60))
        return len(old)

    def sessions(self) -> int:
        with self._lock:
            return len(self._sessions)

    def _drop(self, ws: Workspace, why: str | None) -> None:
        """Forget and delete `ws` (the lock held); `why` is told to the session if it returns."""
        self._sessions.pop(ws.key, None)
        if why:
            self._gone[ws.key] = why
            while len(self._gone) > REMEMBER_GONE:
                self._gone.popitem(last=False)
        _remove(ws)

    def remove_all(self) -> None:
        """Delete every session's workspace (and `base` when it is this run's own): on exit, SIGTERM."""
        if not self.hosted or os.getpid() != self._pid:
            return
        locked = self._lock.acquire(timeout=5)  # a signal may arrive while a request holds the lock
        try:
            for ws in list(self._sessions.values()):
                self._drop(ws, None)
            if self.own_base and self.base is not None:
                shutil.rmtree(self.base, ignore_errors=True)
            elif self.base is not None:
                for folder in self.base.glob("ws-*"):
                    shutil.rmtree(folder, ignore_errors=True)
        finally:
            if locked:
                self._lock.release()

    # ---- the quotas ---------------------------------------------------------------------------------
    def used(self) -> int:
        """Bytes every session holds or has reserved, with gradio's cache (under `base` or `counted`)."""
        with self._lock:
            on_disk = folder_bytes(self.base) + sum(folder_bytes(c) for c in self.counted if c.is_dir())
            return on_disk + sum(ws.reserved for ws in self._sessions.values())

    @contextmanager
    def reserve(self, ws: Workspace, wanted: int):
        """Room for one upload into `ws`, held while the block unpacks it: yields the bytes it may
        write (at most `wanted`, what the upload says it holds; at most `upload_total`). Hosted, the
        room is taken from both quotas under the lock, evicting the least recently active idle
        sessions when the shared quota is short; PathRefused when the session's quota is full, or
        the shared one is held by sessions in use."""
        if not self.hosted:
            yield self.upload_total
            return
        with self._lock:
            room = self._room(ws, max(1, int(wanted)))
            ws.reserved += room
        try:
            yield room
        finally:
            with self._lock:
                ws.reserved -= room
                ws.last_used = time.monotonic()
                if ws.ended and not ws.busy and not ws.reserved:
                    self._drop(ws, None)

    def _room(self, ws: Workspace, wanted: int) -> int:
        """The bytes `ws` may reserve now for an upload of `wanted` bytes (the lock held)."""
        own = min(self.upload_total, self.session_quota - ws.disk_bytes() - ws.reserved)
        if own <= 0:
            busy = " (another upload of yours is being unpacked)" if ws.reserved else ""
            raise PathRefused(f"your uploads fill this session's {_size(self.session_quota)}{busy}; "
                              "reload the page to start a fresh session")
        need = min(own, wanted)
        free = self.total_quota - self.used()
        if free < need:
            free += self._evict(need - free, ws)
        if free < need and self.trim_cache is not None:
            # What is left is gradio's cache: uploads sent to /gradio_api/upload (no session owns them,
            # so no eviction frees them) and copies of results. Its own sweep, sooner.
            self.trim_cache()
            free = self.total_quota - self.used()
        if free <= 0:
            raise PathRefused("the demo's disk is full with the files of visitors using it right now; "
                              "try again in a few minutes")
        return min(own, free, wanted)

    def keep_within_quota(self) -> bool:
        """Trim gradio's cache (trim_cache) when everything together is over the shared quota: raw
        uploads need no session, so nothing else would bound them until their age runs out. Called on
        a schedule by the UI; True when it trimmed."""
        if not self.hosted or self.trim_cache is None or self.used() <= self.total_quota:
            return False
        self.trim_cache()
        return True

    def _evict(self, short: int, asking: Workspace) -> int:
        """Delete the least recently active sessions, never `asking` nor one in use, until `short`
        bytes are freed (the lock held) -> bytes freed. Each is told why when it returns."""
        idle = sorted(
            (ws for ws in self._sessions.values() if ws is not asking and not ws.busy and not ws.reserved),
            key=lambda ws: ws.last_used)
        freed = 0
        for ws in idle:
            if freed >= short:
                break
            size = ws.disk_bytes()
            if size:
                self._drop(ws, EVICTED)
                freed += size
        return freed


def _remove(ws: Workspace) -> None:
    ws.indexes.close_all()
    if ws.folder is not None:
        shutil.rmtree(ws.folder, ignore_errors=True)
