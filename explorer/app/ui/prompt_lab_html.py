"""HTML pieces of the Prompt lab's results. Formatting only: the numbers come from the core."""
from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from explorer.embed.probability import NoneRule, Scoring
from explorer.embed.tokens import elide, shown
from explorer.science.evaluate import none_of_these, template_verdicts

from .common import failures_html, method_line, notes_html, switches_html

# A table of more rows than its box holds scrolls inside it: its header stays in view, a line above
# says so, and a shadow at the box's bottom edge shows while more rows lie below (the "scroll shadow":
# covers that scroll with the content hide it at the end). One wider than its column scrolls sideways.
_SHADOW = ("background:linear-gradient(var(--block-background-fill,#fff) 30%,transparent) center top,"
           "linear-gradient(transparent,var(--block-background-fill,#fff) 70%) center bottom,"
           "radial-gradient(farthest-side at 50% 100%,rgba(0,0,0,.25),transparent) center bottom;"
           "background-repeat:no-repeat;background-size:100% 30px,100% 30px,100% 12px;"
           "background-attachment:local,local,scroll")
_SCROLL = ('<div class="pl-scroll" style="max-height:{h}px;overflow:auto;border:1px solid '
           'var(--border-color-primary);border-radius:6px;' + _SHADOW + '">{body}</div>')
_HEAD = ("position:sticky;top:0;z-index:1;"
         "background:var(--block-background-fill,var(--background-fill-primary))")
_NOWRAP = "white-space:nowrap"
# px: a row is at least 37 px high on the page (one line), so more than height // ROW_HEIGHT rows always
# overflow a box of `height` (with its header); up to that many are drawn whole, with no box.
ROW_HEIGHT = 38
COLLAPSE_FROM = 3    # notes and skipped files: this many or more are folded under one summary line
_HELPS = "background:rgba(44,160,44,0.12)"
_HURTS = "background:rgba(214,39,40,0.12)"
_VERDICTS = {"helps": ("▲&nbsp;helps", _HELPS), "hurts": ("▼&nbsp;hurts", _HURTS), "": ("", "")}
WEIGHTING_NAMES = {"mean": "equal average", "zpe": "ZPE", "single": "one template"}
MAX_IMAGE_ROWS = 200


@dataclass
class CalibrationData:
    """What the calibration view refits at each temperature: the run's image x class cosines [N, C],
    the true class index of each image [N] (numpy arrays, carried here, never computed on) and the
    model's scoring rule."""
    cosines: Any
    true_idx: Any
    scoring: Scoring


@dataclass
class LabFlags:
    """What the page keeps of a run (the Prompt lab's gr.State) so that the "none of these" sliders and
    the calibration view redraw without a new run: per image its name, best class, true class (None
    when unlabelled), max cosine and max probability [N] (numpy arrays); the model's default "none of
    these" rule and which probabilities it gives (softmax or sigmoid); the calibration data (None when
    unlabelled); what the cosine is called under the run's weighting (evaluate.cosine_name: a ZPE run's
    is a weighted mean cosine over the prompts)."""
    names: list[str]
    predicted: list[str]
    true: list[str] | None
    max_cosine: Any
    max_probability: Any
    rule: NoneRule
    probability: str
    calibration: CalibrationData | None = None
    cosine: str = "cosine"


def _pct(x) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def _bar(x: float, colour: str = "#4f6bed") -> str:
    width = max(0.0, min(1.0, float(x))) * 100
    return (
        f'<div style="background:var(--background-fill-secondary);width:90px;height:8px;border-radius:4px">'
        f'<div style="background:{colour};width:{width:.0f}%;height:8px;border-radius:4px"></div></div>')


