"""Which server folders a user may point the app at, and safe unpacking of uploaded folders and zips.

Run locally, a person types a folder path; it must lie inside one of the allowed roots (the
EXPLORER_ALLOWED_ROOTS setting). In hosted mode no server path can be typed at all: the person uploads
files or a zip instead, which is unpacked here with caps on size and count and without zip-slip.
"""
from __future__ import annotations

import shutil
import stat
import tempfile
import time
import zipfile
from pathlib import Path

from .images import IMAGE_EXTENSIONS

MAX_UPLOAD_FILES = 5_000
MAX_UPLOAD_BYTES = 500 * 1024 * 1024
UPLOAD_KEEP_HOURS = 24.0


class PathRefused(ValueError):
    """A path the app will not read; the message says why in one sentence."""


def allowed_folder(text: str, allowed_roots: tuple[Path, ...], hosted: bool = False) -> Path:
    """The real folder a user typed, if it exists and lies inside an allowed root; else PathRefused.

    `..` components are refused outright (even when they would stay inside a root), and the path is
    resolved through symbolic links before the check, so a link out of a root is refused too.
    """
    if hosted:
        raise PathRefused("this is a hosted demo: server folders cannot be used; upload images or a zip instead")
    text = (text or "").strip()
    if not text:
        raise PathRefused("type the path of a folder")
    raw = Path(text).expanduser()
    if ".." in raw.parts:
        raise PathRefused(f"{text}: paths with '..' are not accepted")
    if not raw.is_absolute():
        raise PathRefused(f"{text}: give an absolute path (starting with /)")
    real = raw.resolve()
    if not any(_inside(real, root) for root in allowed_roots):
        roots = ", ".join(str(r) for r in allowed_roots) or "none"
        raise PathRefused(f"{text}: outside the folders this app may read ({roots}); "
                          "set EXPLORER_ALLOWED_ROOTS to allow more")
    if not real.is_dir():
        raise PathRefused(f"{text}: no such folder")
    return real


def inside_roots(path: Path, allowed_roots: tuple[Path, ...]) -> bool:
    """True when `path`, with links resolved, lies inside one of the roots."""
    real = Path(path).resolve()
    return any(_inside(real, Path(root).resolve()) for root in allowed_roots)


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def unpack_uploads(files: list[str], dest: Path, max_files: int = MAX_UPLOAD_FILES,
                   max_bytes: int = MAX_UPLOAD_BYTES) -> tuple[Path, list[str]]:
    """Copy uploaded images (and the images inside uploaded .zip files) into `dest`.

    Returns (dest, notes). Folder structure inside a zip is kept (an ImageFolder zip stays one);
    members with absolute paths or '..', links, and non-image files are skipped and counted in the notes.
    Raises PathRefused when the upload exceeds the caps; `dest` is then removed, never left half-filled.
    """
    dest.mkdir(parents=True, exist_ok=True)
    counts = {"files": 0, "bytes": 0, "skipped": 0}
    try:
        for upload in files:
            upload = Path(upload)
            if upload.suffix.lower() == ".zip":
                _unpack_zip(upload, dest, counts, max_files, max_bytes)
            elif upload.suffix.lower() in IMAGE_EXTENSIONS:
                _count(counts, upload.stat().st_size, max_files, max_bytes)
                shutil.copyfile(upload, _unique(dest / upload.name))
            else:
                counts["skipped"] += 1
    except (PathRefused, zipfile.BadZipFile, OSError) as exc:
        shutil.rmtree(dest, ignore_errors=True)
        if isinstance(exc, PathRefused):
            raise
        raise PathRefused(f"could not unpack the upload: {exc}") from None
    notes = [f"{counts['files']} image file(s) received"]
    if counts["skipped"]:
        notes.append(f"{counts['skipped']} non-image or unsafe entr{'y' if counts['skipped'] == 1 else 'ies'} skipped")
    return dest, notes


def _unpack_zip(path: Path, dest: Path, counts: dict, max_files: int, max_bytes: int) -> None:
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            name = info.filename
            parts = Path(name).parts
            is_link = stat.S_ISLNK(info.external_attr >> 16)
            if info.is_dir():
                continue
            if (is_link or name.startswith(("/", "\\")) or ".." in parts or ":" in name
                    or Path(name).suffix.lower() not in IMAGE_EXTENSIONS
                    or any(p.startswith(".") or p == "__MACOSX" for p in parts)):
                counts["skipped"] += 1
                continue
            _count(counts, info.file_size, max_files, max_bytes)
            target = dest.joinpath(*parts)
            if not _inside(target.resolve(), dest.resolve()):
                counts["skipped"] += 1
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, open(target, "wb") as out:
                # Copy at most the declared size (+1 byte to notice a lying header).
                data = source.read(info.file_size + 1)
                if len(data) > info.file_size:
                    raise PathRefused(f"{name}: zip entry is larger than its header says")
                out.write(data)


def _count(counts: dict, size: int, max_files: int, max_bytes: int) -> None:
    counts["files"] += 1
    counts["bytes"] += size
    if counts["files"] > max_files:
        raise PathRefused(f"upload has more than {max_files} images")
    if counts["bytes"] > max_bytes:
        raise PathRefused(f"upload is larger than {_size(max_bytes)}")


def _size(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n} bytes"


def _unique(path: Path) -> Path:
    stem, suffix, n = path.stem, path.suffix, 1
    while path.exists():
        path = path.with_name(f"{stem}-{n}{suffix}")
        n += 1
    return path


def fresh_upload_dir(base: Path, keep_hours: float = UPLOAD_KEEP_HOURS) -> Path:
    """A new, empty folder under `base` for one upload. Upload folders older than `keep_hours` are
    removed first, so a long-running hosted demo does not fill its disk."""
    base.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - keep_hours * 3600
    for old in base.glob("upload-*"):
        try:
            if old.is_dir() and not old.is_symlink() and old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    return Path(tempfile.mkdtemp(prefix="upload-", dir=base))
