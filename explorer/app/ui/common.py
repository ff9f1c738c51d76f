"""What the tabs share: message boxes, accepted file types, template choices, progress reporting,
one-click examples, the models a hosted demo offers, and a per-session Cancel.

Tabs import these from here, never from each other.
"""
from __future__ import annotations

import functools
import html
import inspect
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr

from explorer.app.progress import RateText
from explorer.embed.images import IMAGE_EXTENSIONS
from explorer.embed.names import LOCAL_DIR, describe
from explorer.science.prompts import builtin_template_set
from explorer.science.test_time import SwitchOutcome, SwitchSettings

IMAGE_TYPES = sorted(IMAGE_EXTENSIONS)
ZIP_TYPES = IMAGE_TYPES + [".zip"]
# The built-in template sets a page offers, by the name prompts.load_template_set knows them by.
TEMPLATE_CHOICES = {
    "Single: a photo of a {}.": "single",
    "7 templates (OpenAI subset)": "simple",
    "80 templates (OpenAI ImageNet)": "openai",
}
CUSTOM = "Custom (edit below)"
NO_INDEX = "(none)"   # an index dropdown's first choice: no index picked


def template_set(choice: str) -> list[str]:
    """The built-in template set a page's TEMPLATE_CHOICES key names; ValueError for any other value
    (API calls send anything)."""
    if choice not in TEMPLATE_CHOICES:
        raise ValueError(f"Templates: choose one of {', '.join(TEMPLATE_CHOICES)}.")
    return builtin_template_set(TEMPLATE_CHOICES[choice])


def any_index_choices(ctx) -> list[tuple[str, str]]:
    """(label, index folder) of every non-empty index this session may use, whatever model made it,
    after NO_INDEX: an index dropdown's choices."""
    return [(NO_INDEX, NO_INDEX)] + [(ctx.index_label(info), str(info.folder))
                                     for info in ctx.visible_indexes() if info.count]


def request_session(args, kwargs) -> str | None:
    """The session hash of the gr.Request among a handler's arguments (None without one)."""
    return next((getattr(v, "session_hash", None)
                 for v in (*args, *kwargs.values()) if isinstance(v, gr.Request)), None)


def around(fn, context):
    """`fn` run inside `context(args, kwargs)` (a context manager made per call), of the same kind as
    `fn` (plain, generator, coroutine, async generator), its signature kept for gradio to read
    (functools.wraps: gradio still hands it gr.Request and gr.Progress). The event wrappers of
    ui/__init__.py (sessions in use) and gate_events.py (the input gate) are made with it."""
    if inspect.isasyncgenfunction(fn):
        async def handler(*args, **kwargs):
            with context(args, kwargs):
                async for item in fn(*args, **kwargs):
                    yield item
    elif inspect.iscoroutinefunction(fn):
        async def handler(*args, **kwargs):
            with context(args, kwargs):
                return await fn(*args, **kwargs)
    elif inspect.isgeneratorfunction(fn):
        def handler(*args, **kwargs):
            with context(args, kwargs):
                yield from fn(*args, **kwargs)
    else:
        def handler(*args, **kwargs):
            with context(args, kwargs):
                return fn(*args, **kwargs)
    return functools.wraps(fn)(handler)


# How an edit runs its tab's handler as the user types, picks or drags (issue 29): one gradio event for
# the edits and the button together, always_last (an edit made while one runs waits, and of those
# waiting only the last runs: no stale result is left on screen, and a page never has two of its runs
# in flight, so hosted a press during a live run waits instead of being refused by the session's job
# limit); progress shown small ("minimal"), never as an overlay flashing over the results.
LIVE = dict(trigger_mode="always_last", show_progress="minimal")


def live(triggers, fn, inputs, outputs, **options):
    """One event running `fn` on every user edit of the components among `triggers` (their `.input`,
    a fixed dropdown's `.select`: typing, picking, dragging; not a value the app itself sets, so an
    example that fills a box does not run twice) and on the event triggers among them (`run.click`,
    `text.submit`). Give it the button too, and the api_name: live edits then are that endpoint's calls,
    through the same gate and, hosted, the same per-session job limit. Returns gradio's event."""
    events = [t if callable(t) and hasattr(t, "event_name") else _edit_event(t) for t in triggers]
    return gr.on(events, fn, inputs, outputs, **{**LIVE, **options})


