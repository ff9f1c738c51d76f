"""HTML of the Compare models tab: the summary (one column per model: accuracy, calibration, the best
prompt set, cost and speed), the pairwise evidence in the Prompt lab's plain words (a difference is called
real only when the core's paired evidence says so), the per-image table (each model's top labels, the
disagreeing rows marked), the gallery's captions, and the agreement of two indexes of one folder. Text
only; every number comes from the core's report (explorer/science/model_compare.py: CompareReport,
IndexAgreement). `names`: how the page names each model (hosted: never a server path), in the runs'
order."""
from __future__ import annotations

import html

from explorer.science.evaluate import ALPHA  # the level the core's verdicts use

from .common import failures_html, notes_html

MAX_ROWS = 200        # rows the per-image table shows (the disagreeing ones first), then how many more
TABLE_HEIGHT_PX = 460  # the per-image table scrolls within this height
TOP_LABELS = 3        # each model's top labels per image
MIB = 2**20
_DISAGREE = "background: rgba(234, 88, 12, 0.12);"
_WRAP = "overflow-wrap: anywhere; min-width: 7em;"
_SMALL = 'class="explorer-muted" style="font-size: 0.85em;"'
_MUTED_NEVER = "(never timed: the embeddings were stored without a time)"


def _e(value) -> str:
    return html.escape(str(value))


def _pct(value) -> str:
    return "–" if value is None else f"{float(value):.1%}"


def _mib(value) -> str:
    return "–" if value is None else f"{value / MIB:,.1f} MiB"


def _table(headers: list[str], rows: list[list[str]], elem: str, row_styles: list[str] | None = None) -> str:
    """An explorer-table (cells already HTML) with an id; `row_styles`: one style per row ('' for none)."""
    head = "".join(f'<th style="{_WRAP}">{h}</th>' if h else "<th></th>" for h in headers)
    styles = row_styles or [""] * len(rows)
    body = "".join(f'<tr style="{s}">' + "".join(f"<td>{c}</td>" for c in row) + "</tr>"
                   for row, s in zip(rows, styles))
    return (f'<div style="overflow-x: auto;"><table class="explorer-table" id="{elem}"><thead><tr>{head}</tr>'
            f"</thead><tbody>{body}</tbody></table></div>")


# ---- the summary: one column per model ----------------------------------------------------------------
def _speed(run) -> str:
    if run.seconds_per_image is None:
        return f'– <span class="explorer-muted">{_MUTED_NEVER}</span>'
    when = "measured now" if run.timed_now else "when its embeddings were stored"
    return f'{run.seconds_per_image * 1000:,.1f} <span class="explorer-muted">({when})</span>'


def _gflops(cost) -> str:
    if cost.image_gflops is None and cost.text_gflops is None:
        return f'– <span class="explorer-muted">({_e(cost.gflops_source)})</span>'
    shown = " / ".join("–" if v is None else f"{v:,.2f}" for v in (cost.image_gflops, cost.text_gflops))
    return f"{shown}<br><span {_SMALL}>{_e(cost.gflops_source)}</span>"


def _params(cost) -> str:
    return (f"{cost.params / 1e6:,.2f} M <span {_SMALL}>(image {cost.image_params / 1e6:,.2f} M, "
            f"text {cost.text_params / 1e6:,.2f} M)</span>")


def _memory(cost) -> str:
    peak = "" if cost.peak_gpu_bytes is None else \
        f'<br><span class="explorer-muted">peak GPU {_mib(cost.peak_gpu_bytes)}</span>'
    return _mib(cost.weight_bytes) + peak


def _best(run) -> str:
    best = run.best_set
    if not best:
        return "–"
    return f"{_e(best['prompt_set'])} ({_e(best['weighting'])}): {_pct(best['top1'])}"


def _per_ms(row: dict) -> str:
    """Accuracy points bought per millisecond of encoding an image (top-1 in points ÷ ms per image)."""
    top1, ms = row.get("top1"), row.get("ms_per_image")
    if top1 is None or not ms:
        return "–"
    return f"{100 * float(top1) / float(ms):,.2f} <span {_SMALL}>points per ms</span>"


