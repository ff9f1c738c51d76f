"""Walking a folder a person chose: the image files in it, and what was left out and why.

Nothing outside the folder's real path is read or even looked at: links leading out, broken links,
link loops, FIFOs, sockets and devices are listed with their reason instead. Every place that reads
a user-named folder (the tabs, the commands, the indexer) goes through `walk_folder`; the folder
itself is checked against the allowed roots first (roots.allowed_folder), so nothing under it can
leave them either.
"""
from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from explorer.embed.images import IMAGE_EXTENSIONS, ImageError, ImageFailure


@dataclass
class FolderScan:
    """What walking a folder found: image files, and the entries it left out with the reason.
    Paths are absolute and keep link names (they are not resolved)."""
    files: list[Path] = field(default_factory=list)
    skipped: list[ImageFailure] = field(default_factory=list)

    def skipped_under(self, root: str | os.PathLike) -> list[ImageFailure]:
        """The skipped entries named by their posix path relative to `root`."""
        return [ImageFailure(Path(f.path).relative_to(root).as_posix(), f.reason) for f in self.skipped]


_SPECIAL = ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "device"), (stat.S_ISBLK,
                                                                                           "device"))


def walk_folder(root: str | os.PathLike, *, follow_links: bool = True,
                within: str | os.PathLike | None = None) -> FolderScan:
    """Recursively list image files under `root`, sorted by their path relative to root (posix form),
    and say what was left out and why.

    Files are picked by extension (case-insensitive); hidden names (leading ".") are left out
    silently. Symbolic links are followed only when `follow_links` and their resolved target stays
    inside root's real path; each real directory is scanned once (a second name for it is not an
    error). Skipped, with a reason: every link leading outside ("link leads outside the folder"),
    broken link and link loop; unreadable sub-folders and entries; FIFOs, sockets and devices with
    an image's name (never opened). Raises ImageError ("folder not found" / "not a folder" / "cannot
    read folder") for a bad root. With `within`, a root whose real path is not inside it (a link to
    elsewhere) is not walked: it is the one skipped entry.
    """
    top = Path(os.path.abspath(root))
    if not top.exists():
        raise ImageError(os.fspath(root), "folder not found")
    if not top.is_dir():
        raise ImageError(os.fspath(root), "not a folder")
    real_root = top.resolve()
    if within is not None and not real_root.is_relative_to(Path(within).resolve()):
        return FolderScan(skipped=[ImageFailure(str(top), "link leads outside the folder")])
    scan, visited, found = FolderScan(), {real_root}, []
    stack = [(Path(), real_root)]  # (relative path, real path) of folders still to scan
    while stack:
        rel_dir, real_dir = stack.pop()
        try:
            with os.scandir(top / rel_dir) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            if rel_dir == Path():
                raise ImageError(os.fspath(root), f"cannot read folder ({exc.strerror or exc})") from None
            scan.skipped.append(
                ImageFailure(str(top / rel_dir), f"cannot read folder ({exc.strerror or exc})"))
            continue
        subdirs = []
        for entry in entries:
            if entry.name.startswith(".") or (entry.is_symlink() and not follow_links):
                continue
            _sort_entry(entry, top, rel_dir, real_dir, real_root, visited, subdirs, found, scan.skipped)
        stack.extend(reversed(subdirs))  # depth-first in name order, so the first path to a dir wins
    scan.files = [path for _, path in sorted(found)]
    scan.skipped.sort(key=lambda f: f.path)
    return scan


def _sort_entry(entry: os.DirEntry, top: Path, rel_dir: Path, real_dir: Path, real_root: Path, visited: set,
                subdirs: list, found: list, skipped: list) -> None:
    """One folder entry of walk_folder into `subdirs` (to scan), `found` (an image file) or `skipped`
    (with its reason); an entry no walk would use (not a folder, not an image's name) goes nowhere."""
    path = top / rel_dir / entry.name
    real, mode, reason = _follow(entry, real_dir, real_root)
    if reason is None and not (stat.S_ISDIR(mode) or os.path.splitext(entry.name)[1].lower()
                               in IMAGE_EXTENSIONS):
        return  # nothing this walk would use
    if reason is None and stat.S_ISDIR(mode):
        if entry.is_symlink() and real_dir.is_relative_to(real):
            reason = "link loop"
        elif real not in visited:  # else already scanned by another name
            visited.add(real)
            subdirs.append((rel_dir / entry.name, real))
    elif reason is None and stat.S_ISREG(mode):
        found.append(((rel_dir / entry.name).as_posix(), path))
    elif reason is None:
        kind = next((name for test, name in _SPECIAL if test(mode)), "unknown kind")
        reason = f"not a regular file ({kind})"
    if reason is not None:
        skipped.append(ImageFailure(str(path), reason))


def _follow(entry: os.DirEntry, real_dir: Path, real_root: Path) -> tuple[Path, int, str | None]:
    """(real path, st_mode, None) of a folder entry, or (.., .., why it cannot be used). Only stat
    and readlink calls, nothing is opened; nothing outside the root is even looked at."""
    path = Path(entry.path)
    if not entry.is_symlink():
        try:
            return real_dir / entry.name, entry.stat(follow_symlinks=False).st_mode, None
        except OSError as exc:
            return path, 0, f"cannot read ({exc.strerror or exc})"
    try:
        real = path.resolve()
        if not real.is_relative_to(real_root):
            return path, 0, "link leads outside the folder"
        return real, os.stat(real).st_mode, None
    except FileNotFoundError:
        return path, 0, "broken link"
    except RuntimeError:  # how Python < 3.13 reports a loop of links
        return path, 0, "link loop"
    except OSError as exc:
        return path, 0, "link loop" if exc.errno == errno.ELOOP else f"cannot read ({exc.strerror or exc})"


def class_folders(root: Path) -> list[str]:
    """The visible sub-folders of `root` that lie inside it, sorted: its classes when there are two
    or more. A link to a folder elsewhere is no class (see class_entries)."""
    return class_entries(root)[0]


def class_entries(root: Path) -> tuple[list[str], list[ImageFailure]]:
    """(class folders, links that are no class with the reason) of `root`: a sub-folder, or a link
    to one whose real path lies inside root's (but is not root or above it)."""
    real_root = Path(root).resolve()
    folders, skipped = [], []
    for e in os.scandir(root):
        if e.name.startswith("."):
            continue
        if not e.is_symlink():
            if e.is_dir(follow_symlinks=False):
                folders.append(e.name)
            continue
        try:
            target = Path(e.path).resolve()
        except (OSError, RuntimeError):  # RuntimeError: a loop of links, before Python 3.13
            skipped.append(ImageFailure(e.name, "link loop"))
            continue
        if not target.is_relative_to(real_root):
            skipped.append(ImageFailure(e.name, "link leads outside the folder"))
        elif not target.exists():
            skipped.append(ImageFailure(e.name, "broken link"))
        elif real_root.is_relative_to(target):
            skipped.append(ImageFailure(e.name, "link loop"))
        elif target.is_dir():
            folders.append(e.name)
    return sorted(folders), sorted(skipped, key=lambda f: f.path)
