"""Uploaded files and zips unpacked into one folder, within limits, entry by entry.

Zip entries are streamed to disk in 1 MiB chunks, and the limits (total size, number of files, size
of one file, compression ratio) are checked on the bytes actually written, while they are written:
a zip's headers can lie. An entry whose name is unsafe or unusable (absolute, '..', a link, too
long, used twice, ...) is skipped and reported with its reason; the rest is unpacked. What breaks a
limit meant to stop a bomb refuses the whole upload (ArchiveRefused); the caller removes `dest`.
"""
from __future__ import annotations

import errno
import lzma
import re
import shutil
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from explorer.embed.images import DEFAULT_MAX_BYTES

from .settings import flag_and_variable

MiB = 2**20
CHUNK = MiB
NESTED = frozenset({".zip", ".7z", ".rar", ".tar", ".gz", ".tgz", ".bz2", ".xz"})
READABLE = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA})
DAMAGED = (zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, struct.error, ValueError)
# A zip lists its folders too and, made on a Mac, a __MACOSX twin of each file: the listing may hold
# this many entries per file allowed, of this many bytes each on average, before it is refused unread.
LISTED_PER_FILE, LISTED_BYTES_PER_ENTRY = 3, 256


@dataclass(frozen=True)
class ArchiveLimits:
    """What one upload (all its files and zips together) may unpack to."""
    max_bytes: int = 500 * MiB                  # everything written
    max_files: int = 5_000                      # files written
    max_entry_bytes: int = DEFAULT_MAX_BYTES    # one file (the image limit); a larger one is skipped
    max_ratio: float = 100.0                    # uncompressed:compressed, per zip entry, beyond...
    ratio_allowance: int = 64 * 1024  # ...this many bytes any entry may produce (a tiny file's header)


class ArchiveRefused(ValueError):
    """The whole upload is refused; the message says why, for people."""


@dataclass
class Unpacked:
    """What an upload has unpacked so far, and the entries it skipped with their reasons."""
    limits: ArchiveLimits
    files: int = 0
    bytes: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)

    def refuse(self, name: str, reason: str) -> None:
        self.refused.append((name, reason))

    def notes(self, shown: int = 10) -> list[str]:
        notes = [f"{self.files} file(s) received"]
        if self.refused:
            n = len(self.refused)
            listed = ", ".join(f"{_short(name)} ({why})" for name, why in self.refused[:shown])
            more = f", and {n - shown} more" if n > shown else ""
            notes.append(f"{n} entr{'y' if n == 1 else 'ies'} refused: {listed}{more}")
        return notes


def unpack_all(files: list[Path], dest: Path, limits: ArchiveLimits, keep: frozenset[str]) -> list[str]:
    """Copy uploaded files whose suffix is in `keep`, and those inside uploaded .zip files, into the
    existing folder `dest` -> notes. Raises ArchiveRefused (or OSError); `dest` may then hold part."""
    done = Unpacked(limits)
    for path in files:
        if path.suffix.lower() == ".zip":
            unpack_zip(path, dest, done, keep)
        else:
            _copy_loose(path, dest, done, keep)
    return done.notes()


def _copy_loose(path: Path, dest: Path, done: Unpacked, keep: frozenset[str]) -> None:
    limits, size = done.limits, path.stat().st_size
    if path.suffix.lower() not in keep:
        return done.refuse(path.name, "not an image or caption file")
    if size > limits.max_entry_bytes:
        return done.refuse(path.name, f"larger than {_size(limits.max_entry_bytes)}")
    if done.files + 1 > limits.max_files:
        raise ArchiveRefused(f"the upload has more than {limits.max_files:,} files" +
                             _setting("max_upload_files"))
    if done.bytes + size > limits.max_bytes:
        raise ArchiveRefused(f"the upload is larger than {_size(limits.max_bytes)}"
                             + _setting("max_upload_total_mb"))
    shutil.copyfile(path, _unique(dest / path.name))
    done.files, done.bytes = done.files + 1, done.bytes + size


def unpack_zip(path: Path, dest: Path, done: Unpacked, keep: frozenset[str]) -> None:
    """Unpack the entries of one zip worth keeping into `dest`, adding to `done`."""
    limits = done.limits
    _check_listing(path, limits)
    try:
        archive = zipfile.ZipFile(path)
    except DAMAGED:
        raise ArchiveRefused(f"{path.name} is not a zip file or is damaged") from None
    with archive:
        wanted = []
        for info in archive.infolist():
            reason = None if info.is_dir() else refusal(info, keep)
            if reason:
                done.refuse(info.filename, reason)
            elif not info.is_dir():
                wanted.append(info)
        if done.files + len(wanted) > limits.max_files:
            raise ArchiveRefused(f"the zip has more than {limits.max_files:,} files"
                                 + _setting("max_upload_files"))
        # The declared sizes refuse an honest big zip at once; the bytes written are checked below.
        declared = sum(i.file_size for i in wanted if i.file_size <= limits.max_entry_bytes)
        if done.bytes + declared > limits.max_bytes:
            raise ArchiveRefused(f"the zip expands to more than {_size(limits.max_bytes)}"
                                 + _setting("max_upload_total_mb"))
        zip_size = path.stat().st_size
        for info in wanted:
            try:
                _extract(archive, info, dest, done, zip_size)
            except ArchiveRefused:
                raise
            except DAMAGED as exc:
                raise ArchiveRefused(f"{path.name} is damaged ({exc})") from None