def summary(report, names: list[str]) -> str:
    """The comparison's table, one column per model, with what the images were and the report's notes."""
    rows_of = [run.as_dict() for run in report.runs]
    labelled = report.true is not None
    k = min(5, len(report.class_names))
    lines = [
        ("accuracy (top-1)", [_pct(run.top1()) for run in report.runs]) if labelled else None,
        (f"top-{k}", [_pct(run.top5()) for run in report.runs]) if labelled else None,
        ("ECE (expected calibration error, lower is better)",
         ["–" if run.ece is None else f"{run.ece:.3f}" for run in report.runs]) if labelled else None,
        ("best prompt set", [_best(run) for run in report.runs]) if labelled else None,
        ("scoring rule", [_e(run.scoring) for run in report.runs]),
        ("parameters", [_params(run.cost) for run in report.runs]),
        ("GFLOPs per image / per text", [_gflops(run.cost) for run in report.runs]),
        ("ms per image (read + encode)", [_speed(run) for run in report.runs]),
        ("weight memory", [_memory(run.cost) for run in report.runs]),
        ("embedding store on disk", [_mib(run.store_bytes) for run in report.runs]),
        ("accuracy per ms", [_per_ms(row) for row in rows_of]) if labelled else None,
        ("images encoded now", [f"{run.encoded:,}" for run in report.runs]),
    ]
    rows = [[f"<b>{_e(what)}</b>", *cells] for what, cells in (line for line in lines if line)]
    table = _table(["", *(f"<b>{_e(n)}</b>" for n in names)], rows, "cmp-summary-table")
    return heading(report, names) + table + per_class(report, names) + notes_html(report.notes)


def per_class(report, names: list[str]) -> str:
    """Labelled: each class's accuracy under each model (the Prompt lab's per-class numbers), the
    classes where the models differ most first, so a model that is better overall but worse on the
    class a person cares about shows."""
    results = [run.report.result for run in report.runs]
    if report.true is None or not results or any(result is None for result in results):
        return ""
    classes = results[0].class_names

    def spread(name: str) -> float:
        values = [v for v in (result.per_class[name] for result in results) if v is not None]
        return max(values) - min(values) if values else -1.0

    rows = [[f"<b>{_e(name)}</b> <span {_SMALL}>({results[0].class_counts[name]} images)</span>",
             *(_pct(result.per_class[name]) for result in results)]
            for name in sorted(classes, key=lambda name: (-spread(name), name))]
    table = _table(["class", *(f"<b>{_e(n)}</b>" for n in names)], rows, "cmp-per-class-table")
    return ("<details><summary>Accuracy per class (the classes where the models differ most first)"
            f"</summary>{table}</details>")


def heading(report, names: list[str]) -> str:
    """What was compared, on which images, and (Cancel) that the runs stopped early."""
    labelled = report.true is not None
    about = (f"labelled by {len(report.class_names)} class folders" if labelled else
             f"unlabelled, scored against {len(report.class_names)} typed labels")
    stopped = ""
    if report.cancelled:
        stopped = (f'<p class="explorer-note" id="cmp-cancelled">Cancelled: {len(report.runs)} model(s) ran '
                   "before Cancel was pressed; the table shows those.</p>")
    return (f"<h4>{len(names)} models on {len(report.names)} images</h4>{stopped}"
            f'<p class="explorer-muted">The same images for every model ({about}), matched by name; each '
            "model ran alone, one after another, its embeddings kept in the app's index of the folder "
            f"(a second comparison encodes nothing). {len(report.disagreements)} image(s) where the models' "
            "top labels differ.</p>")


# ---- pairs -------------------------------------------------------------------------------------------
def _evidence(evidence, a: str, b: str) -> str:
    """A's accuracy minus B's on the same images (explorer.science.evaluate.PairedDifference, as
    model_compare.PairEvidence gives it) in words: a verdict only when the core gives one, else that the
    difference is within chance on these images."""
    numbers = (f"{_e(a)} − {_e(b)}: {_e(evidence.describe())} (percentage points, 95% interval, "
               "McNemar's p)")
    if evidence.verdict:
        return (f'<span class="cmp-real"><b>{_e(a)}</b> is <b>{_e(evidence.verdict)}</b> than <b>{_e(b)}</b> '
                f"on these {evidence.n} images: {numbers}.</span>")
    return (f'<span class="cmp-chance">No clear difference on these {evidence.n} images: {numbers}. The '
            f"interval includes 0 or p ≥ {ALPHA}: not beyond chance.</span>")


def pairs(report, names: list[str]) -> str:
    """One line per pair of models: how often their top labels agree and, labelled, the paired evidence."""
    if not report.pairs:
        return ""
    lines = []
    for pair in report.pairs:
        a, b = names[pair.a], names[pair.b]
        said = (f"<b>{_e(a)}</b> and <b>{_e(b)}</b>: the same top label on {_pct(pair.agreement)} of the "
                f"{len(report.names)} images.")
        if pair.evidence is not None:
            said += " " + _evidence(pair.evidence, a, b)
        lines.append(f'<li class="cmp-pair">{said}</li>')
    unlabelled = "" if report.true is not None else (
        '<p class="explorer-muted">Unlabelled images: no accuracy, so no evidence of which model is right; '
        "the agreement says how often they answer alike, the gallery shows where they do not.</p>")
    return f"<h4>Pairs</h4><ul>{''.join(lines)}</ul>{unlabelled}"


