"""Safe image loading and folder scanning: the only place in the project that opens image files.

Every failure becomes an `ImageError` with a one-line, human-readable reason. Limits (file size,
pixel count) are checked before any pixel data is decoded. PIL's globals (`MAX_IMAGE_PIXELS`,
`ImageFile.LOAD_TRUNCATED_IMAGES`) are never changed; with PIL's default for the latter, truncated
files are refused (a caller that sets it True elsewhere makes PIL pad truncated files instead).
"""
from __future__ import annotations

import base64
import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .cache import LRU

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
# The only decoders PIL may use (JPEG covers MPO): anything else (EPS runs Ghostscript, for one)
# is refused whatever the file is called.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "DIB", "GIF", "TIFF")
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS = 89_478_485

_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}


class ImageError(Exception):
    """An image (or folder) that could not be used; `.path` names it, `.reason` says why in one line."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class ImageFailure:
    path: str
    reason: str


@dataclass(frozen=True)
class Limits:
    """How large an image file (bytes) and an image (pixels) may be before it is refused."""
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS


DEFAULT_LIMITS = Limits()


def read_file(path: str | os.PathLike, limits: Limits = DEFAULT_LIMITS, *, name: str | None = None) -> bytes:
    """The bytes of one image file, or ImageError (not found, a folder, not a regular file, empty,
    larger than the limit). The size is checked before anything is read."""
    label = name or os.fspath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageError(label, "file not found") from None
    except OSError as exc:  # permission denied, name too long, ...
        raise ImageError(label, f"cannot read file ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(label, "is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(label, "not a regular file")
    _check_size(label, st.st_size, limits.max_bytes)
    try:
        with open(path, "rb") as fp:
            data = fp.read(limits.max_bytes + 1)
    except OSError as exc:
        raise ImageError(label, f"cannot read file ({exc.strerror or exc})") from None
    _check_size(label, len(data), limits.max_bytes)  # the file may have changed since stat
    return data


def load_image(source: str | os.PathLike | bytes, limits: Limits = DEFAULT_LIMITS, *,
               name: str | None = None) -> Image.Image:
    """Decode one image safely to RGB or raise ImageError with a clear reason.

    `source` is a file path or the file's bytes; `name` (default: the path, or "<bytes>") is what
    error messages call it. EXIF orientation is applied, transparency is composited onto white,
    16-bit greyscale is scaled to 8 bits, and animated images give their first frame.
    Size and pixel limits are checked before decoding. PIL's own bomb check still runs inside
    `Image.open`, so above 2 * Image.MAX_IMAGE_PIXELS an image is refused whatever the limit says.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        label = name or "<bytes>"
        _check_size(label, len(source), limits.max_bytes)
        data = bytes(source)
    else:
        label = name or os.fspath(source)
        data = read_file(source, limits, name=label)
    return _decode(io.BytesIO(data), label, limits.max_pixels)


def prepare(source: str | os.PathLike | bytes, preprocess: Callable, limits: Limits = DEFAULT_LIMITS, *,
            name: str | None = None):
    """The decode step every encoder input goes through: decode safely, then the model's own
    preprocessing (resize, crop, normalise) -> a tensor. Any failure is an ImageError."""
    image = load_image(source, limits, name=name)
    try:
        return preprocess(image)
    except Exception as exc:  # an odd image must not end a run
        label = name or ("<bytes>" if isinstance(source, (bytes, bytearray, memoryview)) else os.fspath(source))
        raise ImageError(label, f"preprocessing failed ({type(exc).__name__}: {exc})") from None