def _table(head: list[str], rows: list[str], height: int | None = 420, what: str = "rows") -> str:
    """A table drawn whole (None, or no more rows than a box of `height` px holds), else in a box of
    that height that scrolls, with a line above it saying so."""
    th = "".join(f"<th>{h}</th>" for h in head)
    body = (f'<table class="explorer-table"><thead style="{_HEAD}"><tr>{th}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')
    if height is None or len(rows) <= height // ROW_HEIGHT:
        return f'<div class="pl-table" style="overflow-x:auto">{body}</div>'
    hint = (f'<p class="explorer-muted pl-scroll-hint">{len(rows)} {what}: scroll inside the table to see '
            'them all.</p>')
    return hint + _SCROLL.format(h=height, body=body)


def collapsed(summary_html: str, detail_html: str, element_id: str = "", kind: str = "muted") -> str:
    """`detail_html` folded under a one-line `summary_html`: one click shows it (a <details>)."""
    ident = f' id="{element_id}"' if element_id else ""
    return (f'<details{ident} class="pl-details" style="margin:0.35rem 0"><summary class="explorer-{kind}" '
            f'style="cursor:pointer">{summary_html}</summary>{detail_html}</details>')


def notes_and_failures(notes: list[str], failures) -> str:
    """The run's notes and skipped files: a few shown as they are, more folded under a count."""
    parts = []
    if notes:
        shown_notes = notes_html(notes)
        parts.append(shown_notes if len(notes) < COLLAPSE_FROM else
                     collapsed(f"{len(notes)} notes on this run (show them)", shown_notes, "pl-notes"))
    if failures:
        skipped = failures_html(failures)
        parts.append(skipped if len(failures) < COLLAPSE_FROM else collapsed(
            f"⚠ {len(failures)} file(s) skipped: they could not be read (show which and why)", skipped,
            "pl-failures", "error"))
    return "".join(parts)


def summary(report) -> str:
    """Headline numbers, where the images came from, the ZPE bias source, skipped files and notes."""
    images, parts = report.images, []
    n, c = len(images), len(report.class_names)
    how = WEIGHTING_NAMES[report.weighting]
    if report.result is not None:
        r = report.result
        parts.append(
            f'<div class="pl-headline" style="display:flex;gap:2rem;align-items:baseline">'
            f'<div><span class="explorer-muted">top-1</span> <b id="pl-top1" style="font-size:1.6rem">'
            f'{r.top1:.1%}</b></div><div><span class="explorer-muted">top-{r.top_k}</span> '
            f'<b id="pl-top5" style="font-size:1.6rem">{r.top5:.1%}</b></div></div>')
        parts.append(f'<p>{n} labelled image(s), {c} classes, {len(report.slots)} prompt(s) ensembled by '
                     f'<b>{how}</b>. Images: {html.escape(images.source)}.</p>')
    else:
        flagged = "see the “none of these” table below"
        parts.append(
            f'<p>{n} unlabelled image(s), {c} class names, {len(report.slots)} prompt(s) ensembled by '
            f'<b>{how}</b>. No labels are known, so there is no accuracy: the table shows each '
            f'prompt\'s ZPE weight, and {flagged}. Images: {html.escape(images.source)}.</p>')
    if zpe_in_force(report):  # the ZPE notes only where ZPE is the option in force
        parts.append(f'<p class="explorer-note" id="pl-bias-source"><b>ZPE bias correction:</b> '
                     f'{html.escape(report.zpe.bias_source)}.</p>')
    if report.scoring is not None:  # which probabilities "max probability" and the calibration view show
        parts.append(
            f'<p class="explorer-muted" id="pl-probability">{html.escape(report.scoring.explain())}</p>')
    if report.prompt_source is not None:  # WaffleCLIP: whose prompts, drawn how, and what differs
        parts.append(f'<p class="explorer-muted" id="pl-prompt-source">Prompts: '
                     f'{method_line(report.prompt_source)}</p>')
    if report.switches is not None:  # the numbers above are plain; these are the switched ones beside them
        parts.append(switches_html(report.switches, images.names, "pl"))
    parts.append(budget_and_selection(report))
    parts.append(notes_and_failures(images.notes + report.notes, images.failures))
    return "".join(parts)