def _edit_event(component):
    """A component's event for a user's edit: `.input`, except a dropdown of fixed choices, whose pick
    gradio reports as two input events (one run too many) but one `.select`. A dropdown that takes typed
    values keeps `.input`: Enter on a typed value is no select."""
    if isinstance(component, gr.Dropdown) and not component.allow_custom_value:
        return component.select
    return component.input


def from_page(event) -> bool:
    """True when the page made this call (an edit or a press: gradio names the component that
    triggered it in the handler's gr.EventData), False for an API call (gradio_client, raw HTTP). Only
    the page keeps what it was sent before, so only its calls may be answered with gr.skip() for an
    output that did not change; an API call always gets every output in full."""
    return getattr(event, "target", None) is not None


def unchanged(before, after) -> bool:
    """True when an output would be re-sent with what the page already shows (`before`, kept in a
    gr.State): the handler then returns gr.skip() for it, and the browser neither receives nor redraws
    it."""
    return before is not None and before == after


def session_of(ctx, request):
    """The context as the session making `request` sees it (hosted: its own workspace)."""
    return ctx.scoped(getattr(request, "session_hash", None))


def public_name(value: str | None) -> str | None:
    """A model identifier or checkpoint as a hosted page shows it: 'local-dir:/srv/m/my-clip' ->
    'local-dir:my-clip', '/srv/ckpt/epoch_9.pt' -> 'epoch_9.pt'; any other identifier as it is."""
    if not value:
        return value
    if value.startswith(LOCAL_DIR):
        return LOCAL_DIR + os.path.basename(os.path.normpath(value[len(LOCAL_DIR):]))
    return os.path.basename(os.path.normpath(value)) if os.path.isabs(value) else value


def offered(ctx) -> dict[str, tuple[str, str | None]]:
    """label -> (model, pretrained) of the models a hosted demo offers."""
    return {describe(public_name(name), public_name(pretrained)): (name, pretrained)
            for name, pretrained in ctx.settings.model_choices()}


class Stops:
    """Cancel, per browser session: work asked for at `asked` (time.monotonic) stops after its next
    step once `cancel` is called for its session later than that; work still waiting in the queue then
    stops before its first step."""

    def __init__(self):
        self._cancelled: dict[str, float] = {}
        self._lock = threading.Lock()

    def cancel(self, session: str) -> None:
        with self._lock:
            self._cancelled[session] = time.monotonic()

    def checker(self, session: str, asked: float) -> Callable[[], bool]:
        return lambda: self._cancelled.get(session, float("-inf")) > asked


def message(text: str, kind: str = "note") -> str:
    """A short HTML box: kind is note, error or muted (styled in assets/style.css)."""
    return f'<div class="explorer-{kind}">{html.escape(text)}</div>'


def failures_html(failures, limit: int = 20) -> str:
    """'Skipped NAME: reason' lines for unreadable files, at most `limit`, then how many more."""
    lines = [f'<p class="explorer-error">Skipped {html.escape(f.path)}: {html.escape(f.reason)}</p>'
             for f in failures[:limit]]
    if len(failures) > limit:
        lines.append(f'<p class="explorer-error">… and {len(failures) - limit} more unreadable file(s).</p>')
    return "".join(lines)


def notes_html(notes, prefix: str = "Note: ") -> str:
    return "".join(f'<p class="explorer-muted">{html.escape(prefix + n)}.</p>' for n in notes)


# Work that ends sooner shows no progress bar: a live edit answered from the cache draws nothing over the
# page, while a run that encodes images shows its bar once it has taken this long.
PROGRESS_AFTER_S = 0.3


def patient(progress, after: float = PROGRESS_AFTER_S, clock=time.monotonic):
    """`progress` (a gr.Progress, or None in tests) that passes nothing on until `after` seconds have
    gone since this call (the handler's start)."""
    if progress is None:
        return None
    start = clock()

    def report(*args, **kwargs):
        if clock() - start >= after:
            progress(*args, **kwargs)
    return report


