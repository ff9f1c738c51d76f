"""Every event of the built app passes the input gate (explorer/inputs/gate.py) before its handler runs, and
the API lists only the named endpoints.

`install` (called once by build_app, after the tabs and after ui.on_gpu) wraps the function of every
event in app.fns, helpers, Enter-key triggers and one-click examples included, so a new tab cannot
forget it. Before the handler, every argument a visitor sent is checked by what its component holds:
  - files (gr.File, gr.UploadButton, gr.Image, ...: a path, FileData, or a list of them): gate.files,
    by count (max_upload_files) and total bytes (max_upload_total_mb), read with stat, nothing opened;
  - a text: gate.text, by bytes (max_text_kb);
  - a list or a table: by rows (max_texts) and by the bytes of its texts together (max_text_kb).
gr.State values are the server's own and are not checked. A refusal is a gr.Error naming the
component's label, the value, the limit and the setting.

Fair time (hosted, settings.session_jobs > 0): the events that run the model (`heavy`: ui.GPU_EVENTS,
their other triggers and the examples' run steps) count as jobs. A session may have at most
session_jobs of them running or waiting. They are refused when they join the queue (a gradio
validator, which runs before the event is queued, so a refused job never waits in line in front of
anyone), and again when they start (a per-session count of running handlers: a direct call or a burst
that slipped between the validator and the queue). Hosted, they also share one concurrency pool
("model") one larger than session_jobs, so one visitor at their limit leaves a slot for another.
"""
from __future__ import annotations

import inspect
import os
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import gradio as gr

from explorer.inputs import gate
from explorer.inputs.settings import Settings, flag_and_variable

from .common import around, request_session

FILE_COMPONENTS = (gr.File, gr.UploadButton, gr.Image, gr.Gallery, gr.Video, gr.Audio, gr.Model3D)
SPECIAL = (gr.Request, gr.Progress, gr.EventData)
MODEL_POOL = "model"       # the concurrency_id of the events that run the model (hosted)
OWN_POOL = {"build_index", "load_model"}  # long or exclusive: keep their own concurrency limit of 1
ADMIT_WINDOW = 10.0        # seconds an admitted job that never started (its join failed) is still counted


def install(settings: Settings, app: gr.Blocks, heavy: Iterable, public: Iterable[str]) -> None:
    """Gate every event of `app` (call inside its `with`, after on_gpu). `heavy`: the functions of the
    events that run the model (jobs); `public`: the api_names the API lists (every other is private)."""
    heavy, public = {inspect.unwrap(fn) for fn in heavy}, set(public)  # handlers, whatever wraps them
    _attach_load_events(app)
    jobs = SessionJobs(settings.session_jobs if settings.hosted else 0)
    made: dict = {}
    for block_fn in list(app.fns.values()):
        if block_fn.fn is None:
            continue
        counted = inspect.unwrap(block_fn.fn) in heavy
        key = (block_fn.fn, tuple(c._id for c in block_fn.inputs), counted)
        if key not in made:  # one wrapper per function and inputs: its triggers keep sharing one function
            made[key] = gated(settings, block_fn, jobs if counted else None)
        block_fn.fn = made[key]
        if counted and jobs.limit:
            block_fn.validator = jobs.validator(app, block_fn, settings)
            if block_fn.api_name not in OWN_POOL:
                block_fn.concurrency_id, block_fn.concurrency_limit = MODEL_POOL, jobs.limit + 1
        if block_fn.api_name not in public:
            block_fn.api_visibility = "private"
    jobs.heavy = {made[k] for k in made if k[2]}
    if settings.hosted:
        hide_server_paths(settings, app)


JOIN_REFUSED = (
    "This request was refused before it was queued: it names a file that was not uploaded to this "
    "page, or its inputs could not be read.")


def quiet_join_errors(app: gr.Blocks) -> None:
    """Hosted, once the app is queued: a request refused with an error when it joins the queue (not a
    validator's verdict, nor a full queue) is answered in fixed words. Gradio would answer with its
    exception's text, which quotes the path a caller sent as resolved on this server (InvalidPathError:
    "Cannot move /resolved/path ..."), so a made-up path (/proc/self/cwd/x) would learn where it leads."""
    queue = app._queue
    push = queue.push

    async def quiet_push(*args, **kwargs):
        success, detail, state = await push(*args, **kwargs)
        return (success, JOIN_REFUSED, state) if not success and state == "error" else (success, detail,
                                                                                        state)
    queue.push = quiet_push


