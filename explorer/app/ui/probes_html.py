"""HTML of the Probes tab: per probe, a summary (the method, its parameters and its source, as the core's
as_dict() gives them; the numbers with their chance level; a difference called real only when the core's
evidence says so, else said plainly to be within chance) and a table per image or per name. Text only;
every number comes from the core's report (explorer/science/counting.py, binding.py, synonyms.py,
loki.py)."""
from __future__ import annotations

import html
import json

from explorer.science.evaluate import ALPHA  # the level the core's verdicts use

from .common import failures_html, notes_html

MAX_ROWS = 200  # rows a per-image table shows (then how many more)


def _e(value) -> str:
    return html.escape(str(value))


def _pct(value) -> str:
    return "–" if value is None else f"{float(value):.1%}"


def method_html(about: dict) -> str:
    """The method, its parameters and its source (and where it differs from its paper), from an
    as_dict()'s "method", "params", "source", "differs"."""
    params = about.get("params") or {}
    shown = "; ".join(f"{_e(k)}: {_e(_short(v))}" for k, v in params.items())
    parts = [f'<p class="explorer-muted pr-method"><b>Method</b>: {_e(about.get("method", ""))}'
             + (f" · <b>parameters</b>: {shown}" if shown else "") + "</p>"]
    if about.get("source"):
        parts.append(f'<p class="explorer-muted pr-source"><b>Source</b>: {_e(about["source"])}</p>')
    if about.get("differs"):
        parts.append(f'<p class="explorer-muted pr-differs"><b>Differs from the paper</b>: '
                     f'{_e(about["differs"])}</p>')
    return "".join(parts)


