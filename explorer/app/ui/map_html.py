"""HTML of the Map tab (explorer/app/ui/map_tab.py): the map's note, the layout job's progress, the
hovered image's caption, a selection's count and best words, and the lists (mistakes, outliers,
cross-folder duplicates) whose items hover their image on the map when clicked (assets/map.js)."""
from __future__ import annotations

import html

METHOD_NAMES = {"pca": "PCA", "umap": "UMAP"}


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def map_note(method: str, count: int, how: str = "", seconds: float | None = None, *, waiting: str = "",
             density: bool = False) -> str:
    """What the map on screen is: its layout, how it was made (`how`: the layout's own note), and what
    to do with it."""
    name = METHOD_NAMES.get(method, method)
    text = f"{name} map of {_count(count, 'image')}"
    if how:
        text += f": {how}"
    if seconds is not None:
        text += f" ({seconds:.1f} s)"
    text += "."
    if waiting:
        text += f" {waiting}"
    text += (" Hover a point for its image; choose Lasso or Box Select in the map's toolbar and drag to "
             "select images; double-click to clear.")
    if density:
        text += " Grey contour lines show where the points are dense."
    return f'<div class="explorer-muted" id="map-note-text">{html.escape(text)}</div>'


def progress(fraction: float, text: str, method: str = "umap") -> str:
    """The layout job's progress bar and words."""
    share = max(0.0, min(1.0, float(fraction or 0.0)))
    name = METHOD_NAMES.get(method, method)
    bar = f'<div class="map-progress-fill" style="width:{share * 100:.1f}%"></div>'
    words = f"{html.escape(name)} layout: {html.escape(text)}"
    return (f'<div class="map-progress" id="map-progress-bar" data-fraction="{share:.3f}">'
            f'<div class="map-progress-track">{bar}</div><span class="explorer-muted">{words}</span></div>')


def hover_caption(name: str, category: str | None = None, evidence: str = "") -> str:
    """The hovered (or clicked) image's name, its colour's category, and a list item's evidence."""
    parts = [f'<p class="map-hover-name"><b>{html.escape(name)}</b></p>']
    if category:
        parts.append(f'<p class="explorer-muted">{html.escape(category)}</p>')
    if evidence:
        parts.append(f'<p class="map-hover-evidence">{html.escape(evidence)}</p>')
    return "".join(parts)


def selection(count: int, shown: int, sent: int) -> str:
    """A selection's count (and how many are shown, or kept when the page cut it short)."""
    head = f"{_count(count, 'image')} selected"
    if sent < count:
        head += f" (the first {sent:,} are kept)"
    if shown < min(count, sent):
        head += f"; showing {shown:,}"
    return f'<p id="map-selection-count"><b>{html.escape(head)}</b></p>'


def words(found: list[tuple[str, float]], source: str = "") -> str:
    """The words that best describe a selection, each with its score on hover."""
    if not found:
        return '<p class="explorer-muted">No word of the vocabulary stands out for this selection.</p>'
    tags = " ".join(f'<span class="map-word" title="score {score:.3f}">{html.escape(word)}</span>'
                    for word, score in found)
    where = f' <span class="explorer-muted">(from {html.escape(_source(source))})</span>' if source else ""
    return f'<p class="map-words" id="map-selection-words">Best words: {tags}{where}</p>'


def lists(sections: list[tuple[str, str, list[tuple[int, str, str]]]]) -> str:
    """Sections (title, explanation, items as (point row, name, evidence)): each item a button that
    hovers its image on the map."""
    out = []
    for title, about, items in sections:
        rows = "".join(
            f'<li><button class="map-list-item" data-map-point="{int(row)}" type="button">'
            f'{html.escape(name)}</button> <span class="explorer-muted">{html.escape(evidence)}</span></li>'
            for row, name, evidence in items)
        body = f'<ol class="map-list">{rows}</ol>' if items else '<p class="explorer-muted">None found.</p>'
        out.append(f'<section class="map-list-section"><h4>{html.escape(title)} ({len(items):,})</h4>'
                   f'<p class="explorer-muted">{html.escape(about)}</p>{body}</section>')
    return "".join(out)


SPLICE_ABOUT = ("SpLiCE: the image's embedding written as a sparse, non-negative sum of the vocabulary's "
                "word embeddings, the folder's mean image taken away (Bhalla et al. 2024)")


def explanation(name: str, found: list[tuple[str, float]], cosine: float, active: int,
                source: str = "") -> str:
    """One image in weighted words (folder_map.Explanation), with what that is and how well the words
    rebuild it."""
    tags = " · ".join(f'<span class="map-word" title="weight {weight:.3f}">{html.escape(word)} {weight:.2f}'
                      f'</span>' for word, weight in found) or "no word of the vocabulary fits it"
    more = f"{active:,} words in all" if active > len(found) else f"{_count(active, 'word')}"
    note = (f"{SPLICE_ABOUT}. {more}; together they rebuild the image's embedding to cosine {cosine:.2f}"
            + (f"; from {_source(source)}" if source else "") + ".")
    return (f'<div id="map-explanation"><p class="map-words"><b>{html.escape(name)}</b> in words (SpLiCE): '
            f'{tags}</p><p class="explorer-muted">{html.escape(note)}</p></div>')


def _source(source: str) -> str:
    """Where a vocabulary's words come from, in words (vocabulary.parse_vocabulary calls typed ones
    "typed")."""
    return "the words typed" if source == "typed" else source


def explain_label(name: str, most: int = 40) -> str:
    """The explain button's label for the hovered image (a long name cut in the middle)."""
    if len(name) > most:
        name = name[:most // 2 - 1] + "…" + name[-(most // 2):]
    return f"Explain {name} in words (SpLiCE)"