def zpe_in_force(report) -> bool:
    """Whether ZPE is what the run shows: its weighting, or unlabelled images (whose table is ZPE's)."""
    return report.weighting == "zpe" or report.result is None


def per_template(report) -> str:
    """One row per prompt, original row numbers kept, with its longest prompt in tokens against the
    model's context. With labels: sorted by accuracy alone; each prompt's contribution (the ensemble
    with it minus without it), paired over the images with its 95% interval, shaded "helps"/"hurts"
    only when the difference is beyond chance (evaluate.template_verdicts)."""
    zpe, kept = report.zpe, _kept_column(report)
    if report.result is not None:
        scores, verdicts = report.result.per_template, template_verdicts(report.result)
        average, ensemble_top1 = report.result.mean_template_accuracy, report.result.top1
        order = sorted(range(len(scores)), key=lambda i: -scores[i].accuracy)
        rows = []
        for i in order:
            s = scores[i]
            verdict, style = _VERDICTS[verdicts[i]]
            rows.append(
                f'<tr style="{style}"><td>{i + 1}</td>{_template_cell(s.template)}'
                f"{_num(_pct(s.accuracy))}{_tokens_cell(report, i)}"
                f'<td class="pl-vs-ensemble" style="{_NOWRAP}">{_evidence_cell(report.evidence[i])}</td>'
                f'<td class="pl-verdict" style="{_NOWRAP}">'
                f'{verdict or (_NO_CLEAR if report.evidence[i] else _ONLY)}</td>'
                f"{_num(f'{s.weight:.3f}')}{_num(f'{s.zpe_weight:.3f}')}{kept(i)}{_num(f'{s.zpe_score:.2f}')}"
                "</tr>")
        head = [
            "row", "template", "accuracy alone", "tokens", "contribution, points [95%]", "verdict",
            "weight used", "ZPE weight"
        ] + (["ZPE kept"] if kept(None) else []) + ["ZPE score"]
        caption = (
            f'<p class="explorer-muted">Sorted by each prompt\'s own top-1 accuracy. Average over prompts '
            f'{average:.1%}; the ensemble reaches {ensemble_top1:.1%}. “contribution”: the ensemble\'s '
            f'accuracy with this prompt minus without it, on the same {len(report.images)} images, in '
            f'points, with a paired bootstrap 95% interval and McNemar\'s exact p; “helps”/“hurts” only when '
            f'p &lt; 0.05 and the interval excludes 0. Tokens: the longest prompt of the row, start and end '
            f'included, against the {report.context_length} the model reads.</p>')
        return caption + _table(head, rows, what="prompts")
    order = sorted(range(len(report.slots)), key=lambda i: -float(zpe.scores[i]))
    rows = [f'<tr><td>{i + 1}</td>{_template_cell(report.slots[i])}{_tokens_cell(report, i)}'
            f"{_num(f'{float(report.weights[i]):.3f}')}{_num(f'{float(zpe.weights[i]):.3f}')}{kept(i)}"
            f"{_num(f'{float(zpe.scores[i]):.2f}')}</tr>" for i in order]
    caption = ('<p class="explorer-muted">No labels: prompts sorted by ZPE score (higher = more confident '
               'on these images after de-biasing).</p>')
    head = ["row", "template", "tokens", "weight used", "ZPE weight"] + (["ZPE kept"] if kept(None) else [])
    return caption + _table(head + ["ZPE score"], rows, what="prompts")


_NO_CLEAR = '<span class="explorer-muted">no clear difference</span>'
_ONLY = '<span class="explorer-muted">the only prompt: nothing to compare it with</span>'
_OVER = "color:#d62728;font-weight:700"


def _num(text: str) -> str:
    """A number's cell: never broken over two lines."""
    return f'<td style="{_NOWRAP}">{text}</td>'


def _name_cell(name: str) -> str:
    """A class name's cell: wide enough that a name of two short words is not broken over two lines."""
    return f'<td style="min-width:8em">{html.escape(name)}</td>'


