"""HTML pieces of the Search tab: the build report, the query line and the results table."""
from __future__ import annotations

import html
from pathlib import PurePosixPath

MAX_FAILURES_SHOWN = 50


def build_report(folder: str, report, notes: list[str], uploaded: bool = False) -> str:
    """What one indexing run did, with every file that failed and why."""
    where = html.escape(folder) if uploaded else f"<code>{html.escape(folder)}</code>"
    counts = (f"{report.added} added, {report.updated} updated, {report.removed} removed, "
              f"{report.unchanged} unchanged, {len(report.failed)} failed")
    parts = [f'<p class="search-counts"><b>{report.total}</b> image(s) searchable in '
             f"{where}: {counts}.</p>",
             f'<p class="explorer-muted" id="search-timing">Indexing took {html.escape(report.timing_text())}.</p>']
    parts += [f'<p class="explorer-muted">{html.escape(n.rstrip("."))}.</p>'
              for n in [*notes, *getattr(report, "notes", [])]]
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
    if indexed is not None and indexed > total:
        text += (f' <span class="search-cap">The results are the top {total:,} of {indexed:,} indexed images; '
                 "raise “Results” to see more.</span>")
    if shown:
        return text + " Click an image to find images like it.</p>"
    return text + '</p><p class="explorer-note">No result reaches the threshold; lower it to see more.</p>'


def results(shown: list[dict]) -> str:
    """A table of the hits shown: rank, file (relative to the indexed folder), score."""
    if not shown:
        return ""
    rows = "".join(
        f'<tr><td class="sr-rank">{hit["rank"]}</td>'
        f'<td class="sr-name">{html.escape(hit["path"])}</td>'
        f'<td class="sr-score">{hit["score"]:.3f}</td>'
        + ("" if hit.get("ok", True) else
           '<td class="explorer-error">gone or no longer decodes; build the index again</td>')
        + "</tr>"
        for hit in shown)
    return ('<table class="explorer-table search-hits"><thead><tr><th>#</th><th>file</th>'
            f"<th>score (cosine)</th></tr></thead><tbody>{rows}</tbody></table>")


def caption(hit: dict) -> str:
    return f'{hit["score"]:.3f} · {PurePosixPath(hit["path"]).name}'
