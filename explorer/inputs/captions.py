"""Which text goes with which image: captions from a `path,caption` CSV or from a `.txt` file beside
each image, and labels read from folder and file names. One set of rules for the app and the CLI.

Only text files are read here (images stay with images.py). Rows that cannot be used (empty
caption, a path given twice, no such image) are reported one line each and skipped, so one bad row
never costs the others; a file that cannot be read at all raises CaptionError.
"""
from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from . import gate
from .gate import DEFAULT_TEXT_LIMITS, TextLimits

MAX_CAPTION_FILE_BYTES = 64 * 1024 * 1024
MAX_SIDECAR_BYTES = 1024 * 1024
MAX_PROBLEMS_LISTED = 20


class CaptionError(ValueError):
    """A caption source cannot be used at all; the message says which file and why."""


@dataclass
class Captions:
    """Captions keyed by the image's real path, plus what was skipped and why."""
    by_path: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    source: str = "the captions"   # for people: where the captions came from

    def caption_of(self, image_path: str | os.PathLike) -> str | None:
        return self.by_path.get(_real(image_path))

    def __len__(self) -> int:
        return len(self.by_path)


def _real(path: str | os.PathLike) -> str:
    return os.path.realpath(os.path.abspath(path))


def _clean(text: str) -> str:
    return " ".join(text.split())


@dataclass
class _Row:
    line: int
    path: str        # as written in the CSV
    caption: str


def _read_rows(csv_path: Path, limits: TextLimits = DEFAULT_TEXT_LIMITS) -> tuple[list[_Row], list[str]]:
    if not csv_path.is_file():
        raise CaptionError(f"{csv_path.name}: caption file not found")
    if csv_path.stat().st_size > MAX_CAPTION_FILE_BYTES:
        raise CaptionError(
            f"{csv_path.name}: caption file is larger than {MAX_CAPTION_FILE_BYTES // 2**20} MiB")
    gate.check_count(f"Captions ({csv_path.name})",
                     csv_path.stat().st_size, limits.max_bytes, "max_text_kb", "bytes")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fp:
            rows = list(csv.reader(fp))
    except UnicodeDecodeError:
        raise CaptionError(f"{csv_path.name}: not UTF-8 text") from None
    except csv.Error as exc:
        raise CaptionError(f"{csv_path.name}: not a readable CSV ({exc})") from None
    if not rows:
        raise CaptionError(f"{csv_path.name}: the file is empty")
    header = [name.strip().lower() for name in rows[0]]
    if "path" not in header or "caption" not in header:
        raise CaptionError(f"{csv_path.name}: the first line must name the columns, e.g. 'path,caption' "
                           f"(found: {','.join(rows[0]) or 'nothing'})")
    path_col, caption_col = header.index("path"), header.index("caption")
    out, problems = [], []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        raw = row[path_col].strip() if path_col < len(row) else ""
        text = _clean(row[caption_col]) if caption_col < len(row) else ""
        if not raw:
            problems.append(f"line {line}: no image path")
        elif not text:
            problems.append(f"line {line}: {raw}: empty caption")
        elif len(text) > limits.max_item_chars:
            problems.append(f"line {line}: {raw[:80]}: {too_long(len(text), limits)}")
        else:
            out.append(_Row(line, raw, text))
    return out, problems


def too_long(length: int, limits: TextLimits) -> str:
    flag, variable = gate.flag_and_variable("max_text_chars")
    return (f"caption of {length:,} characters is longer than the limit of {limits.max_item_chars:,} "
            f"(set with {flag} or {variable})")


def check_csv(csv_path: str | os.PathLike, limits: TextLimits = DEFAULT_TEXT_LIMITS) -> None:
    """Raise CaptionError unless the file is a readable `path,caption` CSV (before heavy work starts);
    gate.Refused when it is larger than `limits.max_bytes`."""
    _read_rows(Path(csv_path), limits)


