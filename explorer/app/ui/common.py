"""What the tabs share: message boxes, accepted file types, template choices, progress reporting,
one-click examples.

Tabs import these from here, never from each other.
"""
from __future__ import annotations

import functools
import html
import inspect
import time

import gradio as gr

from explorer.app.progress import RateText
from explorer.embed.images import IMAGE_EXTENSIONS

IMAGE_TYPES = sorted(IMAGE_EXTENSIONS)
ZIP_TYPES = IMAGE_TYPES + [".zip"]
# The built-in template sets a page offers, by the name prompts.load_template_set knows them by.
TEMPLATE_CHOICES = {
    "Single: a photo of a {}.": "single",
    "7 templates (OpenAI subset)": "simple",
    "80 templates (OpenAI ImageNet)": "openai",
}
CUSTOM = "Custom (edit below)"


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
