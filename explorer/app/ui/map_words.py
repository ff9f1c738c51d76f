"""The Map tab's words panel (explorer/app/ui/map_tab.py lays out its parts; this wires them): one image
in a few weighted words, as SpLiCE decomposes it (folder_map.explain, kept by explorer/app/words.py),
over the vocabulary typed into the tab or the shipped one.

SpLiCE costs about a second per image against the 10,000 shipped words on a CPU, so a hover never runs
it: a click on a point (assets/map.js writes "<seq>:<row>" into the hidden box #map-explain-id), an item
of the lists opened (the same), or the "Explain ... in words" button (map.js writes the hovered image,
which the button names, into the same box) does, and an edit of the vocabulary explains the image of the
box again; an image explained before shows its words at once when hovered. A hover never
replaces the words shown with a hint (the answers of two events may arrive in either order): the words
shown name their image.
"""
from __future__ import annotations

import gradio as gr

from explorer.app import words as kept
from explorer.app.context import AppContext

from . import map_html as show
from .common import message, session_of

EXPLAIN_JS = "() => { window.explorerMap && window.explorerMap.explain(); return []; }"  # assets/map.js


def point_of(state, value) -> int | None:
    """The row of the point "<seq>:<row>" on the state's map (map.js sends it), or None."""
    if state is None or not getattr(state, "names", None) or not isinstance(value, str) or ":" not in value:
        return None
    seq, row = value.split(":", 1)
    if seq.strip() != str(state.seq) or not (row.isascii() and row.isdigit() and len(row) <= 9):
        return None
    return int(row) if int(row) < len(state.names) else None


def _html(found) -> str:
    said, source = found
    return show.explanation(said.name, said.words, said.cosine, said.active, source)


def explain_view(ctx: AppContext, state, value: str, text: str | None, embeddings) -> str | None:
    """HTML of the point "<seq>:<row>" in weighted words (SpLiCE over the vocabulary, the image mean
    the indexed folder's: the mean of the map's stored `embeddings`); None when the value names no
    point of the map shown."""
    row = point_of(state, value)
    if row is None:
        return None
    return _html(kept.explain(ctx, state.token, embeddings, row, state.names[row], text))


def hovered_view(ctx: AppContext, state, value: str, text: str | None) -> tuple[str | None, str] | None:
    """For a hovered point: (its words when they were found before, else None: no SpLiCE runs on hover,
    the button's label naming it); None when the value names no point of the map shown."""
    row = point_of(state, value)
    if row is None:
        return None
    found = kept.known(ctx, state.token, text, row)
    return (None if found is None else _html(found)), show.explain_label(state.names[row])


def build(ctx: AppContext, page) -> None:
    """Wire the panel onto the Map tab's components (map_tab.MapComponents): a hover shows the words
    found before and names the image in the button; a click on a point or a list item, the button (the
    hovered point: map.js) or an edit of the vocabulary explains the image of #map-explain-id."""

    def on_hover(state, value, text, request: gr.Request):
        found = hovered_view(session_of(ctx, request), state, value, text)
        if found is None:
            return gr.skip(), gr.skip()
        html, label = found   # words not found yet: the words shown stay (they name their image)
        return (gr.skip() if html is None else html), gr.update(value=label)

    def on_explain(state, value, text, request: gr.Request):
        session = session_of(ctx, request)
        if point_of(state, value) is None:
            return gr.skip()
        try:
            return explain_view(session, state, value, text, page.embeddings_of(session, state))
        except (ValueError, ImportError, OSError) as exc:  # a vocabulary refused, the index changed...
            return message(f"No words: {exc}", "error")

    quiet = dict(trigger_mode="always_last", api_visibility="private")
    page.hover_id.change(on_hover, [page.state, page.hover_id, page.vocabulary],
                         [page.explanation, page.explain_run],
                         concurrency_limit=None, show_progress="hidden", **quiet)
    # One event for every way of asking (a click, new words), so that its answers come in order
    gr.on([page.explain_id.change, page.vocabulary.blur, page.vocabulary.submit], on_explain,
          [page.state, page.explain_id, page.vocabulary], page.explanation, concurrency_limit=2,
          show_progress="minimal", api_name="map_explain", **quiet)
    page.explain_run.click(None, None, None, js=EXPLAIN_JS, show_progress="hidden", api_visibility="private")