def _short(value, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def evidence_html(evidence, a: str, b: str) -> str:
    """A paired difference (explorer.science.evaluate.PairedDifference) in words: a verdict only when the
    core gives one, else that the difference is within chance on these images."""
    if evidence is None:
        return ""
    numbers = f"{_e(evidence.describe())} (percentage points, 95% interval, McNemar's p)"
    if evidence.verdict:
        return (f'<p class="pr-evidence pr-real">{_e(a)} is <b>{_e(evidence.verdict)}</b> than {_e(b)} on '
                f"these {evidence.n} images: {numbers}.</p>")
    return (f'<p class="pr-evidence pr-chance">No clear difference between {_e(a)} and {_e(b)} on these '
            f"{evidence.n} images: {numbers}. The interval includes 0 or p ≥ {ALPHA}: not beyond chance.</p>")


def images_line(images) -> str:
    labelled = f", labelled by {len(images.class_names)} class folders" if images.labelled else ""
    return (f'<p class="explorer-muted pr-images">{len(images)} image(s) from {_e(images.source)}{labelled} '
            f"({images.encoded} encoded, {images.cached} from the cache).</p>"
            + notes_html(images.notes) + failures(images))


def failures(images) -> str:
    return failures_html(images.failures)


def _table(headers: list[str], rows: list[list[str]], elem: str) -> str:
    """An explorer-table (cells already HTML), cut at MAX_ROWS rows with a line saying how many more."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows[:MAX_ROWS])
    more = f'<p class="explorer-muted">… and {len(rows) - MAX_ROWS} more rows.</p>' if len(rows) > MAX_ROWS \
        else ""
    return (f'<table class="explorer-table {elem}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>{more}")


# ---- counting ----------------------------------------------------------------------------------------
def counting_summary(report) -> str:
    about = report.as_dict()
    parts = [f'<h4>Counting: {_e(report.object_name)}</h4>', method_html(about)]
    if report.true is None:
        parts.append('<p class="pr-verdict">No true counts (the class folders do not name counts such as 3 '
                     "or three_dogs): the curves and each image's reading only, no accuracy.</p>")
        return "".join(parts)
    chance, majority = float(report.chance), float(report.majority or 0.0)
    for form in report.forms:
        accuracy = float(report.accuracy[form])
        near = report.neighbour_confusion.get(form)
        errors = "no errors" if near is None else f"of its errors, {_pct(near)} are off by exactly one"
        parts.append(f'<p class="pr-verdict">Prompts in {_e(form)}: accuracy <b>{_pct(accuracy)}</b> on '
                     f"{len(report.names)} images: {_against(accuracy, chance, majority)}; {errors}.</p>")
    parts.append(evidence_html(report.words_vs_digits, "words", "digits"))
    return "".join(parts)


def _against(accuracy: float, chance: float, majority: float) -> str:
    """The accuracy against chance and against always answering the commonest count, in words."""
    base = f"chance ({_pct(chance)})", f"the majority baseline ({_pct(majority)}: always the commonest count)"
    if accuracy > max(chance, majority):
        return f"above {base[0]} and {base[1]}"
    if accuracy > chance:
        return f"above {base[0]} but <b>not above</b> {base[1]}"
    return f"<b>not above</b> {base[0]} nor {base[1]}"


def counting_details(report) -> str:
    forms = list(report.forms)
    headers = ["image"] + ([] if report.true is None else ["true"]) + [f"read ({_e(f)})" for f in forms]
    rows = []
    for i, name in enumerate(report.names):
        row = [_e(name)] + ([] if report.true is None else [_e(int(report.true[i]))])
        rows.append(row + [_e(int(report.predicted[f][i])) for f in forms])
    return _table(headers, rows, "pr-counting")


# ---- attributes x objects --------------------------------------------------------------------------
def _top_cell(probabilities, attributes: list[str], objects: list[str]) -> tuple[str, float]:
    cells = [(float(probabilities[a][o]), f"{attributes[a]} {objects[o]}")
             for a in range(len(attributes)) for o in range(len(objects))]
    best = max(cells)
    return best[1], best[0]


def grid_summary(report) -> str:
    cells = len(report.attributes) * len(report.objects)
    return (f"<h4>Attributes x objects: {len(report.attributes)} x {len(report.objects)} prompts</h4>"
            + method_html(report.as_dict())
            + f'<p class="pr-verdict">Each image scored against all {cells} "attribute object" prompts at '
            f"once; chance is {_pct(1 / cells)} a cell. The heatmap is the mean probability per cell; "
            "the table gives each image's best cell. No labels are read: whether the best cell is right is "
            "for you to see.</p>")


def grid_details(report) -> str:
    rows = []
    for i, name in enumerate(report.names):
        cell, p = _top_cell(report.probabilities[i], report.attributes, report.objects)
        rows.append([_e(name), _e(cell), _pct(p)])
    return _table(["image", "best cell", "probability"], rows, "pr-grid")


# ---- binding ---------------------------------------------------------------------------------------
def binding_summary(report) -> str:
    n = len(report.names)
    wins = int(sum(bool(w) for w in report.wins))
    real = report.p_value < ALPHA
    verdict = (f"beyond chance (p = {report.p_value:.2g} < {ALPHA}): the model tells this binding from its "
               "swap more often than a coin would" if real and report.win_rate > 0.5 else
               f"worse than a coin (p = {report.p_value:.2g}): the swap wins more often" if real else
               f"<b>not beyond chance</b> (p = {report.p_value:.2g}): on these images the model cannot be "
               "told from a coin that picks either prompt")
    return ("<h4>Binding: the bound prompt against its swap</h4>" + method_html(report.as_dict())
            + f'<p class="pr-verdict">The bound prompt wins on <b>{wins} of {n}</b> images '
            f"({_pct(report.win_rate)}; chance 50%, {int(report.ties)} tie(s)): {verdict}. Two-sided sign "
            "test over the images that are not ties.</p>")


def binding_details(report) -> str:
    rows = [[_e(name), _e(b), f"{float(t):.4f}", f"{float(s):.4f}", "bound" if w else "swap"]
            for name, b, t, s, w in zip(report.names, report.bindings, report.true_cosine,
                                        report.swapped_cosine, report.wins)]
    return _table(["image", "binding", "bound cosine", "swapped cosine", "wins"], rows, "pr-binding")


# ---- synonym swap -----------------------------------------------------------------------------------
def synonyms_summary(report) -> str:
    parts = ["<h4>Synonym swap: which name of each class works best</h4>", method_html(report.as_dict())]
    if getattr(report, "method", ""):
        parts.append(f'<p class="explorer-muted">{_e(report.method)}</p>')
    lines = []
    for cls in report.classes:
        best = report.best[cls]
        if best == cls:
            lines.append(f"<li><b>{_e(cls)}</b>: no other name did better; the name stays.</li>")
            continue
        score = next((s for s in report.scores[cls] if s.candidate == best), None)
        evidence = getattr(score, "evidence", None)
        said = evidence_html(evidence, f"“{best}”", f"“{cls}”") if evidence is not None else \
            "<p>Unlabelled: ranked by ZPE's score, which gives no evidence of accuracy.</p>"
        lines.append(f"<li><b>{_e(cls)}</b> → <b>{_e(best)}</b>{said}</li>")
    parts.append(f'<ul class="pr-verdict">{"".join(lines)}</ul>')
    if report.frequent:
        picks = ", ".join(f"{_e(c)} → {_e(n)}" for c, n in report.frequent.items())
        parts.append(f'<p class="explorer-muted pr-frequent">REAL-Prompt\'s own pick, the most frequent name '
                     f"(wordfreq's Zipf, a proxy for pretraining frequency; no images used): {picks}.</p>")
    return "".join(parts)


def synonyms_details(report) -> str:
    rows = []
    for cls in report.classes:
        for s in report.scores[cls]:
            zipf = "–" if s.zipf is None else f"{float(s.zipf):.2f}"
            if report.labelled:
                scored = [_pct(s.accuracy), _pct(s.class_recall),
                          _e(s.evidence.describe()) if s.evidence is not None else "–"]
            else:
                scored = ["–" if s.zpe_score is None else f"{float(s.zpe_score):.3f}"]
            rows.append([_e(cls), _e(s.candidate), _e(s.source), zipf, *scored])
    scores = ["accuracy", "class recall", "vs the original name"] if report.labelled else ["ZPE score"]
    return _table(["class", "name", "from", "Zipf frequency", *scores], rows, "pr-synonyms")


def frequency_points(report) -> tuple[list, str]:
    """(class, name, Zipf, score) of every candidate for plots.frequency_scatter, and the score's name."""
    score = "accuracy" if report.labelled else "ZPE score"
    points = [(cls, s.candidate, None if s.zipf is None else float(s.zipf),
               float(s.accuracy if report.labelled else s.zpe_score))
              for cls in report.classes for s in report.scores[cls]
              if (s.accuracy if report.labelled else s.zpe_score) is not None]
    return points, score


# ---- Loki ------------------------------------------------------------------------------------------
def loki_summary(report) -> str:
    parts = [f"<h4>Label geometry (Loki): {len(report.classes)} scored classes, {len(report.candidates)} "
             "candidate labels</h4>", method_html(report.as_dict()),
             f'<p class="explorer-muted">Distances: {_e(report.metric)}. Loki predicts the candidate whose '
             "probability-weighted squared distance to the classes is least (a Fréchet mean), so it may name "
             "a candidate no class prompt scored.</p>"]
    parts.append(f'<p class="pr-verdict">Loki changed {report.changed} of {len(report.names)} predictions; '
                 f"{report.outside} name a candidate outside the scored classes.</p>")
    if report.true is not None:
        parts.append(f'<p class="pr-verdict">Accuracy: argmax <b>{_pct(report.accuracy_argmax)}</b>, Loki '
                     f"<b>{_pct(report.accuracy_loki)}</b> (chance {_pct(1 / len(report.classes))}). "
                     f"Expected squared distance to the truth (the paper's metric, lower is better): argmax "
                     f"{_num(report.mean_squared_distance_argmax)}, Loki "
                     f"{_num(report.mean_squared_distance_loki)}.</p>")
        parts.append(evidence_html(report.evidence, "Loki", "argmax"))
    else:
        parts.append('<p class="explorer-muted">Unlabelled: no accuracy; the table shows what each '
                     "predicts.</p>")
    return "".join(parts)


def _num(value) -> str:
    return "–" if value is None else f"{float(value):.3f}"


def loki_details(report) -> str:
    rows = []
    for i, name in enumerate(report.names):
        a, j = int(report.argmax[i]), int(report.loki[i])
        loki_name = _e(report.candidates[j]) + (" <i>(extra)</i>" if j >= len(report.classes) else "")
        row = [_e(name), _e(report.classes[a]), f"<b>{loki_name}</b>" if j != a else loki_name]
        if report.true is not None:
            row.append(_e(report.candidates[int(report.true[i])]))
        rows.append(row)
    headers = ["image", "argmax", "Loki"] + ([] if report.true is None else ["true"])
    return _table(headers, rows, "pr-loki")


SUMMARIES = {"counting": counting_summary, "grid": grid_summary, "binding": binding_summary,
             "synonyms": synonyms_summary, "loki": loki_summary}
DETAILS = {"counting": counting_details, "grid": grid_details, "binding": binding_details,
           "synonyms": synonyms_details, "loki": loki_details}
