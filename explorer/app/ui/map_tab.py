"""Map tab: every image of an index on one 2-D map (issue 26), coloured by what the folders, the
model or a taught classifier say, to see how a folder is organised and where it is wrong.

Pick an index (built in the Search tab); a PCA map is drawn at once (or the index's saved map) while a
UMAP layout runs as a background job (map_layout.LayoutJob), polled by a gr.Timer with its progress and
a Cancel button. Colouring (by folder, zero-shot labels with "none of these", a taught classifier,
clusters, or a query's score) answers live as the controls are edited (common.live), from the index's
stored image embeddings: only texts are ever encoded (through the model's text cache), never an image.
A recolour is redrawn in place: only the colours travel, in a patch written into a hidden text box that
assets/map.js applies to the plot on screen (gr.Plot re-mounts a plot for every new figure).

assets/map.js also writes into two more hidden text boxes: the hovered point (-> `hover_view`: that one
image's thumbnail, a WebP file written once into gradio's cache by Thumbnails.file; never thousands of
thumbnails in the figure) and a box or lasso selection (-> `selection_view`: a gallery of the selected
images and the words that best describe them). The lists (mistakes, outliers, cross-folder duplicates)
are items that hover their image on the map when clicked.

The points are the index's images in one fixed order (MapState.names, the index's own); a point is sent
as its row in that order with the `seq` of the index's map, so a hover or a selection from a map no longer
shown is ignored. What the selection's actions need (explorer/app/ui/map_actions.py) is returned by
`build` as MapComponents.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder

from explorer.app import plots
from explorer.app import words as vocabularies
from explorer.app.context import AppContext
from explorer.embed.cache import LRU
from explorer.embed.images import ImageError
from explorer.index.image_index import ImageIndex
from explorer.inputs import gate
from explorer.inputs.roots import inside_roots
from explorer.science import folder_map, map_layout
from explorer.science.prompts import builtin_template_set

from . import map_html as show
from .common import IMAGE_TYPES, TEMPLATE_CHOICES, from_page, live, message, session_of, unchanged

METHODS = {"UMAP (background job)": "umap", "PCA (instant)": "pca"}
COLOUR_BY = {"Folder": "folder", "Zero-shot labels": "zeroshot", "Taught classifier": "taught",
             "Clusters": "cluster", "Query score": "query"}
CLUSTER_METHODS = {"k-means": "kmeans", "HDBSCAN": "hdbscan"}
MAX_SELECTED = 20_000   # points read from one selection (assets/map.js sends at most as many)
SHOWN_SELECTED = 60     # of a selection, shown in the gallery
RECOLOUR_JS = "(patch) => window.explorerMap ? window.explorerMap.recolour(patch) : []"  # assets/map.js
POLL_SECONDS = 1.0      # how often the page asks a running layout job how far it is
_tokens = itertools.count(1)    # numbers each map drawn, for the server's cache of its embeddings


class Problem(ValueError):
    """Something the person can fix; shown as an error, the map stays as it was."""


# ---- what a session keeps (gr.State) ------------------------------------------------------------------
@dataclass
class MapState:
    """The session's map: which index, its points in order, the layout drawn and its colouring."""
    index: str = ""                     # the index folder ("": no map yet)
    root: str = ""                      # the folder it indexes
    names: list[str] = field(default_factory=list)   # row i is this image (relative to root)
    seq: int = 0                        # names these points on the page (map_seq; map.js sends it back)
    method: str = ""                    # the layout drawn: "pca" or "umap"
    layout: object = None               # map_layout.Layout drawn
    colouring: object = None            # folder_map.Colouring shown
    clusters: object = None             # folder_map.Clustering last made (reused while k and method stay)
    waiting: str = ""                   # a layout job's method while it runs ("": none)
    token: int = 0                      # this map's embeddings in the server's cache (_EMBEDDINGS)


@dataclass
class ColourChoice:
    """The colour-by controls, as the page sends them."""
    by: str = "folder"
    labels: str = ""
    templates: str = next(iter(TEMPLATE_CHOICES))
    none_below: float = 0.0
    classifier: str | None = None
    k: int = 8
    cluster_method: str = "kmeans"
    query: str = ""
    vocabulary: str = ""                # words typed to name things with ("": the shipped vocabulary)
    query_image: str | None = None      # an image file as (part of) the query: encoded once, then cached


@dataclass
class MapView:
    figure: object = None
    note: str = ""
    progress: str = ""
    state: MapState = field(default_factory=MapState)
    running: bool = False               # a layout job runs: the timer polls it, Cancel shows
    choices: list | None = None         # the session's indexes, (label, folder), for the index choice


class Busy(Problem):
    """As many layout jobs as the server runs at once are running (other sessions' maps)."""