def _tokens_cell(report, i: int) -> str:
    """'9 / 77'; in red with a warning sign when the row's longest prompt is cut."""
    if not report.slot_tokens:
        return "<td></td>"
    count, limit = report.slot_tokens[i], report.context_length
    if count > limit:
        return (f'<td class="pl-tokens" style="{_OVER};{_NOWRAP}" title="cut: the end is never read">'
                f'⚠ {count} / {limit}</td>')
    return f'<td class="pl-tokens" style="{_NOWRAP}">{count} / {limit}</td>'


def _template_cell(template: str) -> str:
    """The template, its middle elided past 70 characters (the whole of it on hover); wide enough that
    a short one stays on one line."""
    return (f'<td class="pl-template" style="min-width:13em" title="{html.escape(template)}">'
            f'{html.escape(elide(template, 70))}</td>')


def _evidence_cell(e) -> str:
    return html.escape(e.describe()) if e is not None else ""


def _kept_column(report):
    """With MAD selection: a cell per row saying whether ZPE kept it (called with None: is there one?)."""
    if report.zpe.mad_threshold is None:
        return lambda i: "" if i is not None else False
    return lambda i: True if i is None else (
        f'<td class="pl-zpe-kept">{"✓" if report.zpe.selected[i] else "—"}</td>')


def budget_and_selection(report) -> str:
    """Which prompts ZPE uses (when ZPE is in force, or MAD selection was chosen: the "ZPE kept" column),
    and the prompts cut at the context length: one line, each prompt named with its count one click away."""
    said = zpe_in_force(report) or report.zpe.mad_threshold is not None
    parts = [f'<p class="explorer-note" id="pl-zpe-selection"><b>ZPE prompts:</b> '
             f'{html.escape(report.zpe.selection)}.</p>'] if said else []
    if report.warnings:
        items = "".join(f"<li>{html.escape(w)}</li>"
                        for w in shown([c.message(width=90) for c in report.cuts]))
        parts.append(
            f'<details class="explorer-error" id="pl-token-warnings" style="{_WARN_BOX}"><summary '
            f'style="cursor:pointer"><b>⚠ {len(report.warnings)} prompt(s) longer than the model\'s '
            f'context of {report.context_length} tokens</b>: the end of each is cut before the model reads '
            f'it, so its accuracy says nothing about the words lost (show which).</summary><ul>{items}</ul>'
            '</details>')
    return "".join(parts)


_WARN_BOX = "border:1px solid #d62728;border-radius:6px;padding:0.4rem 0.75rem;margin:0.5rem 0"


def per_class(result) -> str:
    rows = [f"<tr>{_name_cell(name)}<td>{result.class_counts[name]}</td>"
            f"{_num(_pct(result.per_class[name]))}<td>{_bar(result.per_class[name] or 0)}</td></tr>"
            for name in result.class_names]
    return _table(["class", "images", "accuracy", ""], rows, height=360, what="classes")


