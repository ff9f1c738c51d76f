"""Captions paired with images: a CSV of `path,caption`, or a `.txt` file beside each image.

Only text files are read here (images stay with images.py). Rows that cannot be used (image not
found, empty caption, a path given twice) are reported one line each and skipped, so one bad row
never costs the others; a file that cannot be read at all raises CaptionError.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

MAX_CAPTION_FILE_BYTES = 64 * 1024 * 1024


class CaptionError(ValueError):
    """A caption source cannot be used at all; the message says which file and why."""


@dataclass
class Captions:
    """Captions keyed by the image's absolute real path, plus what was skipped and why."""
    by_path: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def caption_of(self, image_path: str | os.PathLike) -> str | None:
        return self.by_path.get(_key(image_path))

    def __len__(self) -> int:
        return len(self.by_path)


def _key(path: str | os.PathLike) -> str:
    return os.path.realpath(os.path.abspath(path))


def _clean(text: str) -> str:
    return " ".join(text.split())


def read_caption_csv(csv_path: str | os.PathLike, *, check_images: bool = True) -> Captions:
    """Read a CSV whose header names a `path` and a `caption` column (any order, any case; other
    columns are ignored). Relative paths are taken relative to the CSV's own folder.

    With `check_images`, rows whose image file does not exist are reported and skipped.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise CaptionError(f"{csv_path}: caption file not found")
    if csv_path.stat().st_size > MAX_CAPTION_FILE_BYTES:
        raise CaptionError(f"{csv_path}: caption file is larger than {MAX_CAPTION_FILE_BYTES // 2**20} MiB")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fp:
            rows = list(csv.reader(fp))
    except UnicodeDecodeError:
        raise CaptionError(f"{csv_path}: not UTF-8 text") from None
    except csv.Error as exc:
        raise CaptionError(f"{csv_path}: not a readable CSV ({exc})") from None
    if not rows:
        raise CaptionError(f"{csv_path}: the file is empty")
    header = [name.strip().lower() for name in rows[0]]
    if "path" not in header or "caption" not in header:
        raise CaptionError(f"{csv_path}: the first line must name the columns, e.g. 'path,caption' "
                           f"(found: {','.join(rows[0]) or 'nothing'})")
    path_col, caption_col = header.index("path"), header.index("caption")
    base = csv_path.resolve().parent
    out = Captions()
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        raw_path = row[path_col].strip() if path_col < len(row) else ""
        text = _clean(row[caption_col]) if caption_col < len(row) else ""
        if not raw_path:
            out.problems.append(f"line {line}: no image path")
            continue
        if not text:
            out.problems.append(f"line {line}: {raw_path}: empty caption")
            continue
        image = Path(raw_path).expanduser()
        image = image if image.is_absolute() else base / image
        if check_images and not image.is_file():
            out.problems.append(f"line {line}: {raw_path}: image not found")
            continue
        key = _key(image)
        if key in out.by_path:
            out.problems.append(f"line {line}: {raw_path}: listed again; the first caption is kept")
            continue
        out.by_path[key] = text
    return out


def _label_key(text: str) -> str:
    words = text.replace("_", " ").replace("-", " ").casefold().split()
    if len(words) > 1 and words[0] in ("a", "an", "the"):
        words = words[1:]
    return " ".join(words)


def labels_from_folders(image_paths: list[str | os.PathLike], labels: list[str]) -> list[int]:
    """Each image's label index from the name of the folder it is in (ImageFolder layout), or -1.

    Folder names match labels ignoring case, '_' / '-' versus spaces, and a leading article, so
    `a_red_circle/1.png` belongs to the label "red circle" (and to "a red circle").
    """
    keys: dict[str, int] = {}
    for i, label in enumerate(labels):
        keys.setdefault(_label_key(label), i)
    return [keys.get(_label_key(Path(p).parent.name), -1) for p in image_paths]


def read_sidecar_captions(image_paths: list[str | os.PathLike]) -> Captions:
    """For each image, read `<same stem>.txt` in the same folder (e.g. cat.jpg -> cat.txt).

    Images without such a file, or with an empty or undecodable one, are reported and skipped.
    """
    out = Captions()
    for image in image_paths:
        sidecar = Path(image).with_suffix(".txt")
        try:
            if sidecar.stat().st_size > 1024 * 1024:
                out.problems.append(f"{sidecar}: caption file larger than 1 MiB")
                continue
            text = _clean(sidecar.read_text(encoding="utf-8-sig"))
        except FileNotFoundError:
            out.problems.append(f"{image}: no caption file {sidecar.name}")
            continue
        except UnicodeDecodeError:
            out.problems.append(f"{sidecar}: not UTF-8 text")
            continue
        except OSError as exc:
            out.problems.append(f"{sidecar}: cannot read ({exc.strerror or exc})")
            continue
        if not text:
            out.problems.append(f"{sidecar}: empty caption")
            continue
        out.by_path[_key(image)] = text
    return out