class LayoutJobs:
    """The background layout jobs: at most one per browser session (a new one cancels the last), and at
    most `most` running at once across sessions (each UMAP fit takes a CPU for seconds to minutes)."""

    def __init__(self, most: int = 2):
        self._jobs: dict[str, tuple[int, object]] = {}   # session -> (the map's seq, its job)
        self._lock = threading.Lock()
        self.most = most

    def start(self, session: str, seq: int, job) -> None:
        """Run `job` for the map `seq` of `session`; Busy (nothing started) when `most` jobs of other
        sessions are running."""
        with self._lock:
            old = self._jobs.get(session)
            others = sum(1 for s, (_, j) in self._jobs.items() if s != session and not j.done)
            if others >= self.most:
                raise Busy(f"{others} other map layouts are running on this server: the PCA map stays; "
                           "press Draw the map again in a while for UMAP.")
            self._jobs[session] = (seq, job)
        if old is not None and old[1] is not job:
            old[1].cancel()
        job.start()

    def get(self, session: str, seq: int):
        with self._lock:
            found = self._jobs.get(session)
        return found[1] if found is not None and found[0] == seq else None

    def drop(self, session: str, job) -> None:
        with self._lock:
            if self._jobs.get(session, (None, None))[1] is job:
                del self._jobs[session]

    def cancel(self, session: str) -> bool:
        with self._lock:
            found = self._jobs.get(session)
        if found is not None:
            found[1].cancel()
        return found is not None


JOBS = LayoutJobs()


# ---- handlers -----------------------------------------------------------------------------------------
def index_choices(ctx: AppContext) -> list[tuple[str, str]]:
    """(label, index folder) of the indexes this session may use that the loaded model made, the one
    built or updated last first (the map's choice when none is picked)."""
    model = ctx.slot.model
    found = [] if model is None else ctx.visible_indexes(model)
    found.sort(key=lambda info: -_modified(info.folder / "manifest.json"))
    return [(ctx.index_label(info), str(info.folder)) for info in found]


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _open(ctx: AppContext, folder: str | None) -> ImageIndex:
    """The index in `folder` (one of the session's, made by the loaded model); "": the last built."""
    model = ctx.model()
    if not folder:
        folder = next((value for _, value in index_choices(ctx)), None)
    if not folder:
        raise Problem("Build an index in the Search tab first: the map shows an index's images.")
    try:
        index = ctx.open_index(folder)
        index.check_model(model)
    except (ValueError, OSError) as exc:
        raise Problem(f"The index cannot be opened: {exc}") from None
    return index


def open_map(ctx: AppContext, folder: str, method: str, choice: ColourChoice) -> MapView:
    """The map of the index in `folder`: its saved `method` map when there is one, else a PCA map at once,
    the state then waiting for the `method` layout (UMAP: start_layout runs it in the background)."""
    if method not in map_layout.LAYOUT_METHODS:
        raise Problem(f"Unknown layout: {method!r}")
    index = _open(ctx, folder)
    names, embeddings = index.all_embeddings()
    if not names:
        raise Problem("This index holds no images yet.")
    colouring, clusters = colour_points(ctx, names, embeddings, choice)
    layout = map_layout.cached_layout(index, method, names=names) if method != "pca" else None
    running = method != "pca" and (layout is None or len(layout.names) < len(names))  # new images: placed
    if layout is None:
        layout = map_layout.map_of_index(index, names, embeddings, "pca")  # exact and instant (saved too)
    state = MapState(str(index.folder), str(index.root), list(names), map_seq(str(index.folder), names),
                     layout.method, layout, colouring, clusters, method if running else "", next(_tokens))
    _EMBEDDINGS.put(state.token, embeddings)
    return MapView(figure_of(state), note_of(state), show.progress(0.0, "starting…", method)
                   if running else "", state, running, index_choices(ctx))


def map_seq(folder: str, names: list[str]) -> int:
    """The number that names a map's points on the page: the same index folder and images (in order)
    always get the same one, so an answer depends on nothing but what was asked (and a UMAP map that
    replaces a PCA one of the same images keeps the hovers and selections valid)."""
    digest = hashlib.sha256("\n".join([folder, *names]).encode("utf-8", "surrogatepass")).hexdigest()
    return int(digest[:12], 16)


def start_layout(ctx: AppContext, state: MapState | None, *, session: str = "",
                 jobs: LayoutJobs = JOBS) -> bool:
    """Start the layout the state's map waits for (map_layout.LayoutJob: a thread, its UMAP fit in a
    worker process), once per map and one per `session` (a new one cancels the last); True while one
    runs. Called outside the event that drew the map: on ZeroGPU that event runs in a GPU worker
    process, which a background job would not outlive."""
    if state is None or not state.waiting:
        return False
    if jobs.get(session, state.seq) is None:
        index = _open(ctx, state.index)
        jobs.start(session, state.seq, map_layout.LayoutJob(index, state.names, _embeddings(ctx, state),
                                                            method=state.waiting))
    return True


def figure_of(state: MapState):
    """The figure of the state's layout, coloured by its colouring."""
    colours, legend = _marker(state.colouring, len(state.names))
    xy = plots.map_rows(state.layout.names, state.layout.xy, state.names)
    return plots.map_figure(xy, state.names, colours, legend, method=state.method,
                            seq=state.seq)  # no "coloured by" in the title: recolours leave it as drawn