SERVER_TEXTS = ("info", "placeholder")  # the hints a hidden, local-only component may still carry


def hide_server_paths(settings: Settings, app: gr.Blocks) -> None:
    """Hosted: no component's hint names a folder of the server (the allowed roots, the index folder,
    the home folder), even on a component hidden there (its hint is still in /config)."""
    folders = [str(p) for p in (*settings.allowed_roots, settings.index_dir, Path.home()) if p]
    for block in app.blocks.values():
        for attr in SERVER_TEXTS:
            text = getattr(block, attr, None)
            if isinstance(text, str) and any(folder in text for folder in folders):
                setattr(block, attr, None)


def _attach_load_events(app: gr.Blocks) -> None:
    """Add now the page-load events of components whose value is a function (gradio adds them when the
    `with` block closes, after install), so that they are gated too; gradio then finds none left."""
    app.default_config.attach_load_events()
    for block in app.blocks.values():
        if getattr(block, "load_event_to_attach", None):
            block.load_event_to_attach = None


class SessionJobs:
    """Jobs per session: those running (counted here) and those waiting in gradio's queue."""

    def __init__(self, limit: int):
        self.limit = max(0, int(limit))
        self.heavy: set = set()
        self._running: Counter = Counter()
        self._admitted: dict[str, list[float]] = defaultdict(list)
        self._lock = threading.Lock()

    def refusal(self, count: int) -> str:
        flag, variable = flag_and_variable("session_jobs")
        return (
            f"Too many jobs at once: this session already has {count} running or waiting, and the limit is "
            f"{self.limit} (set with {flag} or {variable}). Wait for one to finish, then try again.")

    @contextmanager
    def running(self, session: str | None):
        """Count one running job of `session`; gate.Refused when it already has `limit` running."""
        if not self.limit or not session:
            yield
            return
        with self._lock:
            if self._running[session] >= self.limit:
                raise gate.Refused(self.refusal(self._running[session]))
            self._running[session] += 1
            if self._admitted.get(session):
                self._admitted[session].pop(0)  # an admitted job has started: it is counted as running now
        try:
            yield
        finally:
            with self._lock:
                self._running[session] -= 1
                if self._running[session] <= 0:
                    del self._running[session]

    def admit(self, queue, session: str) -> str | None:
        """At queue join: None when `session` may queue one more job, else the refusal."""
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._admitted[session] if now - t < ADMIT_WINDOW]
            count = max(self.waiting(queue, session), len(recent) + self._running[session])
            if count >= self.limit:
                self._admitted[session] = recent
                return self.refusal(count)
            self._admitted[session] = recent + [now]
            for other in [s for s, times in self._admitted.items() if not times or now - times[-1] > 60]:
                del self._admitted[other]
        return None

    def waiting(self, queue, session: str) -> int:
        """The session's jobs in gradio's queue: waiting, and running (gradio's active jobs)."""
        if queue is None:
            return 0
        waiting = [e for q in list(queue.event_queue_per_concurrency_id.values()) for e in list(q.queue)]
        active = [e for job in list(queue.active_jobs) if job for e in job]
        return sum(1 for e in waiting + active if e.session_hash == session and getattr(e, "alive", True)
                   and e.fn.fn in self.heavy)

    def validator(self, app: gr.Blocks, block_fn, settings: Settings):
        """A gradio validator for `block_fn`: run when an event joins the queue, before it waits."""
        inputs = list(block_fn.inputs)
        shown = next((i for i, c in enumerate(inputs) if not isinstance(c, gr.State)), 0)

        def validate(*values):
            request = values[-1] if values and isinstance(values[-1], gr.Request) else None
            values = values[:len(inputs)]
            session = getattr(request, "session_hash", None)
            refused = self.admit(getattr(app, "_queue", None), session) if session else None
            if refused is None:
                try:
                    check_arguments(block_fn, values, {}, settings)
                except gate.Refused as exc:
                    refused = str(exc)
            return _verdicts(len(inputs), shown, refused)

        parameters = [inspect.Parameter(f"input_{i}", inspect.Parameter.POSITIONAL_OR_KEYWORD)
                      for i in range(len(inputs))]
        parameters.append(inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                            annotation=gr.Request))
        validate.__signature__ = inspect.Signature(parameters)
        validate.__annotations__ = {"request": gr.Request}
        return validate