def file_key(path: str | os.PathLike) -> tuple | None:
    """(absolute path, size, mtime_ns) of a file, or None if it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (os.path.abspath(path), st.st_size, st.st_mtime_ns)


class Thumbnails:
    """Small RGB copies of image files, cached by path, size and mtime (a changed file is read again)."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS, size: int = 256, capacity: int = 512):
        self.limits, self.size = limits, size
        self._cache = LRU(capacity)

    def image(self, path: str | os.PathLike) -> Image.Image | None:
        """A thumbnail of `path`, or None when it is gone or no longer decodes."""
        key = file_key(path)
        if key is None:
            return None
        thumb = self._cache.get(key)
        if thumb is None:
            try:
                thumb = load_image(path, self.limits)
            except ImageError:
                return None
            thumb.thumbnail((self.size, self.size))
            self._cache.put(key, thumb)
        return thumb

    def data_uri(self, path: str | os.PathLike, size: int = 72) -> str | None:
        """A small JPEG of the image as a data: URI (for hover previews), or None."""
        thumb = self.image(path)
        if thumb is None:
            return None
        small = thumb.copy()
        small.thumbnail((size, size))
        buffer = io.BytesIO()
        small.save(buffer, format="JPEG", quality=75)
        return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def scan_folder(root: str | os.PathLike, *, follow_links: bool = True) -> list[Path]:
    """Recursively list image files under `root`, sorted by their path relative to root (posix form).

    Files are picked by extension (case-insensitive); hidden names (leading ".") are skipped. Symbolic
    links are followed only when `follow_links` and their resolved target stays inside root; each real
    directory is scanned once, so link loops terminate. Returned paths are absolute and keep link
    names (they are not resolved). Unreadable subfolders and broken links are skipped.
    Raises ImageError ("folder not found" / "not a folder" / "cannot read folder") for a bad root.
    """
    top = Path(os.path.abspath(root))
    if not top.exists():
        raise ImageError(os.fspath(root), "folder not found")
    if not top.is_dir():
        raise ImageError(os.fspath(root), "not a folder")
    real_root = top.resolve()
    visited = {real_root}
    found: list[tuple[str, Path]] = []
    stack = [Path()]  # relative paths still to scan
    while stack:
        rel_dir = stack.pop()
        try:
            with os.scandir(top / rel_dir) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            if rel_dir == Path():
                raise ImageError(os.fspath(root), f"cannot read folder ({exc.strerror or exc})") from None
            continue
        subdirs = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            rel = rel_dir / entry.name
            try:
                if entry.is_symlink():
                    if not follow_links:
                        continue
                    target = Path(entry.path).resolve(strict=True)
                    if not target.is_relative_to(real_root):
                        continue
                    is_dir = target.is_dir()
                else:
                    is_dir = entry.is_dir(follow_symlinks=False)
                    target = Path(entry.path).resolve() if is_dir else None
            except (OSError, RuntimeError):  # broken link, permission, resolve loop
                continue
            if is_dir:
                if target not in visited:
                    visited.add(target)
                    subdirs.append(rel)
            elif os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS and (
                    entry.is_symlink() or entry.is_file(follow_symlinks=False)):
                found.append((rel.as_posix(), top / rel))
        stack.extend(reversed(subdirs))  # depth-first in name order, so the first path to a dir wins
    return [path for _, path in sorted(found)]


def _check_size(label: str, size: int, max_bytes: int) -> None:
    if size == 0:
        raise ImageError(label, "empty file")
    if size > max_bytes:
        raise ImageError(label, f"file too large: {size:,} bytes exceeds the limit of {max_bytes:,} bytes"
                                f" ({max_bytes / 1024 / 1024:.1f} MiB)")


def _decode(fp, label: str, max_pixels: int) -> Image.Image:
    """Open from a binary file object, check the pixel count from the header, then decode to RGB."""
    try:
        with Image.open(fp, formats=ALLOWED_FORMATS) as im:
            width, height = im.size
            if width * height > max_pixels:
                raise ImageError(label, f"image too large: {width}x{height} = {width * height:,} pixels"
                                        f" exceeds the limit of {max_pixels:,} pixels")
            im.load()  # first frame only; raises on truncated data
            try:
                im = ImageOps.exif_transpose(im)
            except Exception:  # malformed EXIF: keep the pixels as stored
                pass
            return _to_rgb(im)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(label, "not an image or unsupported format") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(label, f"image too large: {exc}") from None
    except MemoryError:
        raise ImageError(label, "out of memory while decoding") from None
    except Exception as exc:  # PIL raises OSError, ValueError, SyntaxError, struct.error, ...
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageError(label, f"truncated or corrupt image ({detail})") from None


def _to_rgb(im: Image.Image) -> Image.Image:
    """Return a new, loaded RGB image: alpha over white, high-bit-depth greyscale rescaled to 8 bits."""
    if im.mode.startswith("I") or im.mode == "F":
        im = Image.fromarray(_to_uint8(np.asarray(im)), "L")
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        out = Image.new("RGB", rgba.size, (255, 255, 255))
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    return im.convert("RGB")


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale 16-bit (or 32-bit int / float) greyscale to 0..255."""
    is_float = arr.dtype.kind == "f"
    arr = np.nan_to_num(arr.astype(np.float64))
    lo, hi = float(arr.min()), float(arr.max())
    if not is_float and lo >= 0 and hi <= 65535:
        scaled = arr / 257.0  # 16-bit range
    elif lo >= 0 and hi <= 1.0:
        scaled = arr * 255.0  # float image in 0..1
    else:
        scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