def note_of(state: MapState) -> str:
    layout = state.layout
    name = show.METHOD_NAMES.get(state.waiting, state.waiting)
    waiting = f"A {name} layout is being computed; it replaces this map when done." if state.waiting else ""
    return show.map_note(state.method, len(state.names), layout.note, layout.seconds, waiting=waiting,
                         density=len(state.names) >= plots.MAP_DENSITY_AT)


def poll_job(state: MapState | None, job) -> MapView | None:
    """A running layout job's progress (a MapView without a figure), or, once it is done, the map of
    its layout (the colouring kept); None when there is nothing to poll."""
    if state is None or not state.index or job is None:
        return None
    if not job.done:
        fraction, text = job.status()
        return MapView(progress=show.progress(fraction, text, state.waiting or "umap"), state=state,
                       running=True)
    if job.result is None:
        why = job.error or "cancelled"
        return MapView(note=note_of(replace(state, waiting="")),
                       progress=message(f"The layout stopped: {why}. The map shown stays.", "muted"),
                       state=replace(state, waiting=""))
    done = replace(state, layout=job.result, method=job.result.method, waiting="")
    return MapView(figure_of(done), note_of(done), "", done)


# ---- colouring ----------------------------------------------------------------------------------------
# token -> the map's stored embeddings, kept for live recolours (a 100k x 512 map is 200 MB: bounded by bytes)
KEPT_MAPS, KEPT_MAP_BYTES = 6, 1 << 30
_EMBEDDINGS = LRU(KEPT_MAPS, max_bytes=KEPT_MAP_BYTES)


def _embeddings(ctx: AppContext, state: MapState):
    """The stored embeddings of the state's map (rows follow state.names), read once per map."""
    found = _EMBEDDINGS.get(state.token)
    if found is not None:
        return found
    index = _open(ctx, state.index)
    names, embeddings = index.all_embeddings()
    if list(names) != state.names:
        raise Problem("The index has changed since its map was drawn: pick it again to redraw the map.")
    _EMBEDDINGS.put(state.token, embeddings)
    return embeddings


def map_request(choice: ColourChoice) -> folder_map.MapRequest:
    """The colour-by controls as the core's request (0 for "none of these": the model's own rule)."""
    try:
        templates = builtin_template_set(TEMPLATE_CHOICES[choice.templates])
    except KeyError:
        raise Problem(f"Unknown template set: {choice.templates!r}") from None
    return folder_map.MapRequest(colour_by=choice.by, labels=choice.labels, templates=templates,
                                 none_threshold=choice.none_below or None, classifier=choice.classifier,
                                 clusters=int(choice.k), cluster_method=choice.cluster_method,
                                 query_text=choice.query,
                                 query_images=[choice.query_image] if choice.query_image else [])


def colour_points(ctx: AppContext, names: list[str], embeddings, choice: ColourChoice, clusters=None):
    """(folder_map.Colouring, the clusters made or kept) of the points by `choice`, from their stored
    embeddings: only texts are encoded (labels x templates, a query, the vocabulary once)."""
    request = map_request(choice)
    if request.colour_by not in folder_map.COLOUR_BY:
        raise Problem(f"Unknown colouring: {choice.by!r}")
    if request.colour_by == "cluster":
        words = vocabularies.vocabulary_words(ctx, choice.vocabulary)   # typed, or the shipped ones
        if not folder_map.same_clusters(clusters, request) or clusters.words_key != words.key:
            clusters = folder_map.clustering(embeddings, words, request.cluster_method,
                                             request.clusters, request.seed, request.name_words)
        return clusters.colouring(), clusters
    try:
        colouring = folder_map.colours(ctx.model(), names, embeddings, request,
                                       limits=gate.TextLimits.of(ctx.settings),
                                       image_limits=ctx.settings.limits, cache=ctx.embeddings)
    except ImageError as exc:  # the query image (the map's own images are never read)
        raise Problem(f"The query image cannot be used: {exc.reason}") from None
    return replace(colouring, probabilities=None), clusters  # [N, labels]: not kept in the session


def category_of(colouring, row: int) -> str:
    """How the point at `row` is coloured, in words."""
    if colouring is None:
        return ""
    if colouring.codes is not None:
        code = int(colouring.codes[row])
        name = colouring.categories[code] if 0 <= code < len(colouring.categories) else colouring.none_label
        score = f" ({float(colouring.scores[row]):.0%})" if colouring.scores is not None else ""
        return f"{colouring.by}: {name}{score}"
    return f"{colouring.by}: {float(colouring.scores[row]):.3f}" if colouring.scores is not None else ""


def _marker(colouring, count: int) -> tuple[dict, list[dict]]:
    """(the points' marker colours, the legend) of a colouring (plots.map_point_colours, map_legend)."""
    if colouring is None:
        return plots.map_point_colours([0] * count), []
    if colouring.codes is None:
        return plots.map_point_colours(colouring.scores, "score"), []
    categories = list(colouring.categories)
    return (plots.map_point_colours(colouring.codes, "category", len(categories)),
            plots.map_legend(categories, plots.map_counts(colouring.codes, len(categories)),
                             none=colouring.none_label))