def _verdicts(count: int, shown: int, refused: str | None):
    """What a validator returns: one gr.validate per input; a refusal shown on input `shown`."""
    verdicts = [gr.validate(True, "") for _ in range(count)]
    if refused is not None and count:
        verdicts[shown] = gr.validate(False, refused)
    return verdicts[0] if count == 1 else verdicts


def gated(settings: Settings, block_fn, jobs: SessionJobs | None):
    """block_fn.fn, run only once every argument a visitor sent passes the gate (gr.Error otherwise);
    a job (`jobs` given) also counts against its session's limit while it runs."""
    @contextmanager
    def gate_then_count(args, kwargs):
        try:
            check_arguments(block_fn, args, kwargs, settings)
            counting = jobs.running(request_session(args, kwargs)) if jobs is not None else nullcontext()
            counting.__enter__()
        except gate.Refused as exc:
            raise gr.Error(str(exc), title="Refused") from None
        try:
            yield
        finally:
            counting.__exit__(None, None, None)

    handler = around(block_fn.fn, gate_then_count)
    handler.gated = True  # what tests/test_gate_events.py looks for on every event
    return handler


def check_arguments(block_fn, args, kwargs, settings: Settings) -> None:
    """gate.Refused when any argument a visitor sent to `block_fn` is over a limit."""
    limits = gate.TextLimits.of(settings)
    for component, value in _sent(block_fn, args, kwargs):
        if isinstance(component, gr.State) or value is None:
            continue
        check_value(_label(component), value, settings, limits, isinstance(component, FILE_COMPONENTS))


def _sent(block_fn, args, kwargs) -> list[tuple[Any, Any]]:
    """(component or keyword name, value) of each argument a visitor sent, gradio's own special
    arguments (gr.Request, gr.Progress, event data) left out."""
    values = [v for v in args if not isinstance(v, SPECIAL)]
    if block_fn.inputs_as_dict and len(values) == 1 and isinstance(values[0], dict):
        return list(values[0].items())
    pairs = list(zip(block_fn.inputs, values))
    pairs += [(name, value) for name, value in kwargs.items() if not isinstance(value, SPECIAL)]
    return pairs


def _label(component) -> str:
    if isinstance(component, str):
        return component
    name = getattr(component, "label", None) or getattr(component, "elem_id", None)
    return str(name or type(component).__name__)


def check_value(what: str, value, settings: Settings, limits: gate.TextLimits, is_file: bool) -> None:
    """Refused when `value` (one argument) is over its limit: files, a text, a list or a table."""
    paths = _paths(value) if is_file else None
    if paths is not None:
        gate.files(paths, what, settings)
    elif isinstance(value, str):
        gate.text(value, what, limits)
    elif hasattr(value, "shape") and hasattr(value, "to_numpy"):  # a pandas table (gr.Dataframe)
        _texts(what, [str(cell) for cell in value.to_numpy().ravel()], value.shape[0], limits)
    elif isinstance(value, dict) and isinstance(value.get("data"), list):  # a table as headers + data
        rows = value["data"]
        _texts(what, [str(c) for row in rows for c in (row if isinstance(row, list) else [row])], len(rows),
               limits)
    elif isinstance(value, (list, tuple)):
        flat = [c for item in value for c in (item if isinstance(item, (list, tuple)) else [item])]
        _texts(what, [c for c in flat if isinstance(c, str)], len(value), limits)


def _texts(what: str, texts: list[str], rows: int, limits: gate.TextLimits) -> None:
    gate.check_count(what, rows, limits.max_items, "max_texts", "rows")
    total = sum(len(t) for t in texts)
    if total * 4 > limits.max_bytes:
        total = sum(len(t.encode("utf-8", "surrogatepass")) for t in texts)
        gate.check_count(what, total, limits.max_bytes, "max_text_kb", "bytes")


def _paths(value) -> list[str] | None:
    """The file paths in a file component's value (a path, FileData or its dict, or a list of them;
    None when it holds something else, such as a decoded image)."""
    items = value if isinstance(value, (list, tuple)) else [value]
    paths = []
    for item in items:
        if isinstance(item, (list, tuple)) and item:  # a gallery's (image, caption)
            item = item[0]
        path = item.get("path") if isinstance(item, dict) else getattr(item, "path", item)
        if isinstance(path, (str, os.PathLike)):
            paths.append(os.fspath(path))
        elif path is not None:
            return None
    return paths
