"""The embedding store of an image index: one SQLite database, `index.db`, inside the index folder.

Tables:
    meta(key TEXT PRIMARY KEY, value TEXT)   JSON values: "version", "identity" (the model's
                                             ModelIdentity.as_dict()), "root" (absolute folder),
                                             "index_type" (a FAISS factory string or "auto"),
                                             "generation" (bumped by every change to `files`),
                                             "next_id" (ids are never reused)
    files(id INTEGER PRIMARY KEY,            the FAISS id of the embedding
          path TEXT UNIQUE,                  relative to root, posix separators
          size INTEGER, mtime_ns INTEGER,    what the file looked like when it was embedded
          embedding BLOB,                    float32 [D], L2-normalised; NULL when it failed
          error TEXT)                        why it failed; NULL when it has an embedding

The database runs in WAL mode and every batch of embeddings is one transaction, so a crash or
`kill -9` at any moment leaves exactly the batches that were committed: the next run sees those
files as unchanged and embeds only the rest. Failed files are stored too, so an unchanged bad file
is reported on every run but never decoded again.
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

DB_NAME = "index.db"
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
        if not self.path.is_file() and not create:
            raise IndexFormatError(f"{self.folder}: not an index (no {DB_NAME} in it)")
        if create:
            self.folder.mkdir(parents=True, exist_ok=True)
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
        except sqlite3.DatabaseError as exc:
            raise IndexFormatError(f"{self.path}: not a readable index database ({exc})") from None
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
            self.conn.executemany("DELETE FROM files WHERE path = ?", paths)
            # Ids are never reused (SQLite would hand out the highest one again after a delete).
            highest = self.conn.execute("SELECT COALESCE(MAX(id), 0) FROM files").fetchone()[0]
            first = max(int(self.get_meta("next_id", 1)), highest + 1)
            ids = iter(range(first, first + len(paths)))
            self.conn.executemany(
                "INSERT INTO files (id, path, size, mtime_ns, embedding, error) VALUES (?, ?, ?, ?, ?, NULL)",
                [(next(ids), p, s, m, np.ascontiguousarray(e, dtype=np.float32).tobytes()) for p, s, m, e in embedded])
            self.conn.executemany(
                "INSERT INTO files (id, path, size, mtime_ns, embedding, error) VALUES (?, ?, ?, ?, NULL, ?)",
                [(next(ids), *row) for row in failed])
            self.set_meta("next_id", first + len(paths))
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
        return self.conn.execute("SELECT path, error FROM files WHERE error IS NOT NULL ORDER BY path").fetchall()

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
            out.update(self.conn.execute(f"SELECT id, path FROM files WHERE id IN ({marks})", chunk).fetchall())
        return out

    def transaction(self):
        return _Transaction(self.conn)


class _Transaction:
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
        return False