def colour_note(colouring) -> str:
    if colouring is None:
        return ""
    return message("Coloured by " + "; ".join([colouring.rule, *colouring.notes]) + ".", "muted")


def colour_patch(state: MapState) -> str:
    """The patch assets/map.js applies in place: the points' marker colours and the legend, as JSON."""
    marker, legend = _marker(state.colouring, len(state.names))
    marker["color"] = plots.map_patch_colours(marker["color"])
    return json.dumps({"seq": state.seq, "marker": marker, "legend": legend})


def recolour(ctx: AppContext, state: MapState | None, choice: ColourChoice) -> tuple[MapState, str]:
    """(the state with its new colouring, the colour patch) for the map on screen."""
    if state is None or not state.index:
        raise Problem("Draw a map first: pick an index.")
    embeddings = _embeddings(ctx, state)
    colouring, clusters = colour_points(ctx, state.names, embeddings, choice, state.clusters)
    new = replace(state, colouring=colouring, clusters=clusters)
    return new, colour_patch(new)


# ---- hover and selection ------------------------------------------------------------------------------
def _rows(state: MapState | None, value: str, sep: str) -> tuple[list[int], int]:
    """(rows, how many the page said were selected) from "<seq><sep>..." when seq is the state's map;
    at most MAX_SELECTED rows, each a point of the map, in order without repeats."""
    if state is None or not isinstance(value, str) or sep not in value:
        return [], 0
    seq, rest = value.split(sep, 1)
    if seq.strip() != str(state.seq):
        return [], 0
    total, _, listed = rest.partition("|") if sep == "|" else ("1", "", rest)
    if sep == ":" and not (listed.isascii() and listed.isdigit()):   # a hover names one point, nothing else
        return [], 0
    rows: dict[int, None] = {}
    for token in listed[:MAX_SELECTED * 8].split(",")[:MAX_SELECTED]:
        token = token.strip()
        if token.isascii() and token.isdigit() and len(token) <= 9 and int(token) < len(state.names):
            rows[int(token)] = None
    said = int(total) if total.isascii() and total.isdigit() and len(total) <= 9 else len(rows)
    return list(rows), min(max(said, len(rows)), len(state.names))   # never more than the map holds


def _thumb(ctx: AppContext, state: MapState, row: int) -> str | None:
    root = Path(state.root)
    path = root / state.names[row]
    return ctx.thumbnails.file(path, get_upload_folder()) if inside_roots(path, (root,)) else None


def hover_view(ctx: AppContext, state: MapState | None, value: str, evidence: dict | None = None):
    """(thumbnail file in gradio's cache or None, caption HTML) of the point "<seq>:<row>"; None when
    the value names no point of the map shown."""
    rows, _ = _rows(state, value, ":")
    if not rows:
        return None
    row = rows[0]
    return _thumb(ctx, state, row), show.hover_caption(state.names[row], category_of(state.colouring, row),
                                                       (evidence or {}).get(row, ""))


def selection_view(ctx: AppContext, state: MapState | None, value: str) -> tuple[str, list, list[str]]:
    """(HTML: the count, gallery items (thumbnail file, name), the selected names) of the selection
    "<seq>|<count>|<rows>"; an empty selection gives the hint and no names."""
    rows, said = _rows(state, value, "|")
    if not rows:
        return message(SELECTION_HINT, "muted"), [], []
    names = [state.names[r] for r in rows]
    items = [(thumb, name) for thumb, name in ((_thumb(ctx, state, r), state.names[r])
                                               for r in rows[:SHOWN_SELECTED]) if thumb]
    return show.selection(said, len(items), len(rows)), items, names


def words_view(ctx: AppContext, state: MapState | None, selected: list[str], vocabulary: str = "") -> str:
    """The words of the vocabulary (typed, or the shipped one) that best tell the selected images apart
    from the whole folder (concepts.selection_words on their stored embeddings, the folder's mean taken
    away), as HTML."""
    if state is None or not selected:
        return ""
    from explorer.science.concepts import selection_words

    row = {n: i for i, n in enumerate(state.names)}
    picked = [row[n] for n in selected if n in row]
    words = vocabularies.vocabulary_words(ctx, vocabulary)
    found = selection_words(_embeddings(ctx, state), picked, words.vectors, words.words)
    return show.words(list(found)[:WORDS_SHOWN], words.source)


