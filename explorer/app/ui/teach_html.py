"""HTML of the Teach by example tab: the run's summary, the accuracy table against zero-shot (with
the chosen hyper-parameters and how they were chosen: a search whose values all tied says so, and
its row shows the default used), each method's departures from its paper, and the sorting summary.
Text only; every number comes from explorer/science/fewshot_experiment.py (an ExperimentResult)."""
from __future__ import annotations

import html

from .common import notes_html


def _params(chosen: list[dict], informative: list[bool] | None = None) -> str:
    first = chosen[0] if chosen else {}
    if not first:
        return "–"
    text = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in first.items())
    if informative and not informative[0]:
        text += " (default, not chosen)"
    if len(chosen) > 1 and any(c != first for c in chosen[1:]):
        text += f" (seed 0; {len(chosen)} seeds chose their own)"
    return text


def _how(score) -> str:
    """How seed 0's values were chosen, and how many seeds' searches chose nothing (all values tied)."""
    tied, seeds = score.tied_seeds(), len(score.informative)
    if seeds > 1 and tied and (tied > 1 or score.informative[0]):
        return f"{score.how} · {tied} of {seeds} seeds: not chosen, the default used"
    return score.how


def departures(result) -> str:
    """Each method's departures from its paper (fewshot.departures), in a closed details element."""
    items = [f"<li><b>{html.escape(name)}</b>: {html.escape('; '.join(s.departures))}.</li>"
             for name, s in result.report.methods.items() if s.departures]
    if not items:
        return ""
    return ('<details id="teach-departures"><summary>Where each method departs from its paper</summary>'
            f"<ul>{''.join(items)}</ul></details>")


def summary(result, source: str, model_name: str) -> str:
    report = result.report
    shots = "every training image" if report.shots is None else \
        f"{report.shots} per class, {report.seeds} seed(s)"
    return (f'<p id="teach-summary-line"><b>{len(result.class_names)}</b> classes from {html.escape(source)} '
            f"({html.escape(model_name)}): <b>{report.train_images}</b> training images used ({shots}), "
            f"<b>{report.test_images}</b> held-out test images.</p>")


def accuracy_table(result) -> str:
    """One row per method: top-1 (± spread over seeds), top-k, the gain over zero-shot, what was
    chosen and how, fitting and scoring time."""
    scores = result.report.methods
    base = scores["zero-shot"].top1
    seeds = result.report.seeds
    best = result.best()
    rows = []
    for name, s in scores.items():
        spread = f" ± {s.top1_spread:.1%}" if seeds > 1 and name != "zero-shot" else ""
        gain = "–" if name == "zero-shot" else f"{(s.top1 - base) * 100:+.1f} pts"
        mark = ' class="teach-best"' if name == best and name != "zero-shot" else ""
        chosen = "" if name == "zero-shot" else f' data-informative="{str(all(s.informative)).lower()}"'
        rows.append(
            f'<tr{mark} data-method="{html.escape(name)}"{chosen}><td>{html.escape(name)}</td>'
            f'<td class="teach-top1">{s.top1:.1%}{spread}</td><td>{s.top5:.1%}</td><td>{gain}</td>'
            f'<td class="teach-chosen">{html.escape(_params(s.params, s.informative))}</td>'
            f'<td class="explorer-muted teach-how">{html.escape(_how(s))}</td>'
            f"<td>{s.fit_seconds * 1000:.0f} ms / {s.score_seconds * 1000:.0f} ms</td></tr>")
    top_k = next(iter(scores.values())).top_k
    return ('<table class="explorer-table" id="teach-accuracy"><thead><tr><th>method</th><th>top-1</th>'
            f"<th>top-{top_k}</th><th>vs zero-shot</th><th>chosen</th><th>how chosen</th><th>fit / score</th>"
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            + departures(result) + notes_html(result.notes))


def changes_heading(method: str, fixed: int, broken: int, shown: int) -> str:
    if method == "zero-shot":
        return ('<p class="explorer-muted">Pick an adapted method to see what it changes against '
                "zero-shot.</p>")
    cap = f" (at most {shown} shown each)" if max(fixed, broken) > shown else ""
    return (
        f'<p id="teach-changes-line">Against zero-shot, <b>{html.escape(method)}</b> fixes <b>{fixed}</b> '
        f"held-out image(s) and breaks <b>{broken}</b>{cap}. Its classifier is the one Apply and Download "
        "use (the shots drawn with seed 0).</p>")


def sort_summary(sorted_, method: str, source: str, shown: int, extra_classes: list[str]) -> str:
    counts = ", ".join(f"{html.escape(c)} {len(items)}" for c, items in sorted_.classes.items())
    parts = [
        f'<p id="teach-sort-line">Sorted {html.escape(source)} with <b>{html.escape(method)}</b>: {counts}; '
        f"<b>none of these</b> {len(sorted_.none)}.</p>",
        f'<p class="explorer-muted">“None of these”: {html.escape(sorted_.why)}. Each gallery shows at most '
        f"{shown} images, best first.</p>"
    ]
    if extra_classes:
        parts.append(f'<p class="explorer-note">Classes without a gallery (counts above): '
                     f"{html.escape(', '.join(extra_classes))}.</p>")
    return "".join(parts)