def progress_reporter(progress, unit: str = "images"):
    """A core-style progress(done, total) callback that drives a gr.Progress (or nothing, in tests)
    with count, rate and time left, once the work has lasted PROGRESS_AFTER_S (patient)."""
    shown = patient(progress)
    if shown is None:
        return None
    rate = RateText(unit)
    return lambda done, total: shown(done / total if total else 1.0, desc=rate(done, total))


def offer_examples(rows: list[dict], names: list[str], inputs: list, fn, outputs: list, elem_id: str):
    """One-click examples under the inputs: clicking one fills `inputs` and runs `fn` on them (nothing
    is computed at start-up). `rows`: one {component: value} per example; `names`: their buttons (gradio
    cuts them near 60 characters). A component no row names keeps its value; one that some rows name is
    cleared by the others.

    gradio copies the files into its cache when the page is built, and clicks send those copies, which
    it accepts as uploads (hosted mode too). They are kept for the life of the app: hosted mode's
    delete_cache would otherwise delete them one session TTL after start-up, and the examples with them."""
    if any(c not in inputs for row in rows for c in row):
        raise ValueError("an example names a component that is not one of the inputs")
    examples = gr.Examples([[row.get(c) for c in inputs] for row in rows], inputs, outputs, fn=fn,
                           cache_examples=False, run_on_click=True, example_labels=names, elem_id=elem_id,
                           label="Examples: photos shipped with the app (click one to run it)",
                           api_visibility="private")
    for component in (c for c in inputs if isinstance(c, gr.File)):
        for row in rows:
            for path in _listed(row.get(component)):
                component.keep_in_cache.add(component.move_resource_to_block_cache(path))
    return examples


def _listed(value) -> list:
    return [] if value is None else value if isinstance(value, list) else [value]


# ---- test-time switches (explorer/science/test_time.py), the same in Classify and the Prompt lab -------
MAX_VIEWS = 64
COMBINES = {"ZERO vote (the paper's)": "zero", "Average the views' features": "mean"}
SWITCHES_TITLE = "Test-time switches (off by default)"


@dataclass
class SwitchControls:
    """The switches' inputs, in the order a handler (and the API) takes them: views, combine, tda."""
    views: gr.Number
    combine: gr.Radio
    tda: gr.Checkbox

    def inputs(self) -> list:
        return [self.views, self.combine, self.tda]

    def edits(self) -> list:
        """What a live page re-runs on: each switch's own edit."""
        return [self.views, self.combine, self.tda]


def switch_controls(prefix: str, order: str) -> SwitchControls:
    """An accordion of the switches (all off), its elements named `prefix`-views, -combine, -tda.
    `order`: the order TDA streams the images in, in words ("in the order dropped")."""
    with gr.Accordion(SWITCHES_TITLE, open=False, elem_id=f"{prefix}-switches"):
        views = gr.Number(0, label=f"Augmented views per image (0 = off; up to {MAX_VIEWS}, the image itself "
                          "counted)", minimum=0, maximum=MAX_VIEWS, precision=0, step=1,
                          elem_id=f"{prefix}-views",
                          info="ZERO (Farina et al., NeurIPS 2024): random crops and flips of each image, "
                          "classified and combined. Costs about one encoding per view.")
        combine = gr.Radio(list(COMBINES), value=next(iter(COMBINES)), label="Combine the views",
                           elem_id=f"{prefix}-combine",
                           info="ZERO: each confident view votes for its top label. Or: one prediction from "
                           "the views' averaged features. With TDA on, TDA's own filter combines them.")
        tda = gr.Checkbox(False, label=f"TDA over these images ({order})", elem_id=f"{prefix}-tda",
                          info="Training-free dynamic adapter (Karmanov et al., CVPR 2024): caches of "
                          "confident images adjust the labels of those that follow.")
    return SwitchControls(views, combine, tda)