def lists_view(ctx: AppContext, state: MapState | None, templates: str) -> tuple[str, dict]:
    """(HTML of the lists: mistakes, outliers, cross-folder duplicates, each item with its evidence and
    a click that shows it on the map; {row: evidence} for the hovered image's caption)."""
    if state is None or not state.index:
        raise Problem("Draw a map first: pick an index.")
    found = folder_map.map_lists(ctx.model(), state.names, _embeddings(ctx, state),
                                 templates=map_request(ColourChoice(templates=templates)).templates,
                                 limits=gate.TextLimits.of(ctx.settings))
    sections, evidence = [], {}
    for key, title, about in LISTS:
        entries = found.get(key)
        if entries is None:
            continue
        if key == "outliers":
            entries, about = outliers_shown(entries, len(state.names))
        items = [(row, state.names[row], said) for row, said in (_said(key, e) for e in entries)
                 if 0 <= row < len(state.names)]
        for row, _, said in items:  # an image in two lists keeps both (a mistake is often an outlier too)
            evidence[row] = f"{evidence[row]}; {said}" if row in evidence else said
        how = found.get("how") if key == "mistakes" else None
        how = f" {how[0].upper()}{how[1:]}." if how else ""
        sections.append((title, about + how, items))
    return show.lists(sections), evidence


LISTS = (("mistakes", "Likely mistakes", "Images whose folder the other images disagree with (confident "
          "learning on out-of-fold probabilities), most likely first."),
         ("duplicates", "Cross-folder duplicates", "The same picture (or nearly) filed in two folders."),
         ("outliers", "Outliers", ""))
WORDS_SHOWN = 8
OUTLIERS_SHOWN, OUTLIERS_AT_LEAST = 10, 3


def outliers_shown(entries: list[dict], count: int) -> tuple[list[dict], str]:
    """(the outliers to list, what they are): those whose score stands clearly apart from the rest
    (`beyond` folder_map.outlier_cut: the median plus 3 robust standard deviations), at most
    OUTLIERS_SHOWN, most isolated first; when none does, the OUTLIERS_AT_LEAST most isolated, said so.
    The full ranking stays in `clip-explorer map --json`."""
    apart = [e for e in entries if e.get("beyond")][:OUTLIERS_SHOWN]
    rule = ("Far from their nearest neighbours (the mean cosine distance to the 10 nearest images), most "
            "isolated first")
    if apart:
        return apart, (f"{rule}: the {len(apart)} of {count:,} images that stand clearly apart (the median "
                       "plus 3 robust standard deviations)" + (", at most 10" if len(apart) == OUTLIERS_SHOWN
                                                                  else "") + ".")
    return entries[:OUTLIERS_AT_LEAST], (f"{rule}: none of the {count:,} stands clearly apart from the rest "
                                         f"(the median plus 3 robust standard deviations); the "
                                         f"{min(OUTLIERS_AT_LEAST, len(entries))} most isolated.")


def _said(key: str, entry: dict) -> tuple[int, str]:
    """(the entry's row on the map, its evidence in words) of one item of folder_map.map_lists."""
    number = lambda name: entry.get(name) if isinstance(entry.get(name), (int, float)) else None  # noqa: E731
    if key == "duplicates":
        cosine = number("cosine")
        return int(entry.get("row_i", -1)), (f"same as {entry.get('name_j') or entry.get('path_j') or ''}"
                                             + (f" (cosine {cosine:.3f})" if cosine is not None else ""))
    if key == "mistakes":
        given, predicted = entry.get("given") or entry.get("label"), entry.get("predicted")
        confidence = number("self_confidence") or number("confidence")
        return int(entry.get("row", -1)), (f"filed as {given}, looks like {predicted}"
                                           + (f" (its folder's probability {confidence:.2f})"
                                              if confidence is not None else ""))
    score = number("score")
    return int(entry.get("row", -1)), "outlier" + (f" score {score:.3f}" if score is not None else "")


SELECTION_HINT = ("Choose Lasso Select or Box Select in the map's toolbar and drag over points to see their "
                  "images and best words here; double-click the map to clear.")


# ---- the page -----------------------------------------------------------------------------------------
@dataclass
class MapComponents:
    """What the selection's actions (map_actions.py) and the words panel (map_words.py) wire onto."""
    index: gr.Dropdown          # the index folder the map shows
    state: gr.State             # MapState
    selection: gr.State         # list[str]: the selected images, relative to the indexed folder
    selection_view: gr.HTML     # the selection's count and best words
    gallery: gr.Gallery         # the selected images
    actions: gr.Column          # elem_id "map-actions": where the actions are drawn
    hover_id: gr.Textbox | None = None      # "<seq>:<row>" of the hovered point (map.js)
    explain_id: gr.Textbox | None = None    # "<seq>:<row>" of a clicked point or list item (map.js)
    explain_run: gr.Button | None = None    # explain the hovered point
    explanation: gr.HTML | None = None      # an image in words (SpLiCE)
    vocabulary: gr.Textbox | None = None    # the words typed ("": the shipped vocabulary)
    embeddings_of: object = None            # (ctx, MapState) -> the map's stored embeddings