def expected_bytes(files: list[Path], limits: ArchiveLimits) -> int:
    """What `files` would unpack to by their own account, read without unpacking: a zip's declared
    entry sizes, another file's size. A zip that cannot be listed counts its own size (unpacking it
    will say why). Headers may understate: the unpack counts the bytes it writes, not these."""
    total = 0
    for path in files:
        size = 0
        try:
            size = path.stat().st_size
            if path.suffix.lower() == ".zip":
                _check_listing(path, limits)
                with zipfile.ZipFile(path) as archive:
                    size = sum(info.file_size for info in archive.infolist() if not info.is_dir())
        except (ArchiveRefused, OSError, *DAMAGED):
            pass
        total += size
    return total


def _check_listing(path: Path, limits: ArchiveLimits) -> None:
    """Refuse a zip listing far more entries than may be unpacked before zipfile parses the whole
    listing into memory (that alone takes seconds for 100k entries). The count a zip declares may
    lie; the listing's size may not, since zipfile reads all of it."""
    with open(path, "rb") as fp:
        end = zipfile._EndRecData(fp)  # private, but stable since Python 2: reads only the zip's tail
    if end is None:
        raise ArchiveRefused(f"{path.name} is not a zip file or is damaged")
    most = LISTED_PER_FILE * limits.max_files
    if end[zipfile._ECD_ENTRIES_TOTAL] > most or end[zipfile._ECD_SIZE] > most * LISTED_BYTES_PER_ENTRY:
        raise ArchiveRefused(f"the zip has more than {limits.max_files:,} files"
                                 + _setting("max_upload_files"))


def refusal(info: zipfile.ZipInfo, keep: frozenset[str]) -> str | None:
    """Why the file entry `info` is not unpacked, or None when it is."""
    name = info.filename
    parts = [p for p in name.split("/") if p not in ("", ".")]
    suffix = PurePosixPath(name).suffix.lower()
    checks = [
        (stat.S_ISLNK(info.external_attr >> 16), "a link"),
        (name.startswith("/"), "absolute path"),
        (re.match(r"[A-Za-z]:", name) is not None, "drive letter"),
        ("\\" in name, "backslash in name"),
        (".." in parts, "'..' in path"),
        (any(p.startswith(".") or p == "__MACOSX" for p in parts), "hidden file"),
        (suffix in NESTED, "an archive inside the zip is not unpacked"),
        (suffix not in keep, "not an image or caption file"),
        (bool(info.flag_bits & 0x1), "encrypted"),
        (info.compress_type not in READABLE, "compressed in a way this app cannot read"),
    ]
    return next((reason for failed, reason in checks if failed), None)


def _extract(archive: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, done: Unpacked,
             zip_size: int) -> None:
    # A header may overstate the compressed size (to hide the ratio), never beyond the zip's own size.
    packed = max(1, min(info.compress_size, zip_size - info.header_offset))
    _check_ratio(info.filename, info.file_size, packed, done.limits)  # an honest bomb: refused unread
    too_large = f"larger than {_size(done.limits.max_entry_bytes)}"
    if info.file_size > done.limits.max_entry_bytes:
        return done.refuse(info.filename, too_large)
    target = dest.joinpath(*[p for p in info.filename.split("/") if p not in ("", ".")])
    out = _create(target)
    if isinstance(out, str):
        return done.refuse(info.filename, out)
    with out, archive.open(info) as source:
        written = _copy(source, out, info.filename, done, packed)
    if written is None:
        target.unlink()
        return done.refuse(info.filename, too_large)
    done.files, done.bytes = done.files + 1, done.bytes + written


def _create(target: Path):
    """A new file open for writing at `target`, or the reason it cannot be made."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        return open(target, "xb")
    except (FileExistsError, NotADirectoryError):
        return "name used twice" if target.is_file() else "name used for both a file and a folder"
    except OSError as exc:  # the file system is the judge of length (a part > 255 bytes, a path > 4096)
        if exc.errno == errno.ENAMETOOLONG:
            return "name too long"
        if exc.errno in (errno.EILSEQ, errno.EINVAL):
            return "name not allowed on this server"
        raise


def _copy(source, out, name: str, done: Unpacked, packed: int) -> int | None:
    """Bytes copied from `source` to `out`, each chunk checked before it is written; None when the
    entry is larger than one file may be."""
    limits, written = done.limits, 0
    while chunk := source.read(CHUNK):
        written += len(chunk)
        _check_ratio(name, written, packed, limits)
        if done.bytes + written > limits.max_bytes:
            raise ArchiveRefused(f"the zip expands to more than {_size(limits.max_bytes)}"
                                 + _setting("max_upload_total_mb"))
        if written > limits.max_entry_bytes:
            return None
        out.write(chunk)
    return written


def _check_ratio(name: str, produced: int, packed: int, limits: ArchiveLimits) -> None:
    """An entry may produce `ratio_allowance` bytes plus `max_ratio` times its compressed size: a
    small entry is held to the ratio too (beyond the allowance), not only a large one."""
    if produced > limits.ratio_allowance + limits.max_ratio * packed:
        raise ArchiveRefused(f"zip entry {_short(name)} is compressed more than {limits.max_ratio:g}:1"
                             " — refused as a possible zip bomb")


def _setting(name: str) -> str:
    """' (the limit is set with --flag or EXPLORER_VARIABLE)': how a refusal names its setting."""
    flag, variable = flag_and_variable(name)
    return f" (the limit is set with {flag} or {variable})"


def _size(n: int) -> str:
    return f"{n / MiB:,.1f}".removesuffix(".0") + " MiB" if n >= MiB else f"{n:,} bytes"


def _short(name: str, most: int = 80) -> str:
    return name if len(name) <= most else name[:most - 1] + "…"


def _unique(path: Path) -> Path:
    stem, suffix, n = path.stem, path.suffix, 1
    while path.exists():
        path = path.with_name(f"{stem}-{n}{suffix}")
        n += 1
    return path
