"""HTML pieces of the Search tab: the build report, the query line, the results table, the score
of a result opened full size and the near-duplicate groups."""
from __future__ import annotations

import html
from pathlib import PurePosixPath

from explorer.index.build import EMPTY_INDEX
from explorer.inputs.sources import display_names

MAX_FAILURES_SHOWN = 50
MAX_GROUPS_SHOWN = 40      # near-duplicate groups drawn; the rest are counted
MAX_MEMBERS_SHOWN = 12     # thumbnails drawn per group


def _sentence(text: str) -> str:
    text = text.strip().rstrip(".")
    return html.escape(text[:1].upper() + text[1:]) + "."


def build_report(folder: str, report, notes: list[str], uploaded: bool = False) -> str:
    """What one indexing run did, with every file that failed and why. A run that left the index
    empty says so first, with what to do (the last of the report's notes: build.empty_notes)."""
    where = html.escape(folder) if uploaded else f"<code>{html.escape(folder)}</code>"
    counts = (f"{report.added} added, {report.updated} updated, {report.removed} removed, "
              f"{report.unchanged} unchanged, {len(report.failed)} failed")
    cancelled = getattr(report, "cancelled", False)
    run_notes = list(getattr(report, "notes", []))
    empty = run_notes.pop() if report.total == 0 and not cancelled and run_notes else None
    parts = [
        f'<p class="search-counts"><b>{report.total}</b> image(s) searchable in '
        f"{where}: {counts}.</p>",
        f'<p class="explorer-muted" id="search-timing">Indexing took {html.escape(report.timing_text())}.</p>'
    ]
    if empty:
        parts.insert(1, f'<p class="explorer-note search-empty">{_sentence(empty)}</p>')
    if cancelled:
        parts.insert(
            0,
            f'<p class="explorer-note search-cancelled">Indexing was {html.escape(report.cancel_text())}.</p>'
        )
    parts += [f'<p class="explorer-muted">{html.escape(n.rstrip("."))}.</p>' for n in [*notes, *run_notes]]
    for failure in report.failed[:MAX_FAILURES_SHOWN]:
        parts.append(f'<p class="explorer-error search-failure">Skipped <span class="search-failed-name">'
                     f"{html.escape(failure.path)}</span>: {html.escape(failure.reason)}</p>")
    if len(report.failed) > MAX_FAILURES_SHOWN:
        parts.append(f'<p class="explorer-error">… and {len(report.failed) - MAX_FAILURES_SHOWN} more.</p>')
    return "".join(parts)


def summary(query: str, shown: int, total: int, threshold: float, indexed: int | None = None) -> str:
    """The query and how many of its hits pass the threshold; with `indexed`, that the hits are the
    top `total` of that many images (the Results cap, said whenever it cuts)."""
    text = (f'<p class="search-query">{html.escape(query)} — <b>{shown}</b> of {total} result(s) '
            f"with score ≥ {threshold:.2f}.")
    if indexed == 0:
        return text + f'</p><p class="explorer-note search-empty">{_sentence(EMPTY_INDEX)}</p>'

    if indexed is not None and indexed > total:
        text += (
            f' <span class="search-cap">The results are the top {total:,} of {indexed:,} indexed images; '
            "raise “Results” to see more.</span>")
    if shown:
        return text + " Click an image to see it full size (and to find images like it).</p>"
    return text + '</p><p class="explorer-note">No result reaches the threshold; lower it to see more.</p>'


def results(shown: list[tuple]) -> str:
    """A table of the hits shown, each (hit, whether its thumbnail could be read): rank, file (relative
    to the indexed folder), score. A hit has `rank`, `path` and `score` (search_tab.Hit)."""
    if not shown:
        return ""
    rows = "".join(
        f'<tr><td class="sr-rank">{hit.rank}</td>'
        f'<td class="sr-name">{html.escape(hit.path)}</td>'
        f'<td class="sr-score">{hit.score:.3f}</td>'
        + ("" if ok else
           '<td class="explorer-error">gone or no longer decodes; build the index again</td>')
        + "</tr>"
        for hit, ok in shown)
    return ('<table class="explorer-table search-hits"><thead><tr><th>#</th><th>file</th>'
            f"<th>score (cosine)</th></tr></thead><tbody>{rows}</tbody></table>")


