"""How fast the page answers an edit on already-embedded inputs, measured in the browser (issue 29).

The app runs in this process (the shapes model unless --model says otherwise) and headless Chromium
(Debian's, driven by Playwright, as the browser tests do) performs each interaction: an edit typed,
picked or dragged the way a user does it (the last key typed, a click, a drag, a drop). The time counted
runs from the action's first key, mouse or input event in the page to the updated result on screen (the
first animation frame in which the page shows it). With --press each edit is made first and the clock
starts when its button is pressed: how a page without live edits answers (run it in an older checkout,
e.g. a `git worktree` of the commit before, to get the "before" of a before/after table).
Beside it, in the same page: the server's own handler time for that event, and the no-op gradio round
trips, the floor a gradio app cannot go under: `noop`, a button whose handler returns a counter into a
text box, and `noop_typed`, a key typed into a text box whose handler returns its text into another.
Both are measured first, on an empty page, and again at the end (`*_at_end`) with every tab's results
on it: gradio's front end does more per event on a fuller page. Each interaction's time is split into

    server    the handler's own time (the event's function, gate included; gradio's pre/postprocess not)
    transfer  from the action to the arrival of the result in the page, less the server time
              (the event's trip in, gradio's queue, postprocessing, serialising, the trip out)
    drawing   from the arrival to the result on screen (gradio's render, plotly's redraw)

and reported as the median and p95 of --repeats runs, and as ratios to the no-op floor.

    .venv/bin/python bench/bench_interaction.py [--repeats 15] [--only classify_label,noop] [--json]
    .venv/bin/python bench/bench_interaction.py --quick --json      (the suite runs this: 2 repeats)
    .venv/bin/python bench/bench_interaction.py --press             (edit, then press the button)

--json prints one JSON document last: {"interactions": {name: {median_ms, p95_ms, server_ms,
transfer_ms, drawing_ms, over_noop, runs}}, "noop_median_ms", ...}.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.interactions import INTERACTIONS, QUICK  # noqa: E402

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"]
GOALS = {"classify_first": (1500, 3000)}  # (median, p95) ms where issue 29 set its own goal
FAILED_SHOT = Path(tempfile.gettempdir()) / "bench-interaction-failed.png"
SHAPES = f"local-dir:{ROOT / 'tests' / 'assets' / 'shapes_clip'}"

# In the page, before gradio loads: (1) the time of the user's action, the first key press, mouse press
# or input event after the bench arms it (window.__armed), caught in the capture phase before gradio
# sees it; (2) the time each result message ("process_completed") arrives. Gradio's client reads its
# event stream (fetch) through a reader of decoded lines: its read() is where a message arrives.
PAGE_CLOCK_JS = """(() => {
  window.__arrivals = [];
  window.__armed = false;
  for (const type of ['keydown', 'mousedown', 'input']) {
    document.addEventListener(type, () => {
      if (window.__armed) { window.__armed = false; window.__t0 = performance.now(); }
    }, true);
  }
  const decoder = new TextDecoder();
  const read = ReadableStreamDefaultReader.prototype.read;
  ReadableStreamDefaultReader.prototype.read = function () {
    return read.call(this).then((chunk) => {
      const value = chunk.value instanceof Uint8Array ? decoder.decode(chunk.value) : chunk.value;
      if (typeof value === 'string' && value.includes('process_completed')) {
        window.__arrivals.push(performance.now());
      }
      return chunk;
    });
  };
})();"""


class HandlerClock:
    """Wraps every event function of the app to record (start, end) in epoch seconds."""

    def __init__(self, app):
        self.calls: list[tuple[float, float]] = []
        self.lock = threading.Lock()
        for block_fn in app.fns.values():
            if block_fn.fn is not None:
                block_fn.fn = self._timed(block_fn.fn)

    def _timed(self, fn):
        import inspect

        def record(start):
            with self.lock:
                self.calls.append((start, time.time()))

        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def gen(*args, **kwargs):
                start = time.time()
                try:
                    yield from fn(*args, **kwargs)
                finally:
                    record(start)
            return gen
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def coro(*args, **kwargs):
                start = time.time()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    record(start)
            return coro

        @functools.wraps(fn)
        def plain(*args, **kwargs):
            start = time.time()
            try:
                return fn(*args, **kwargs)
            finally:
                record(start)
        return plain

    def between(self, start: float, end: float) -> float:
        """Seconds of handler time in calls that started after `start` and ended before `end`."""
        with self.lock:
            return sum(e - s for s, e in self.calls if s >= start and e <= end)


def start_app(model: str, workdir: Path):
    """The app in this process on a free port, plus the no-op probe; returns (app, url, clock)."""
    import gradio as gr

    from explorer.app.context import AppContext
    from explorer.app.ui import build_app, launch_options
    from explorer.inputs.settings import add_settings_arguments, load_settings

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)
    os.environ["EXPLORER_INDEX_DIR"] = str(workdir / "indexes")
    os.environ["EXPLORER_ALLOWED_ROOTS"] = str(workdir)
    settings = load_settings(parser.parse_args(["--model", model, "--pretrained", "", "--port", str(port),
                                                "--host", "127.0.0.1"]))
    ctx = AppContext.create(settings)
    if ctx.slot.load(settings.model, settings.pretrained, settings.device, settings.precision) is None:
        raise SystemExit(f"the model {model} did not load")
    app = build_app(ctx)
    with app:  # the floors: a button whose handler returns a counter into a text box; a box typed into
        with gr.Row(elem_id="bench-noop-row"):  # whose handler returns what was typed into another
            noop = gr.Button("no-op", elem_id="bench-noop")
            out = gr.Textbox(elem_id="bench-noop-out", show_label=False)
            typed = gr.Textbox(elem_id="bench-noop-typed", show_label=False)
            echo = gr.Textbox(elem_id="bench-noop-echo", show_label=False)
        count = iter(range(10**9))
        noop.click(lambda: str(next(count)), None, out, show_progress="hidden", api_visibility="private")
        typed.input(lambda text: text, typed, echo, show_progress="hidden", trigger_mode="always_last",
                    api_visibility="private")
    clock = HandlerClock(app)
    app.launch(prevent_thread_lock=True, quiet=True, **launch_options(settings))
    return app, f"http://127.0.0.1:{port}/", clock


def measure(page, clock: HandlerClock, step, timeout_ms: int = 60_000) -> dict:
    """Prepare the step, then perform its action (the user's edit through Playwright: a key, a click, a
    drag) and wait for its `done` predicate. The time runs from the action's first key press, mouse
    press or input event in the page to the first animation frame showing the result. Returns total,
    server, transfer, drawing in ms."""
    if step.prepare is not None:
        step.prepare(page)
    page.evaluate("() => { window.__done = null; window.__t0 = null; window.__armed = true; }")
    origin = page.evaluate("() => performance.timeOrigin")
    step.act(page)
    page.wait_for_function(
        f"() => {{ if (window.__done === null && ({step.done})()) window.__done = performance.now(); "
        "return window.__done !== null; }", polling="raf", timeout=timeout_ms)
    t0, t1, arrivals = page.evaluate("() => [window.__t0, window.__done, window.__arrivals]")
    if t0 is None:
        raise RuntimeError("the action fired no key, mouse or input event in the page")
    arrived = max((a for a in arrivals if t0 <= a <= t1), default=t1)
    server = clock.between((origin + t0) / 1000 - 0.005, (origin + t1) / 1000 + 0.005) * 1000
    return {"total": t1 - t0, "server": server, "transfer": max(0.0, arrived - t0 - server),
            "drawing": t1 - arrived}


def summarise(runs: list[dict], noop_ms: float | None) -> dict:
    totals = sorted(r["total"] for r in runs)
    p95 = totals[min(len(totals) - 1, int(round(0.95 * (len(totals) - 1))))]
    median = statistics.median(totals)
    out = {"median_ms": round(median, 1), "p95_ms": round(p95, 1), "runs": len(runs)}
    for part in ("server", "transfer", "drawing"):
        out[f"{part}_ms"] = round(statistics.median(r[part] for r in runs), 1)
    if noop_ms:
        out["over_noop"] = round(median / noop_ms, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=SHAPES, help="an open_clip identifier (default: the shapes model)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="runs per interaction (default 15; 2 with --quick)")
    parser.add_argument("--only", default="", help="comma-separated interaction names (default: all)")
    parser.add_argument("--quick", action="store_true", help="a few interactions, 2 runs each (the suite)")
    parser.add_argument("--press", action="store_true",
                        help="make each edit, then time its button (the way before live edits; a page "
                             "without them, e.g. an older commit, needs this)")
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM") or shutil.which("chromium"))
    parser.add_argument("--json", action="store_true", help="print one JSON document last")
    args = parser.parse_args()
    repeats = args.repeats or (2 if args.quick else 15)
    names = [n for n in (args.only.split(",") if args.only else QUICK if args.quick else INTERACTIONS) if n]
    unknown = [n for n in names if n not in INTERACTIONS]
    if unknown:
        raise SystemExit(f"unknown interaction(s) {unknown}; known: {', '.join(INTERACTIONS)}")
    if not args.chromium:
        raise SystemExit("Debian's chromium is needed (apt-get install chromium) or --chromium PATH")
    from playwright.sync_api import sync_playwright

    workdir = Path(tempfile.mkdtemp(prefix="bench-interaction-"))
    try:
        app, url, clock = start_app(args.model, workdir)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_FLAGS, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.add_init_script(PAGE_CLOCK_JS)
            page.goto(url)
            page.wait_for_selector("#zs-run", timeout=60_000)
            # the floors stay in view wherever the page is scrolled: a click never scrolls to them
            page.add_style_tag(content="#bench-noop-row { position: fixed; right: 0; bottom: 0; width: 380px;"
                                       " z-index: 1000; background: white; }")
            results = run_all(page, clock, workdir, names, repeats, args.press)
            browser.close()
        app.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report(results, args, repeats)


def run_all(page, clock, workdir: Path, names: list[str], repeats: int, press: bool = False) -> dict:
    """{name: summary}: the no-op floor first, then each interaction after its one-time set-up."""
    floors = {name: [measure(page, clock, INTERACTIONS[name].step(page, i, workdir))
                     for i in range(max(repeats, 5))] for name in ("noop", "noop_typed")}
    noop_ms = statistics.median(r["total"] for r in floors["noop"])
    results = {name: summarise(runs, noop_ms) for name, runs in floors.items()}
    for name in names:
        if name.startswith("noop"):
            continue
        interaction = INTERACTIONS[name]
        try:
            interaction.setup(page, workdir)
            step = interaction.pressed if press else interaction.step
            measure(page, clock, step(page, -1, workdir))  # one warm-up edit, not counted
            results[name] = summarise([measure(page, clock, step(page, i, workdir)) for i in range(repeats)],
                                      noop_ms)
        except Exception as exc:  # say which interaction broke, and show the page at that moment
            page.screenshot(path=str(FAILED_SHOT))
            raise SystemExit(f"{name}: {exc}\n(the page at that moment: {FAILED_SHOT})") from exc
    if len(names) > 1:  # the floors again, with every tab's results now on the page
        for name in ("noop", "noop_typed"):
            results[f"{name}_at_end"] = summarise([measure(page, clock, INTERACTIONS[name].step(
                page, i, workdir)) for i in range(max(repeats, 5))], noop_ms)
    return results


def report(results: dict, args, repeats: int) -> None:
    noop_ms = results["noop"]["median_ms"]
    print(f"{repeats} runs per interaction; no-op gradio round trip (the floor): median {noop_ms:.0f} ms")
    print(f"{'interaction':22s} {'median':>7s} {'p95':>7s} {'server':>7s} {'transfer':>9s} {'drawing':>8s}"
          f" {'x no-op':>8s}  goal (300 ms median / 500 ms p95, or 2x the no-op; first classify 1.5 s)")
    for name, r in results.items():
        goal = max(300, 2 * noop_ms), max(500, 2 * noop_ms)
        if name in GOALS:
            goal = GOALS[name]
        met = "met" if r["median_ms"] <= goal[0] and r["p95_ms"] <= goal[1] else "MISSED"
        print(f"{name:22s} {r['median_ms']:7.0f} {r['p95_ms']:7.0f} {r['server_ms']:7.0f} "
              f"{r['transfer_ms']:9.0f} {r['drawing_ms']:8.0f} {r.get('over_noop', 1.0):8.2f}  {met}")
    if args.json:
        print(json.dumps({"model": args.model, "repeats": repeats, "press": args.press,
                          "noop_median_ms": noop_ms, "interactions": results}))


if __name__ == "__main__":
    main()
