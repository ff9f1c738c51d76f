"""Which server folders a user may point the app at, and the one upload area where uploaded files
and zips are unpacked.

Run locally, a person types a folder path; it must lie inside one of the allowed roots (the
EXPLORER_ALLOWED_ROOTS setting). In hosted mode no server path can be typed at all: the person uploads
files or a zip instead, which is unpacked here with caps on size and count and without zip-slip.
Caption files (.txt, .csv) travel with the images, so a caption beside an image stays beside it.
"""
from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from explorer.embed.images import IMAGE_EXTENSIONS, file_key

from .archives import ArchiveLimits, ArchiveRefused, unpack_all
from .settings import Settings, flag_and_variable

UPLOAD_KEEP_HOURS = 24.0
CAPTION_EXTENSIONS = frozenset({".txt", ".csv"})
KEPT_EXTENSIONS = IMAGE_EXTENSIONS | CAPTION_EXTENSIONS
DEFAULT_UPLOAD_DIR = Path(tempfile.gettempdir()) / "clip-explorer-uploads"


class PathRefused(ValueError):
    """A path the app will not read; the message says why in one sentence."""


def allowed_folder(text: str, allowed_roots: tuple[Path, ...], hosted: bool = False) -> Path:
    """The real folder a user typed, if it exists and lies inside an allowed root; else PathRefused.

    `..` components are refused outright (even when they would stay inside a root), and the path is
    resolved through symbolic links before the check, so a link out of a root is refused too.
    """
    if hosted:
        raise PathRefused(
            "this is a hosted demo: server folders cannot be used; upload images or a zip instead")
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
        raise PathRefused(_outside_roots(text, real, allowed_roots))
    if not real.is_dir():
        raise PathRefused(f"{text}: no such folder")
    return real


def _outside_roots(text: str, real: Path, allowed_roots: tuple[Path, ...]) -> str:
    """The refusal of a folder outside the allowed roots, with the flag and variable that allow it."""
    roots = ", ".join(str(r) for r in allowed_roots) or "none"
    example = shlex.quote(os.pathsep.join([str(r) for r in allowed_roots] + [str(real)]))
    flag, variable = flag_and_variable("allowed_roots")
    return (f"{text}: outside the folders this app may read ({roots}); to allow it, start the app with "
            f"{flag} {example} or set {variable}={example}")


def inside_roots(path: Path, allowed_roots: tuple[Path, ...]) -> bool:
    """True when `path`, with links resolved, lies inside one of the roots."""
    real = Path(path).resolve()
    return any(_inside(real, Path(root).resolve()) for root in allowed_roots)


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def unpack_uploads(files: list[str], dest: Path, max_files: int | None = None, max_bytes: int | None = None,
                   *, limits: ArchiveLimits | None = None) -> tuple[Path, list[str]]:
    """Copy uploaded images and caption files (and those inside uploaded .zip files) into `dest`.

    Returns (dest, notes). Folder structure inside a zip is kept (an ImageFolder zip stays one);
    entries with unsafe or unusable names, links and other files are skipped, each with its reason
    in the notes. `max_files` and `max_bytes` tighten `limits` (default ArchiveLimits()). Raises
    PathRefused when the upload breaks a limit or is damaged; `dest` is then removed, never left
    half-filled.
    """
    limits = limits or ArchiveLimits()
    limits = replace(limits, max_files=min(n for n in (limits.max_files, max_files) if n is not None),
                     max_bytes=min(n for n in (limits.max_bytes, max_bytes) if n is not None))
    dest.mkdir(parents=True, exist_ok=True)
    try:
        notes = unpack_all([Path(f) for f in files], dest, limits, KEPT_EXTENSIONS)
    except BaseException as exc:
        shutil.rmtree(dest, ignore_errors=True)
        if isinstance(exc, ArchiveRefused):
            raise PathRefused(str(exc)) from None
        if isinstance(exc, OSError):
            raise PathRefused(f"could not unpack the upload: {exc.strerror or exc}") from None
        raise
    return dest, notes


class UploadArea:
    """The one folder where uploads are unpacked, one sub-folder per distinct set of uploaded files.

    The same files uploaded again (gradio keeps an upload at the same path while it lives) map to
    the same folder, which is reused rather than unpacked twice. A folder appears complete or not
    at all: it is unpacked under a temporary name and renamed. Folders unused for `keep_hours`
    are removed when a new upload arrives, so a long-running demo does not fill its disk."""

    def __init__(self, base: str | os.PathLike = DEFAULT_UPLOAD_DIR, keep_hours: float = UPLOAD_KEEP_HOURS):
        self.base = Path(base).resolve()
        self.keep_hours = keep_hours

    def unpack(self, files: list[str], max_files: int = Settings.max_upload_files,
               max_bytes: int = int(Settings.max_upload_total_mb * 2**20),
               limits: ArchiveLimits | None = None) -> tuple[Path, list[str]]:
        """(folder holding the uploaded images and caption files, notes). Raises PathRefused.
        `max_files` and `max_bytes` hold for all `files` together (settings max_upload_files and
        max_upload_total_mb; hosted, `max_bytes` is the room the session's quota has reserved)."""
        files = [str(f) for f in files if f]
        if not files:
            raise PathRefused("nothing was uploaded")
        self.base.mkdir(parents=True, exist_ok=True)
        identities = sorted(file_key(f) or (os.path.abspath(f),) for f in files)
        key = hashlib.sha1(repr(identities).encode()).hexdigest()[:16]
        target = self.base / f"upload-{key}"
        if target.is_dir():
            os.utime(target)  # in use again: not expired
            return target, [
                f"{sum(1 for p in target.rglob('*') if p.is_file())} file(s) received (unpacked before)"
            ]
        self.prune()
        partial = Path(tempfile.mkdtemp(prefix=f".partial-{key}-", dir=self.base))
        _, notes = unpack_uploads(files, partial, max_files, max_bytes,
                                  limits=limits)  # removes `partial` on failure
        try:
            partial.rename(target)
        except OSError:  # another request unpacked the same files first
            shutil.rmtree(partial, ignore_errors=True)
        return target, notes

    def contains(self, path: str | os.PathLike) -> bool:
        return inside_roots(Path(path), (self.base,))

    def prune(self) -> None:
        """Remove upload folders (and stray partial ones) not used for `keep_hours`."""
        cutoff = time.time() - self.keep_hours * 3600
        for old in list(self.base.glob("upload-*")) + list(self.base.glob(".partial-*")):
            try:
                if old.is_dir() and not old.is_symlink() and old.stat().st_mtime < cutoff:
                    shutil.rmtree(old, ignore_errors=True)
            except OSError:
                pass