def comparison(rows, evidence=None) -> str:
    """One line per prompt set, equal average and ZPE side by side, all on the same image embeddings;
    the best top-1 in bold. `evidence` (one PairedDifference per row, lab.LabReport.compare_evidence):
    each row's top-1 minus this run's, paired over the images, marked only when beyond chance."""
    if not rows:
        return ""
    best = max(r.top1 for r in rows)
    by_set: dict[str, dict[str, object]] = {}
    versus = {(r.prompt_set, r.weighting): e for r, e in zip(rows, evidence or [])}
    for r in rows:
        by_set.setdefault(r.prompt_set, {})[r.weighting] = r
    k = rows[0].result.top_k

    def cell(r, attr):
        if r is None:
            return "<td></td>"
        value = getattr(r, attr)
        style = f' style="{_NOWRAP};font-weight:700"' if attr == "top1" and value == best else \
            f' style="{_NOWRAP}"'
        return f"<td{style}>{_pct(value)}{vs(r) if attr == 'top1' else ''}</td>"

    def vs(r):
        """Under a top-1: that row minus this run, small; ▲/▼ and shaded only when beyond chance."""
        e = None if r is None else versus.get((r.prompt_set, r.weighting))
        if e is None:
            return ""
        mark, style = {"better": ("▲ ", _HELPS), "worse": ("▼ ", _HURTS)}.get(e.verdict, ("", ""))
        return (f'<br><span class="pl-compare-vs explorer-muted" style="font-size:0.8em;{style}">'
                f"{mark}{html.escape(e.describe())}</span>")

    out = []
    for name, runs in by_set.items():
        mean, zpe = runs.get("mean"), runs.get("zpe")
        count = len((mean or zpe).result.per_template)
        above = ' <span class="explorer-muted">(above)</span>' if name == "your set" else ""
        out.append(
            f"<tr><td>{html.escape(name)}{above}</td><td>{count}</td>{cell(mean, 'top1')}{cell(zpe, 'top1')}"
            f"{cell(mean, 'top5')}{cell(zpe, 'top5')}</tr>")
    head = ["prompt set", "prompts", "top-1 equal", "top-1 ZPE", f"top-{k} equal", f"top-{k} ZPE"]
    note = ('<p class="explorer-muted">All rows score the same image embeddings; only the prompts change. '
            'Under each top-1, “− this run”: that top-1 minus the run above, in points [paired bootstrap 95% '
            'interval] and McNemar\'s exact p; ▲/▼ only when p &lt; 0.05 and the interval excludes 0.</p>')
    return _table(head, out, height=None) + note  # a few rows: never cut at a height


def none_table(state: LabFlags | None, min_cosine: float, min_probability: float) -> str:
    """Images whose best class fits badly (below either threshold), flagged ones first."""
    if not state:
        return ""
    flags = none_of_these(state.max_cosine, state.max_probability, min_cosine=min_cosine,
                          min_probability=min_probability)
    labelled = state.true is not None
    order = sorted(range(len(flags)), key=lambda i: not flags[i])[:MAX_IMAGE_ROWS]
    rows = []
    for i in order:
        truth = _name_cell(state.true[i]) if labelled else ""
        style = 'style="background:rgba(240,138,36,0.15)"' if flags[i] else ""
        rows.append(f'<tr {style}><td>{html.escape(state.names[i])}</td>{truth}'
                    f'{_name_cell(state.predicted[i])}{_num(f"{state.max_cosine[i]:.3f}")}'
                    f'{_num(f"{state.max_probability[i]:.1%}")}'
                    f'<td>{"⚠ none of these" if flags[i] else ""}</td></tr>')
    kind, cosine = state.probability, f"max {html.escape(state.cosine)}"
    head = ["image"] + (["true class"] if labelled else
                        []) + ["best class", cosine, f"max probability ({kind})", "flag"]
    count = (
        f'<p id="pl-none-count"><b>{int(flags.sum())}</b> of {len(flags)} image(s) flagged “none of these” '
        f"({cosine} &lt; {min_cosine:.2f} or max probability &lt; {min_probability:.0%}).</p>")
    more = len(flags) - len(order)
    tail = f'<p class="explorer-muted">…{more} more image(s) not shown.</p>' if more > 0 else ""
    return count + none_rule_note(state.rule, min_cosine, min_probability) + _table(
        head, rows, height=360, what="images") + tail


def none_rule_note(rule: NoneRule | None, min_cosine: float, min_probability: float) -> str:
    """Which rule is in force: the model's default (on its own softmax or sigmoid scale), or yours."""
    if not rule:
        return ""
    default = (round(min_cosine, 2) == round(rule.min_cosine, 2)
               and round(min_probability, 2) == round(rule.min_probability, 2))
    said = html.escape(rule.text)
    text = (f"Rule in force: the model's default, {said}." if default else
            f"Rule in force: your thresholds. The model's default would be: {said} "
            f"(cosine {rule.min_cosine:.2f}, probability {rule.min_probability:.0%}).")
    return f'<p class="explorer-muted" id="pl-none-rule">{text}</p>'