def match_csv_captions(csv_path: str | os.PathLike, image_paths: list, root: str | os.PathLike | None = None,
                       limits: TextLimits = DEFAULT_TEXT_LIMITS) -> Captions:
    """Captions from a CSV whose header names a `path` and a `caption` column (any order, any case;
    other columns ignored) for these images. A row's path may be absolute, relative to the CSV's
    folder, relative to `root` (the image folder), or a bare file name that is unique among the
    images and among the rows (uploaded files keep their names, not their folders). Within `limits`:
    the file up to max_text_kb (else gate.Refused), a caption up to max_text_chars (else a problem line)."""
    csv_path = Path(csv_path)
    rows, problems = _read_rows(csv_path, limits)
    base = csv_path.resolve().parent
    by_real, by_relative, by_name = {}, {}, {}
    for row in rows:
        written = Path(row.path).expanduser()
        key = _real(written if written.is_absolute() else base / written)
        if key in by_real:
            problems.append(f"line {row.line}: {row.path}: listed again; the first caption is kept")
            continue
        by_real[key] = row
        by_relative.setdefault(Path(os.path.normpath(row.path)).as_posix(), row)
        by_name.setdefault(written.name, []).append(row)
    names = [Path(p).name for p in image_paths]
    name_counts = Counter(names)  # not names.count in the loop: linear in the images
    out, used = Captions(source=f"the CSV {csv_path.name}"), set()
    for path, name in zip(image_paths, names):
        row = by_real.get(_real(path))
        if row is None and root is not None:
            row = by_relative.get(Path(os.path.relpath(_real(path), _real(root))).as_posix())
        if row is None and len(by_name.get(name, ())) == 1 and name_counts[name] == 1:
            row = by_name[name][0]
        if row is not None:
            out.by_path[_real(path)] = row.caption
            used.add(row.line)
    unmatched = [row for row in by_real.values() if row.line not in used]
    problems += [f"line {row.line}: {row.path}: matches none of the images" for row in unmatched]
    out.problems = _capped(problems)
    return out


def sidecar_captions(image_paths: list, limits: TextLimits = DEFAULT_TEXT_LIMITS) -> Captions:
    """For each image, the text of `<same stem>.txt` in the same folder (cat.jpg -> cat.txt).
    Images without one, or with an empty or unreadable one, are reported and skipped."""
    out, problems = Captions(source="the .txt files beside the images"), []
    for image in image_paths:
        sidecar = Path(image).with_suffix(".txt")
        try:
            if sidecar.stat().st_size > MAX_SIDECAR_BYTES:
                problems.append(f"{sidecar.name}: caption file larger than 1 MiB")
                continue
            text = _clean(sidecar.read_text(encoding="utf-8-sig"))
        except FileNotFoundError:
            problems.append(f"{Path(image).name}: no caption file {sidecar.name}")
            continue
        except (OSError, UnicodeDecodeError):
            problems.append(f"{sidecar.name}: not readable UTF-8 text")
            continue
        if not text:
            problems.append(f"{sidecar.name}: empty caption")
            continue
        if len(text) > limits.max_item_chars:
            problems.append(f"{sidecar.name}: {too_long(len(text), limits)}")
            continue
        out.by_path[_real(image)] = text
    out.problems = _capped(problems)
    return out


def _capped(problems: list[str]) -> list[str]:
    if len(problems) <= MAX_PROBLEMS_LISTED:
        return problems
    return problems[:MAX_PROBLEMS_LISTED] + [f"… and {len(problems) - MAX_PROBLEMS_LISTED} more like these"]


# ---- labels from names ----------------------------------------------------------------------------
def label_key(text: str) -> str:
    """How names are compared with labels: case, '_' / '-' versus spaces and a leading article ignored,
    so the folder `a_red_circle` and the label "red circle" match."""
    words = text.replace("_", " ").replace("-", " ").casefold().split()
    if len(words) > 1 and words[0] in ("a", "an", "the"):
        words = words[1:]
    return " ".join(words)


def labels_of_images(image_paths: list, labels: list[str]) -> list[int]:
    """Each image's label index, or -1: from the name of the folder it is in (ImageFolder layout),
    else from the start of its file name (`red_circle_3.png` -> "red circle"; the longest label wins)."""
    by_key: dict[str, int] = {}
    for i, label in enumerate(labels):
        by_key.setdefault(label_key(label), i)
    out = []
    for path in image_paths:
        found = by_key.get(label_key(Path(path).parent.name), -1)
        if found < 0:
            found = _longest_prefix(label_key(Path(path).stem).split(" "), by_key)
        out.append(found)
    return out


def _longest_prefix(words: list[str], by_key: dict[str, int]) -> int:
    """The label whose key is the longest whole-word prefix of `words`, or -1: a look-up per prefix,
    so the cost grows with the name's words, not with the number of labels."""
    for end in range(len(words), 0, -1):
        found = by_key.get(" ".join(words[:end]))
        if found is not None and words[0]:
            return found
    return -1