@dataclass
class MapHandles:
    """The tab's components, by name, for the wiring."""
    ctx: AppContext
    index: gr.Dropdown
    refresh: gr.Button
    method: gr.Radio
    run: gr.Button
    progress: gr.HTML
    cancel: gr.Button
    timer: gr.Timer
    colour_by: gr.Radio
    zeroshot_box: gr.Group
    labels: gr.Textbox
    templates: gr.Radio
    none_below: gr.Slider
    taught_box: gr.Group
    classifier: gr.File
    cluster_box: gr.Group
    k: gr.Slider
    cluster_method: gr.Radio
    query_box: gr.Group
    query: gr.Textbox
    query_image: gr.File
    colour_note: gr.HTML
    plot: gr.Plot
    note: gr.HTML
    hover_image: gr.Image
    hover_caption: gr.HTML
    hover_id: gr.Textbox
    explain_id: gr.Textbox
    explain_run: gr.Button
    explanation: gr.HTML
    vocabulary: gr.Textbox
    selection_ids: gr.Textbox
    patch: gr.Textbox
    selection_html: gr.HTML
    gallery: gr.Gallery
    words: gr.HTML
    actions: gr.Column
    lists_run: gr.Button
    lists: gr.HTML
    state: gr.State
    selection: gr.State
    evidence: gr.State

    def colour_inputs(self) -> list:
        return [self.colour_by, self.labels, self.templates, self.none_below, self.classifier, self.k,
                self.cluster_method, self.query, self.vocabulary, self.query_image]


def build(ctx: AppContext) -> MapComponents:
    gr.Markdown("Every image of an index on one map: similar images lie close. Colour the points by folder, "
                "by labels you type, by a taught classifier, by clusters or by a query, and find the images "
                "that look misfiled. Only texts are encoded; the images' stored embeddings are used.",
                elem_id="map-intro")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=300):
            with gr.Row():
                index = gr.Dropdown([], label="Index (build one in the Search tab)", scale=4,
                                    elem_id="map-index")
                refresh = gr.Button("Refresh", scale=1, min_width=80, elem_id="map-index-refresh")
            method = gr.Radio(list(METHODS.items()), value="umap", label="Layout", elem_id="map-method",
                              info="PCA is drawn at once; UMAP (neighbours kept together) follows when done")
            run = gr.Button("Draw the map", variant="primary", elem_id="map-run")
            with gr.Row():
                progress = gr.HTML(elem_id="map-progress")
                cancel = gr.Button("Cancel", variant="stop", visible=False, scale=0, min_width=90,
                                   elem_id="map-cancel")
            colour_by = gr.Radio(list(COLOUR_BY.items()), value="folder", label="Colour by",
                                 elem_id="map-colour-by")
            with gr.Group(visible=False) as zeroshot_box:
                labels = gr.Textbox("", label="Labels", lines=3, elem_id="map-labels",
                                    placeholder="one per line, or comma-separated")
                templates = gr.Radio(list(TEMPLATE_CHOICES), value=next(iter(TEMPLATE_CHOICES)),
                                     label="Prompt templates", elem_id="map-templates")
                none_below = gr.Slider(0, 1, value=0, step=0.05, elem_id="map-none",
                                       label="“None of these” below this probability",
                                       info="0: the model's own rule")
            with gr.Group(visible=False) as taught_box:
                classifier = gr.File(label="A taught classifier (.zip from Teach by example)",
                                     file_types=[".zip"], height=90, elem_id="map-classifier")
            with gr.Group(visible=False) as cluster_box:
                k = gr.Slider(2, 50, value=8, step=1, label="Clusters (k-means)", elem_id="map-k")
                cluster_method = gr.Radio(list(CLUSTER_METHODS.items()), value="kmeans", label="Method",
                                          elem_id="map-cluster-method")
            with gr.Group(visible=False) as query_box:
                query = gr.Textbox("", label="Query text", placeholder="a red circle", elem_id="map-query")
                query_image = gr.File(label="…and/or an image", file_types=IMAGE_TYPES, file_count="single",
                                      height=90, elem_id="map-query-image")
            colour_note = gr.HTML(elem_id="map-colour-note")
            vocabulary = gr.Textbox("", label="Vocabulary: words that name clusters, selections and images",
                                    lines=2, max_lines=8, elem_id="map-vocabulary",
                                    placeholder="one word or phrase per line, or comma-separated; empty: "
                                                "10,000 common English words (WordNet)")
        with gr.Column(scale=3):
            plot = gr.Plot(label="Map", elem_id="map-plot")
            note = gr.HTML(message("Pick an index to draw its map.", "muted"), elem_id="map-note")
            with gr.Row(equal_height=False):
                hover_image = gr.Image(label="Hovered image", type="filepath", interactive=False, height=160,
                                       buttons=[], scale=1, elem_id="map-hover-image")
                with gr.Column(scale=2):
                    hover_caption = gr.HTML(elem_id="map-hover-caption", padding=True)
                    explain_run = gr.Button("Explain in words (SpLiCE)", size="sm", elem_id="map-explain-run")
                    explanation = gr.HTML(elem_id="map-explain")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            selection_html = gr.HTML(message(SELECTION_HINT, "muted"), elem_id="map-selection")
            words = gr.HTML(elem_id="map-words")
            gallery = gr.Gallery(label="Selected images", show_label=False, columns=6, height="auto",
                                 allow_preview=False, object_fit="contain", fit_columns=False, buttons=[],
                                 visible=False, elem_id="map-selection-gallery")
        with gr.Column(scale=2, elem_id="map-actions") as actions:
            pass  # explorer/app/ui/map_actions.py draws the selection's actions here
    with gr.Accordion("Mistakes, outliers and cross-folder duplicates", open=False, elem_id="map-lists-acc"):
        lists_run = gr.Button("Find them", elem_id="map-lists-run")
        lists = gr.HTML(elem_id="map-lists")
    hover_id = gr.Textbox(visible="hidden", elem_id="map-hover-id")               # written by map.js
    explain_id = gr.Textbox(visible="hidden", elem_id="map-explain-id")           # written by map.js
    selection_ids = gr.Textbox(visible="hidden", elem_id="map-selection-ids")     # written by map.js
    patch = gr.Textbox(visible="hidden", elem_id="map-colour-patch")              # read by map.js
    timer = gr.Timer(POLL_SECONDS, active=False)
    state, selection, evidence = gr.State(None), gr.State([]), gr.State(None)

    ui = MapHandles(
        ctx, index=index, refresh=refresh, method=method, run=run, progress=progress, cancel=cancel,
        timer=timer, colour_by=colour_by, zeroshot_box=zeroshot_box, labels=labels, templates=templates,
        none_below=none_below, taught_box=taught_box, classifier=classifier, cluster_box=cluster_box, k=k,
        cluster_method=cluster_method, query_box=query_box, query=query,
        query_image=query_image, colour_note=colour_note, plot=plot,
        note=note, hover_image=hover_image, hover_caption=hover_caption, hover_id=hover_id,
        explain_id=explain_id, explain_run=explain_run, explanation=explanation, vocabulary=vocabulary,
        selection_ids=selection_ids, patch=patch, selection_html=selection_html, gallery=gallery,
        words=words, actions=actions, lists_run=lists_run, lists=lists, state=state, selection=selection,
        evidence=evidence)
    _wire_map(ui)
    _wire_colours(ui)
    _wire_points(ui)
    return MapComponents(index=index, state=state, selection=selection, selection_view=selection_html,
                         gallery=gallery, actions=actions, hover_id=hover_id, explain_id=explain_id,
                         explain_run=explain_run, explanation=explanation, vocabulary=vocabulary,
                         embeddings_of=_embeddings)


