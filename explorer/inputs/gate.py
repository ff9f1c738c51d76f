"""The one gate every input a person sends passes before any work is done on it.

Texts (labels, templates, prompts, captions, descriptions, JSON of any kind) are bounded by count,
length, total bytes and JSON depth; files by count and bytes here, and images by their decoded cost,
estimated from the header, in images.py (the only place that opens them). Every limit is a setting
(a flag and an EXPLORER_* variable, stricter by default in hosted mode: settings.HOSTED_DEFAULTS),
and every refusal names what was refused, its value, the limit and the setting that changes it.

Two ways to refuse, so that the rest of a request still runs where it can:
  - `Refused` (a ValueError) refuses one input whole: a text box larger than max_text_kb, JSON
    nested deeper than max_json_depth, more files than max_upload_files, more prompts than
    max_prompts. The caller reports it and goes on without that input, or stops the request.
  - `items` keeps what is within the limits and returns a note for each thing it left out (a label
    longer than max_text_chars, the labels past max_texts).

The UI runs `check_arguments` on every event's arguments before its handler (ui/gate_events.py), so
a new tab or endpoint is gated without doing anything; the parsers of labels, templates, captions,
descriptions and classifier files call the finer functions here.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .settings import Settings, flag_and_variable


class Refused(ValueError):
    """One input refused whole; the message names it, its value, the limit and the setting."""


@dataclass(frozen=True)
class TextLimits:
    """What one request's texts may be (Settings: max_texts, max_text_chars, max_text_kb,
    max_json_depth, max_prompts)."""
    max_items: int = 20_000
    max_item_chars: int = 4_000
    max_bytes: int = 8 << 20
    max_json_depth: int = 32
    max_prompts: int = 500_000

    @classmethod
    def of(cls, settings: Settings) -> TextLimits:
        return cls(settings.max_texts, settings.max_text_chars, int(settings.max_text_kb * 1024),
                   settings.max_json_depth, settings.max_prompts)


DEFAULT_TEXT_LIMITS = TextLimits()


def limit_text(what: str, value: int, limit: int, setting: str, unit: str = "") -> str:
    """'Labels: 100,000 is more than the limit of 256 (--max-texts or EXPLORER_MAX_TEXTS)'."""
    flag, variable = flag_and_variable(setting)
    unit = f" {unit}" if unit else ""
    return (f"{what}: {value:,}{unit} is more than the limit of {limit:,}{unit} "
            f"(set with {flag} or {variable})")


def check_count(what: str, value: int, limit: int, setting: str, unit: str = "") -> None:
    """Refused when `value` exceeds `limit` (a limit of 0 or less means none)."""
    if limit > 0 and value > limit:
        raise Refused(limit_text(what, value, limit, setting, unit))


def text(value: str | None, what: str, limits: TextLimits = DEFAULT_TEXT_LIMITS) -> str:
    """`value` ('' for None) when its UTF-8 size is within max_bytes; else Refused."""
    value = value or ""
    # Characters bound bytes from below and 4x from above: count exactly only near the limit.
    if len(value) * 4 > limits.max_bytes:
        check_count(what, len(value.encode("utf-8", "surrogatepass")), limits.max_bytes, "max_text_kb",
                    "bytes")
    return value


def items(values: Iterable[str], what: str, limits: TextLimits = DEFAULT_TEXT_LIMITS,
          noun: str = "entry") -> tuple[list[str], list[str]]:
    """(the values within the limits, notes on what was left out): each longer than max_item_chars
    is left out with its number and length; past max_items the rest is left out, said once."""
    kept, too_long, total = [], [], 0
    for number, value in enumerate(values, start=1):
        total += 1
        if len(value) > limits.max_item_chars:
            too_long.append((number, len(value)))
        elif len(kept) < limits.max_items:
            kept.append(value)
    notes = []
    if too_long:
        shown = ", ".join(f"{noun} {n} ({length:,} characters)" for n, length in too_long[:5])
        more = f" and {len(too_long) - 5} more" if len(too_long) > 5 else ""
        flag, variable = flag_and_variable("max_text_chars")
        notes.append(f"left out {shown}{more}: longer than the limit of {limits.max_item_chars:,} characters "
                     f"(set with {flag} or {variable})")
    usable = total - len(too_long)
    if usable > limits.max_items:
        flag, variable = flag_and_variable("max_texts")
        notes.append(f"kept the first {limits.max_items:,} of {usable:,} {what}: more than the limit of "
                     f"{limits.max_items:,} (set with {flag} or {variable})")
    return kept, notes


def prompts(count: int, what: str = "Prompts to encode", limits: TextLimits = DEFAULT_TEXT_LIMITS) -> None:
    """Refused when one request would encode more than max_prompts texts."""
    check_count(what, count, limits.max_prompts, "max_prompts", "texts")


def json_document(value: str | bytes, what: str, limits: TextLimits = DEFAULT_TEXT_LIMITS) -> Any:
    """Parse JSON a person sent, bounded in bytes and in nesting depth before the parser runs (a
    deeply nested document costs the parser memory and recursion, not bytes). Refused, or
    ValueError('WHAT: not valid JSON (...)') for a document that does not parse."""
    if isinstance(value, (bytes, bytearray)):
        check_count(what, len(value), limits.max_bytes, "max_text_kb", "bytes")
        try:
            value = bytes(value).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ValueError(f"{what}: not UTF-8 text") from None
    else:
        text(value, what, limits)
    depth = json_depth(value)
    check_count(f"{what}: JSON nesting depth", depth, limits.max_json_depth, "max_json_depth")
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{what}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:  # only with a max_json_depth in the hundreds
        raise Refused(f"{what}: nested too deeply to read") from None


def json_depth(document: str) -> int:
    """The deepest nesting of [ and { in a JSON text, brackets inside strings not counted (linear,
    no parsing, so it can refuse a document before json.loads builds it)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in document:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def read_text_file(path: str | os.PathLike, what: str, limits: TextLimits = DEFAULT_TEXT_LIMITS) -> str:
    """An uploaded text file (templates, descriptions, captions), size-checked before it is read.
    Refused when too large; ValueError when unreadable or not UTF-8."""
    name = os.path.basename(os.fspath(path))
    try:
        size = os.stat(path).st_size
        check_count(f"{what} ({name})", size, limits.max_bytes, "max_text_kb", "bytes")
        with open(path, "rb") as fp:
            data = fp.read(limits.max_bytes + 1)
    except OSError as exc:
        raise ValueError(f"{what}: cannot read {name} ({exc.strerror or exc})") from None
    check_count(f"{what} ({name})", len(data), limits.max_bytes, "max_text_kb", "bytes")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{what}: {name} is not UTF-8 text") from None


def files(paths: Iterable[str | os.PathLike], what: str, settings: Settings) -> list[str]:
    """Files a person sent with one request: Refused when there are more than max_upload_files or
    they hold more than max_upload_total_mb together (sizes read with stat, nothing opened)."""
    listed = [os.fspath(p) for p in paths if p]
    check_count(what, len(listed), settings.max_upload_files, "max_upload_files", "files")
    total = 0
    for path in listed:
        try:
            total += os.stat(path).st_size
        except OSError:
            continue  # a missing file is reported by whoever reads it, with its name
    check_count(what, total, settings.max_upload_total_bytes, "max_upload_total_mb", "bytes")
    return listed


def within(values: Iterable[str], what: str, limits: TextLimits = DEFAULT_TEXT_LIMITS,
           noun: str = "entry") -> list[str]:
    """All of `values` when every one is within max_text_chars and there are at most max_texts of
    them; else Refused, naming the limit passed (for inputs that are used whole or not at all:
    a template set, a description file, a classifier's class names)."""
    values = list(values)
    check_count(what, len(values), limits.max_items, "max_texts", "entries")
    for number, value in enumerate(values, start=1):
        if len(value) > limits.max_item_chars:
            raise Refused(limit_text(f"{what}: {noun} {number}", len(value), limits.max_item_chars,
                                     "max_text_chars", "characters"))
    return values


def listed(names: list[str], shown: int = 10) -> str:
    """'a, b, c and 12 more': a list for a message that stays short however many there are."""
    head = ", ".join(names[:shown])
    return head + (f" and {len(names) - shown:,} more" if len(names) > shown else "")