# ---- per image -----------------------------------------------------------------------------------------
def _labels_cell(top: list[tuple[str, float]], true: str | None) -> str:
    """The top label in bold (✓/✗ against the true one), the next ones small on the line below."""
    if not top:
        return "–"
    (label, p), rest = top[0], top[1:]
    mark = "" if true is None else (" ✓" if label == true else " ✗")
    others = " · ".join(f"{_e(lab)} {_pct(q)}" for lab, q in rest)
    return f"<b>{_e(label)} {_pct(p)}</b>{mark}" + (f"<br><span {_SMALL}>{others}</span>" if others else "")


def per_image(report, names: list[str]) -> str:
    """Each image's top labels by every model (probabilities by each model's own rule), the true label
    when labelled; the rows where the models disagree first, marked ≠ and shaded."""
    labelled = report.true is not None
    order = list(report.disagreements) + [i for i in range(len(report.names)) if i not in
                                          set(report.disagreements)]
    rows, styles = [], []
    for i in order[:MAX_ROWS]:
        true = report.true[i] if labelled else None
        cells = [_labels_cell(top, true) for top in report.top_labels(i, TOP_LABELS)]
        differ = i in set(report.disagreements)
        rows.append(["≠" if differ else "", _e(report.names[i]), *([_e(true)] if labelled else []), *cells])
        styles.append(_DISAGREE if differ else "")
    headers = ["", "image", *(["true"] if labelled else []), *(_e(n) for n in names)]
    more = "" if len(order) <= MAX_ROWS else \
        f'<p class="explorer-muted">… and {len(order) - MAX_ROWS} more images.</p>'
    return ("<h4>Per image</h4><p class=\"explorer-muted\">Each model's top labels with their probability "
            "(by the model's own rule); ≠ marks the images where the top labels differ (listed first).</p>"
            f'<div style="max-height: {TABLE_HEIGHT_PX}px; overflow-y: auto;">'
            + _table(headers, rows, "cmp-per-image-table", styles) + "</div>" + more)


def caption(report, names: list[str], row: int) -> str:
    """A disagreement's caption: the image, its true label (labelled) and every model's answer."""
    answers = [f"{name}: {top[0][0]}" for name, top in zip(names, report.top_labels(row, 1)) if top]
    true = [f"true: {report.true[row]}"] if report.true is not None else []
    return " · ".join([report.names[row], *true, *answers])


def images_line(shown: str, notes: list[str], failures=()) -> str:
    """Where the images came from, with what unpacking them said and the files that could not be read."""
    return (f'<p class="explorer-muted" id="cmp-images">Images: {_e(shown)}.</p>' + notes_html(notes)
            + failures_html(list(failures)))


# ---- two indexes of one folder ----------------------------------------------------------------------
def agreement(result, labels: tuple[str, str]) -> str:
    """Per query: the overlap of the two indexes' top k and the rank correlation of their scores (from
    IndexAgreement.as_dict: a correlation that cannot be computed is None). `labels`: the two models as
    the page names them."""
    a, b = labels
    doc = result.as_dict()
    rows = []
    for query, (top_a, top_b) in zip(doc["queries"], result.top):
        tops = (f'<details><summary>top {doc["k"]}</summary><b>{_e(a)}</b>: {_e(", ".join(top_a))}<br>'
                f'<b>{_e(b)}</b>: {_e(", ".join(top_b))}</details>')
        rho = query["rank_correlation"]
        over = f'<span {_SMALL}>over {query["images_ranked"]} images</span>'
        rows.append([_e(query["query"]), _pct(query["overlap"]),
                     "–" if rho is None else f"{float(rho):+.2f} {over}", tops])
    mean = "" if doc["mean_overlap"] is None else \
        f'<p id="cmp-mean-overlap">Mean overlap@{doc["k"]}: <b>{_pct(doc["mean_overlap"])}</b>.</p>'
    return (f"<h4>{_e(a)} against {_e(b)}</h4><p class=\"explorer-muted\">The same folder searched through "
            f"each model's index. Overlap@{doc['k']}: the share of the top {doc['k']} images both return. "
            f"Rank correlation ρ: {_e(doc['rank_correlation_is'])}; 1: the same order, 0: unrelated.</p>"
            + mean + _table(["query", f"overlap@{doc['k']}", "rank correlation ρ", "results"], rows,
                     "cmp-agreement"))