def _session(request) -> str:
    return getattr(request, "session_hash", None) or ""


def _choice(by, labels, templates, none_below, classifier, k, cluster_method, query,
            vocabulary=None, query_image=None) -> ColourChoice:
    return ColourChoice(by or "folder", labels or "", templates or next(iter(TEMPLATE_CHOICES)),
                        float(none_below or 0), classifier, int(k or 8), cluster_method or "kmeans",
                        query or "", vocabulary or "", query_image or None)


def _shown_map(view: MapView, new: bool = True) -> tuple:
    """The outputs of _wire_map's events (plot, note, progress, state, Cancel, timer, colour patch, colour
    note, selection view, gallery, selection, words, index choice); a new map (`new`) clears the
    selection."""
    cleared = (message(SELECTION_HINT, "muted"), gr.update(value=[], visible=False), [], "") if new else \
        (gr.update(),) * 4
    return (view.figure if view.figure is not None else gr.update(), view.note or gr.update(), view.progress,
            view.state, gr.update(visible=view.running, interactive=True, value="Cancel"),
            gr.Timer(active=view.running and not new),  # a new map's job starts after it: on_start
            "", colour_note(view.state.colouring) if new else gr.update(),
            *cleared, gr.update(choices=view.choices, value=view.state.index) if new else gr.update())


def _wire_map(ui: MapHandles) -> None:
    """The index choice, the layout, its background job (timer, Cancel)."""
    ctx = ui.ctx

    def on_choices(current, request: gr.Request):
        choices = index_choices(session_of(ctx, request))
        keep = current if any(value == current for _, value in choices) else None
        return gr.update(choices=choices, value=keep or (choices[0][1] if choices else None))

    def on_map(folder, method, by, labels, templates, none_below, classifier, k, cluster_method, query,
               vocabulary, query_image, request: gr.Request):
        choice = _choice(by, labels, templates, none_below, classifier, k, cluster_method, query, vocabulary,
                         query_image)
        try:
            view = open_map(session_of(ctx, request), folder, method or "umap", choice)
        except ValueError as exc:  # Problem, PromptError...; gate.Refused is a gr.Error from the gate first
            return (gr.update(), message(str(exc), "error"), "", *(gr.update(),) * 10)
        return _shown_map(view)

    def on_start(state, request: gr.Request):  # in the main process (not a GPU event): the job outlives it
        try:
            running = start_layout(session_of(ctx, request), state, session=_session(request))
        except ValueError as exc:
            return message(str(exc), "error"), gr.update(visible=False), gr.Timer(active=False)
        return gr.update(), gr.update(visible=running), gr.Timer(active=running)

    def on_tick(state, request: gr.Request):
        job = JOBS.get(_session(request), state.seq) if state is not None else None
        view = poll_job(state, job)
        if view is None:
            return (gr.skip(),) * 4 + (gr.update(visible=False), gr.Timer(active=False)) + (gr.skip(),) * 7
        if not view.running:
            JOBS.drop(_session(request), job)
        return _shown_map(view, new=False)

    def on_cancel(request: gr.Request):
        JOBS.cancel(_session(request))
        return gr.update(value="Cancelling…", interactive=False)

    outputs = [ui.plot, ui.note, ui.progress, ui.state, ui.cancel, ui.timer, ui.patch, ui.colour_note,
               ui.selection_html, ui.gallery, ui.selection, ui.words, ui.index]
    quiet = dict(show_progress="hidden", api_visibility="private")
    gr.on([ui.refresh.click, ui.index.focus], on_choices, ui.index, ui.index, **quiet)
    drawn = live([ui.index, ui.method, ui.run.click], on_map, [ui.index, ui.method, *ui.colour_inputs()],
                 outputs, concurrency_limit=2, api_name="map")
    drawn.then(on_start, ui.state, [ui.progress, ui.cancel, ui.timer], concurrency_limit=None, **quiet)
    ui.timer.tick(on_tick, ui.state, outputs, concurrency_limit=None, **quiet)
    ui.cancel.click(on_cancel, None, ui.cancel, concurrency_limit=None, **quiet)