def switch_settings(views, combine_name, tda) -> SwitchSettings:
    """The switches a page's inputs ask for (off: views 0 or 1, TDA unticked). ValueError for a number
    of views out of range or an unknown way to combine them (API calls send anything)."""
    try:
        count = int(round(float(views or 0)))
    except (TypeError, ValueError):
        raise ValueError(f"Augmented views: a whole number from 0 to {MAX_VIEWS}, not {str(views)[:40]!r}") \
            from None
    if not 0 <= count <= MAX_VIEWS:
        raise ValueError(f"Augmented views: a whole number from 0 to {MAX_VIEWS}, not {count:,}")
    if combine_name not in COMBINES:
        raise ValueError(f"Combine the views: one of {', '.join(COMBINES)}")
    return SwitchSettings(views=count, combine=COMBINES[combine_name], tda=bool(tda))


def switches_html(outcome: SwitchOutcome, names: list[str], prefix: str) -> str:
    """What the switches did: each switch named (method, params, source), its time as a ratio to plain
    classification, the top labels it changed and, on labelled images, accuracy before and after with
    the paired evidence (said plainly when it is within chance)."""
    said = "".join(f"<li>{method_line(d)}</li>" for d in outcome.settings.as_dicts())
    ratio = (f'<p id="{prefix}-switch-cost"><b>Time:</b> ×{outcome.cost_ratio:.1f} the time of plain '
             f"classification ({outcome.seconds_switched:.2f} s against {outcome.seconds_plain:.2f} s "
             "to read and encode the same images once).</p>")
    parts = [f'<div class="explorer-note" id="{prefix}-switched"><p><b>Test-time switches on:</b> '
             f"{html.escape(outcome.settings.describe())}.</p><ul>{said}</ul>", ratio,
             _changed_html(outcome, names, prefix)]
    if outcome.evidence is not None:
        parts.append(_accuracy_html(outcome, prefix))
    parts.append(notes_html(getattr(outcome, "notes", [])) + "</div>")
    return "".join(parts)


def method_line(about: dict) -> str:
    """A method's {"method", "params", "source", "differs"} in one line of HTML."""
    params = ", ".join(f"{k}={v}" for k, v in (about.get("params") or {}).items())
    differs = f' <span class="explorer-muted">Differs: {html.escape(about["differs"])}</span>' \
        if about.get("differs") else ""
    return (f'<b>{html.escape(str(about["method"]))}</b>{html.escape(f" ({params})" if params else "")}. '
            f'<span class="explorer-muted">Source: {html.escape(str(about.get("source", "")))}</span>'
            f"{differs}")


def _changed_html(outcome: SwitchOutcome, names: list[str], prefix: str, limit: int = 10) -> str:
    before, after = outcome.before.top1(), outcome.after.top1()
    lines = "".join(f"<li>{html.escape(names[i])}: {html.escape(before[i])} → {html.escape(after[i])}</li>"
                    for i in outcome.changed[:limit])
    more = f"<li>… and {len(outcome.changed) - limit} more</li>" if len(outcome.changed) > limit else ""
    return (f'<p id="{prefix}-switch-changed"><b>{len(outcome.changed)} of {len(after)}</b> top label(s) '
            f"changed by the switches.</p>" + (f"<ul>{lines}{more}</ul>" if lines else ""))


def _accuracy_html(outcome: SwitchOutcome, prefix: str) -> str:
    e = outcome.evidence
    verdict = {"better": "the switches help beyond chance (p < 0.05 and the interval excludes 0)",
               "worse": "the switches hurt beyond chance (p < 0.05 and the interval excludes 0)"}.get(
        e.verdict, f"no clear difference on these {e.n} images: the interval includes 0 or p ≥ 0.05")
    return (f'<p id="{prefix}-switch-accuracy"><b>Accuracy:</b> {outcome.before_accuracy:.1%} plain → '
            f"{outcome.after_accuracy:.1%} switched on {e.n} labelled images; after minus before, in points "
            f"[paired bootstrap 95% interval] and McNemar's exact p: {html.escape(e.describe())}: "
            f"{html.escape(verdict)}.</p>")
