"""The embedding store of an image index: one SQLite database, `index.db`, inside the index folder.

Tables:
    meta(key TEXT PRIMARY KEY, value TEXT)   JSON values: "version", "identity" (the model's
                                             ModelIdentity.as_dict()), "root" (absolute folder),
                                             "index_type" (a FAISS factory string or "auto"),
                                             "generation" (bumped by every change to `files`),
                                             "next_id" (ids are never reused), "uid" (random,
                                             set when the database is made: the FAISS manifest
                                             names it, so a FAISS file never outlives its store)
    files(id INTEGER PRIMARY KEY,            the FAISS id of the embedding
          path TEXT UNIQUE,                  relative to root, posix separators
          size INTEGER, mtime_ns INTEGER,    what the file looked like when it was embedded
          embedding BLOB,                    float32 [D], L2-normalised; NULL when it failed
          error TEXT)                        why it failed; NULL when it has an embedding

The database runs in WAL mode and every batch of embeddings is one transaction, so a crash or
`kill -9` at any moment leaves exactly the batches that were committed: the next run sees those
files as unchanged and embeds only the rest. A new database is made under a temporary name and
renamed into place, so an index.db that is empty or not SQLite is damage: it is reported, never
re-created. Failed files are stored too, with their reason; they are tried again on every run (cheap)
and a repeated failure leaves the generation alone, so it costs no FAISS rebuild.

Builds and repairs of one index folder take turns through `folder_lock` (flock on `.lock`).
"""
from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DB_NAME = "index.db"
LOCK_NAME = ".lock"
FORMAT_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    embedding BLOB,
    error TEXT
);
"""


class IndexFormatError(ValueError):
    """The index folder exists but is not a usable index (wrong version, unreadable database)."""


class IndexDamagedError(IndexFormatError):
    """index.db is empty, truncated or not an SQLite database."""


def damaged_message(folder: Path, detail: str) -> str:
    return (f"{folder / DB_NAME} is empty or damaged ({detail}); nothing was changed. "
            f"Delete the folder {folder} to rebuild the index from its images")


@dataclass(frozen=True)
class FileState:
    """What the store remembers about one file."""
    id: int
    size: int
    mtime_ns: int
    error: str | None  # None: the file has an embedding


class Store:
    """A connection to one index database. Not shared across processes or threads."""

    def __init__(self, folder: str | Path, *, create: bool = False):
        self.folder = Path(folder)
        self.path = self.folder / DB_NAME
        if not os.path.lexists(self.path):
            if not create:
                raise IndexFormatError(f"{self.folder}: not an index (no {DB_NAME} in it)")
            self.folder.mkdir(parents=True, exist_ok=True)
            _create(self.path)
        elif not self.path.is_file():
            raise IndexDamagedError(damaged_message(self.folder, "not a file"))
        elif self.path.stat().st_size == 0:
            raise IndexDamagedError(damaged_message(self.folder, "0 bytes"))
        self.conn: sqlite3.Connection | None = None
        self.open()

    def open(self) -> None:
        """(Re)open the connection; see `close` for why a caller may close and reopen."""
        try:
            self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=30,
                                        check_same_thread=False)  # callers serialise access
            self.conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a process crash never loses a commit; a power cut may lose the
            # last few, but never corrupts the database.
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.executescript(_SCHEMA)
        except sqlite3.OperationalError as exc:  # cannot open, locked, I/O error: not the file's fault
            self.close()
            raise IndexFormatError(f"{self.path}: cannot be opened ({exc})") from None
        except sqlite3.DatabaseError as exc:  # not a database, malformed
            self.close()
            raise IndexDamagedError(damaged_message(self.folder, str(exc))) from None
        version = self.get_meta("version")
        if version is None:
            self.set_meta("version", FORMAT_VERSION)
        elif version != FORMAT_VERSION:
            raise IndexFormatError(f"{self.path}: index format version {version}, this program reads "
                                   f"version {FORMAT_VERSION}; rebuild the index into a new folder")

    def close(self) -> None:
        """Close the connection (before forking worker processes, so no child inherits it)."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    # ---- meta ---------------------------------------------------------------------------------
    def get_meta(self, key: str, default=None):
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_meta(self, key: str, value) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    @property
    def generation(self) -> int:
        return int(self.get_meta("generation", 0))

    def _bump(self) -> None:
        self.set_meta("generation", self.generation + 1)

    # ---- files --------------------------------------------------------------------------------
    def states(self) -> dict[str, FileState]:
        """Every stored file: path -> FileState (no embeddings are read)."""
        rows = self.conn.execute("SELECT path, id, size, mtime_ns, error FROM files")
        return {path: FileState(id_, size, mtime, error) for path, id_, size, mtime, error in rows}

    def count(self) -> int:
        """Files that have an embedding."""
        return self.conn.execute("SELECT COUNT(*) FROM files WHERE embedding IS NOT NULL").fetchone()[0]

    def write_batch(self, embedded: Iterable[tuple[str, int, int, np.ndarray]],
                    failed: Iterable[tuple[str, int, int, str]] = ()) -> None:
        """Store (path, size, mtime_ns, embedding) and (path, size, mtime_ns, reason) rows in one
        transaction. A file stored before gets a new id, so a FAISS index built earlier cannot
        return it with its old embedding."""
        embedded, failed = list(embedded), list(failed)
        if not embedded and not failed:
            return
        with self.transaction():
            paths = [(p,) for p, *_ in embedded] + [(p,) for p, *_ in failed]
            dropped = self.conn.executemany("DELETE FROM files WHERE path = ? AND embedding IS NOT NULL",
                                            paths).rowcount
            self.conn.executemany("DELETE FROM files WHERE path = ?", paths)
            # Ids are never reused (SQLite would hand out the highest one again after a delete).
            highest = self.conn.execute("SELECT COALESCE(MAX(id), 0) FROM files").fetchone()[0]
            first = max(int(self.get_meta("next_id", 1)), highest + 1)
            ids = iter(range(first, first + len(paths)))
            self.conn.executemany(
                "INSERT INTO files (id, path, size, mtime_ns, embedding, error) VALUES (?, ?, ?, ?, ?, NULL)",
                [(next(ids), p, s, m, np.ascontiguousarray(e, dtype=np.float32).tobytes())
                 for p, s, m, e in embedded])
            self.conn.executemany(
                "INSERT INTO files (id, path, size, mtime_ns, embedding, error) VALUES (?, ?, ?, ?, NULL, ?)",
                [(next(ids), *row) for row in failed])
            self.set_meta("next_id", first + len(paths))
            if embedded or dropped:  # failures alone change nothing the FAISS index holds
                self._bump()

    def remove(self, paths: Iterable[str]) -> None:
        """Forget files (gone from the folder) in one transaction."""
        paths = [(p,) for p in paths]
        if paths:
            with self.transaction():
                self.conn.executemany("DELETE FROM files WHERE path = ?", paths)
                self._bump()

    def failures(self) -> list[tuple[str, str]]:
        """(path, reason) of every stored failure, in path order."""
        return self.conn.execute(
            "SELECT path, error FROM files WHERE error IS NOT NULL ORDER BY path").fetchall()

    def embeddings(self, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """All embeddings as (ids int64 [N], vectors float32 [N, D]) in id order."""
        n = self.count()
        ids = np.empty(n, dtype=np.int64)
        vectors = np.empty((n, dim), dtype=np.float32)
        rows = self.conn.execute("SELECT id, embedding FROM files WHERE embedding IS NOT NULL ORDER BY id")
        i = 0
        for id_, blob in rows:
            if i == n:
                break  # another process added rows since count(); they join the next rebuild
            ids[i] = id_
            vectors[i] = np.frombuffer(blob, dtype=np.float32)
            i += 1
        return ids[:i], vectors[:i]

    def embedding_of(self, path: str) -> np.ndarray | None:
        row = self.conn.execute("SELECT embedding FROM files WHERE path = ?", (path,)).fetchone()
        if row is None or row[0] is None:
            return None
        return np.frombuffer(row[0], dtype=np.float32).copy()

    def paths_of(self, ids: Iterable[int]) -> dict[int, str]:
        """id -> relative path for the given ids (unknown ids are left out)."""
        ids = sorted({int(i) for i in ids if i >= 0})
        out: dict[int, str] = {}
        for start in range(0, len(ids), 500):  # stay under SQLite's host-parameter limit
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            out.update(
                self.conn.execute(f"SELECT id, path FROM files WHERE id IN ({marks})", chunk).fetchall())
        return out

    def transaction(self):
        return _Transaction(self.conn)


def _create(path: Path) -> None:
    """Make an empty index database under a temporary name, then rename it into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                             [("version", json.dumps(FORMAT_VERSION)), ("uid", json.dumps(uuid.uuid4().hex))])
        finally:
            conn.close()  # checkpoints the WAL into the file and removes it
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def folder_lock(folder: str | Path, *, wait: bool = True) -> Iterator[float | None]:
    """Hold the lock of the index in `folder` (flock on folder/.lock), so that builds and repairs of
    one index, in any process or thread, take turns. Yields the seconds spent waiting (0.0 when the
    lock was free), or None when `wait` is False and another holder has it, or no lock file can be
    opened. The kernel releases a flock when its holder exits, however it exits."""
    fd = _open_lock_file(Path(folder) / LOCK_NAME)
    if fd is None:
        yield None
        return
    try:
        started = time.monotonic()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            waited = 0.0
        except BlockingIOError:
            waited = None
        if waited is None and wait:
            fcntl.flock(fd, fcntl.LOCK_EX)
            waited = time.monotonic() - started
        yield waited
    finally:
        os.close(fd)


def _open_lock_file(path: Path) -> int | None:
    for flags in (os.O_RDWR | os.O_CREAT,
                  os.O_RDONLY):  # read-only: a read-only folder whose lock file exists
        try:
            return os.open(path, flags, 0o644)
        except OSError:
            pass
    return None


class _Transaction:
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
        return False