def _wire_colours(ui: MapHandles) -> None:
    """Colour-by: each control shows its own inputs; every edit recolours the map in place, live."""
    ctx = ui.ctx

    def on_by(by):
        return tuple(gr.update(visible=by == kind) for kind in ("zeroshot", "taught", "cluster", "query"))

    def on_colour(state, by, labels, templates, none_below, classifier, k, cluster_method, query, vocabulary,
                  query_image, request: gr.Request, event: gr.EventData = None):
        choice = _choice(by, labels, templates, none_below, classifier, k, cluster_method, query, vocabulary,
                         query_image)
        try:
            new, patch = recolour(session_of(ctx, request), state, choice)
        except ValueError as exc:  # Problem, PromptError, a classifier file refused...
            return gr.update(), message(str(exc), "error"), gr.update()
        note = colour_note(new.colouring)
        if from_page(event) and state is not None and unchanged(colour_note(state.colouring), note):
            note = gr.skip()  # the same words: not sent again
        return patch, note, new

    ui.colour_by.change(on_by, ui.colour_by, [ui.zeroshot_box, ui.taught_box, ui.cluster_box, ui.query_box],
                        show_progress="hidden", api_visibility="private")
    live([ui.colour_by, ui.labels, ui.templates, ui.none_below, ui.classifier.upload, ui.k, ui.cluster_method,
          ui.query, ui.vocabulary, ui.query_image.upload, ui.query_image.clear, ui.labels.submit,
          ui.query.submit], on_colour,
         [ui.state, *ui.colour_inputs()],
         [ui.patch, ui.colour_note, ui.state], concurrency_limit=2, api_name="map_colours")
    ui.patch.change(None, ui.patch, None, js=RECOLOUR_JS, show_progress="hidden", api_visibility="private")


def _wire_points(ui: MapHandles) -> None:
    """A hovered point's image; a selection's gallery, then its best words; the lists."""
    ctx = ui.ctx

    def on_hover(state, value, evidence, request: gr.Request):
        shown = hover_view(session_of(ctx, request), state, value, evidence)
        return (gr.skip(), gr.skip()) if shown is None else shown

    def on_select(state, value, request: gr.Request):
        html, items, names = selection_view(session_of(ctx, request), state, value)
        return html, gr.update(value=items, visible=bool(items)), names, ""

    def on_words(state, selected, vocabulary, request: gr.Request):
        try:
            return words_view(session_of(ctx, request), state, selected, vocabulary)
        except (ValueError, ImportError, OSError) as exc:  # no vocabulary: the selection stands without words
            return message(f"No best words: {exc}", "muted")

    def on_lists(state, templates, request: gr.Request):
        try:
            return lists_view(session_of(ctx, request), state, templates)
        except ValueError as exc:
            return message(str(exc), "error"), gr.update()

    quiet = dict(show_progress="hidden", trigger_mode="always_last", api_visibility="private")
    ui.hover_id.change(on_hover, [ui.state, ui.hover_id, ui.evidence], [ui.hover_image, ui.hover_caption],
                       concurrency_limit=None, **quiet)
    ui.selection_ids.change(on_select, [ui.state, ui.selection_ids],
                            [ui.selection_html, ui.gallery, ui.selection, ui.words], concurrency_limit=2,
                            **quiet).then(on_words, [ui.state, ui.selection, ui.vocabulary], ui.words,
                                          concurrency_limit=2,
                                          show_progress="minimal", api_name="map_words",
                                          api_visibility="private")  # the vocabulary: encoded once
    ui.vocabulary.blur(on_words, [ui.state, ui.selection, ui.vocabulary], ui.words, concurrency_limit=2,
                       show_progress="minimal", api_visibility="private")  # the selection's words follow
    ui.lists_run.click(on_lists, [ui.state, ui.templates], [ui.lists, ui.evidence], concurrency_limit=2,
                       api_name="map_lists")