def captions(hits) -> dict[str, str]:
    """Relative path -> gallery caption, "0.712 · red/0.jpg": the score and the file's name, with as
    much of its folder as tells it from the other hits' files of the same name."""
    paths = list(dict.fromkeys(hit.path for hit in hits))
    names = display_names([PurePosixPath("/", path) for path in paths])
    return {path: name for path, name in zip(paths, names)}


def caption(hit, name: str | None = None) -> str:
    """A result's caption: its score and `name` (default: its file name)."""
    return f"{hit.score:.3f} · {name or PurePosixPath(hit.path).name}"


def opened(folder: str, root: str, count: int, model: str) -> str:
    """The report of an index opened from a folder (made by `clip-explorer index`)."""
    return (f'<p class="search-counts search-opened"><b>{count:,}</b> image(s) searchable in <code>'
            f"{html.escape(root)}</code>, from the index <code>{html.escape(folder)}</code> made by "
            f"{html.escape(model)}.</p>")


def score_line(hit, query: str) -> str:
    """Under a result opened full size: its rank and score for the query."""
    return (
        f'<p class="search-full-score">Result #{hit.rank} · score <b>{hit.score:.3f}</b> (cosine) · '
        f"{html.escape(query)}</p>")


def duplicates(groups: list[dict], threshold: float, indexed: int) -> str:
    """Near-duplicate groups, each {"paths", "min", "max", "over", "thumbs": [data URI or None]}."""
    if not groups:
        return (
            f'<p class="explorer-note dup-none">No near-duplicates among the {indexed:,} indexed images at '
            f"cosine ≥ {threshold:.3f}; lower the threshold to see more.</p>")
    images = sum(len(g["paths"]) for g in groups)
    parts = [
        f'<p class="dup-summary"><b>{len(groups)}</b> group(s) of near-duplicates ({images} images) among '
        f"{indexed:,} at cosine ≥ {threshold:.3f}. A group is joined by links at or above the threshold, so "
        "its least similar pair can be lower.</p>"
    ]
    parts += [_group(number, group) for number, group in enumerate(groups[:MAX_GROUPS_SHOWN], start=1)]
    if len(groups) > MAX_GROUPS_SHOWN:
        parts.append(
            f'<p class="explorer-muted">… and {len(groups) - MAX_GROUPS_SHOWN} more group(s); raise the '
            "threshold, or run `clip-explorer duplicates --index PATH` for all of them.</p>")
    return "".join(parts)


def _group(number: int, group: dict) -> str:
    figures = "".join(
        '<figure style="margin:0;width:136px;text-align:center">'
        + (f'<img src="{uri}" alt="" style="width:128px;height:128px;object-fit:contain;border-radius:4px;'
           'background:var(--background-fill-secondary)">' if uri else
           '<div class="explorer-error" style="height:128px">gone or no longer decodes</div>')
        + f'<figcaption class="dup-name" style="font-size:0.75rem;overflow-wrap:anywhere">{html.escape(path)}'
          "</figcaption></figure>"
        for path, uri in zip(group["paths"][:MAX_MEMBERS_SHOWN], group["thumbs"]))
    more = len(group["paths"]) - MAX_MEMBERS_SHOWN
    extra = f'<p class="explorer-muted">… and {more} more image(s).</p>' if more > 0 else ""
    return (
        '<div class="dup-group" style="margin:10px 0;padding:8px;'
        'border:1px solid var(--border-color-primary);border-radius:8px">'
        f'<p class="dup-head" style="margin:0 0 6px"><b>Group {number}</b> · '
        f'{len(group["paths"])} images · cosine min <span class="dup-min">{group["min"]:.3f}</span>, max '
        f'<span class="dup-max">{group["max"]:.3f}</span> over {html.escape(group["over"])}</p>'
        f'<div style="display:flex;flex-wrap:wrap;gap:8px">{figures}</div>{extra}</div>')
