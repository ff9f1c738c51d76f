"""Folders in object stores (`s3://bucket/photos`, `gs://...`, `hdfs://...`, `file:///...`), through pyarrow's
filesystems: listing the image files under a URI and reading one, with the same size limits and
messages as local files. Only `index --engine ray` takes a URI folder: its Ray tasks read the files
(credentials come from each node's environment, as pyarrow's filesystems look for them).

An index of a URI folder records the URI as its root; search results name `URI/relative/path`.
The app's pages show local folders only, so such an index is searched from the command line.
"""
from __future__ import annotations

import re
from pathlib import PurePosixPath

from explorer.embed.images import IMAGE_EXTENSIONS, ImageError, Limits, check_size

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def is_uri(root) -> bool:
    """True for `scheme://...` (a folder pyarrow opens), False for a local path."""
    return isinstance(root, str) and bool(_SCHEME.match(root))


def normalise(uri: str) -> str:
    return uri.rstrip("/")


def join(uri: str, rel: str) -> str:
    return f"{normalise(uri)}/{rel}"


class RemoteRoot(str):
    """A URI folder as an index's root: `root / "a/b.jpg"` gives the file's URI, as a Path would."""

    def __truediv__(self, rel) -> str:
        return join(self, str(rel))

    @property
    def name(self) -> str:
        return PurePosixPath(normalise(self).split("://", 1)[1]).name


def _filesystem(uri: str):
    from pyarrow import fs

    try:
        return fs.FileSystem.from_uri(normalise(uri))
    except Exception as exc:  # unknown scheme, missing credentials, bad bucket name...
        raise ValueError(f"cannot open {uri}: {exc}") from None


def list_files(uri: str) -> list[tuple[str, int, int]]:
    """(path relative to `uri`, size, mtime_ns) of every image file under `uri`, sorted; hidden
    names (a leading ".") are left out, as in local folders. ValueError when it cannot be listed."""
    from pyarrow import fs

    filesystem, base = _filesystem(uri)
    try:
        info = filesystem.get_file_info(base)
        if info.type == fs.FileType.NotFound:
            raise ValueError(f"{uri}: folder not found")
        if info.type != fs.FileType.Directory:
            raise ValueError(f"{uri}: not a folder")
        entries = filesystem.get_file_info(fs.FileSelector(base, recursive=True))
    except OSError as exc:
        raise ValueError(f"cannot list {uri}: {exc}") from None
    found = []
    for entry in entries:
        rel = PurePosixPath(entry.path).relative_to(PurePosixPath(base))
        if (entry.type != fs.FileType.File or rel.suffix.lower() not in IMAGE_EXTENSIONS
                or any(part.startswith(".") for part in rel.parts)):
            continue
        mtime = entry.mtime_ns if entry.mtime_ns is not None else -1
        found.append((rel.as_posix(), int(entry.size if entry.size is not None else -1), int(mtime)))
    return sorted(found)


class Folder:
    """A URI folder opened once (pyarrow resolves the filesystem and, for object stores, its
    credentials), to read many of its files."""

    def __init__(self, uri: str):
        self.filesystem, self.base = _filesystem(uri)

    def read(self, rel: str, limits: Limits) -> bytes:
        """The bytes of `rel`, or ImageError (not found, empty, over the size limit, unreadable).
        At most limits.max_bytes + 1 bytes are read, whatever the listing said."""
        try:
            with self.filesystem.open_input_stream(f"{self.base}/{rel}") as stream:
                data = stream.read(limits.max_bytes + 1)
        except FileNotFoundError:
            raise ImageError(rel, "file not found") from None
        except OSError as exc:
            raise ImageError(rel, f"cannot read file ({exc})") from None
        check_size(rel, len(data), limits.max_bytes)
        return data
