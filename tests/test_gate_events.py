"""Every event of the built app passes the input gate (ui/gate_events.py), and a session's model jobs
are limited (session_jobs) when they join the queue and when they start."""
from __future__ import annotations

from types import SimpleNamespace

import gradio as gr
import pytest

from explorer.app.ui import GPU_EVENTS, build_app, gate_events

from .test_hosted import hosted_context


def by_name(app) -> dict:
    return {block_fn.api_name: block_fn for block_fn in app.fns.values()}


@pytest.fixture
def app(shapes_model, tmp_path):
    return build_app(
        hosted_context(tmp_path, shapes_model, EXPLORER_MAX_UPLOAD_FILES="2", EXPLORER_SESSION_JOBS="2"))


def test_every_event_function_of_the_app_is_gated(app, shapes_model, tmp_path):
    for built in (app, build_app(hosted_context(tmp_path / "local", shapes_model, EXPLORER_HOSTED="0"))):
        functions = [block_fn for block_fn in built.fns.values() if block_fn.fn is not None]
        assert len(functions) > 40
        ungated = [block_fn.api_name for block_fn in functions if not getattr(block_fn.fn, "gated", False)]
        assert ungated == [], "events whose arguments skip the gate"


def test_a_text_over_the_limit_is_refused_with_its_label_value_limit_and_setting(app, tmp_path):
    classify = by_name(app)["classify"].fn
    with pytest.raises(gr.Error) as refused:
        classify([], "x" * 70_000, "Single: a photo of a {}.", "", 3, None, gr.Request(session_hash="s"))
    text = str(refused.value)
    assert "70,000 bytes" in text and "65,536" in text and "EXPLORER_MAX_TEXT_KB" in text, text
    assert "Labels" in text or "label" in text.lower()


def test_files_over_the_count_limit_are_refused_before_the_handler(app, tmp_path, monkeypatch):
    paths = []
    for n in range(3):
        (tmp_path / f"{n}.png").write_bytes(b"not read")
        paths.append(str(tmp_path / f"{n}.png"))
    events = by_name(app)
    with pytest.raises(gr.Error) as refused:
        events["classify"].fn(paths, "a, b", "Single: a photo of a {}.", "", 3, None,
                              gr.Request(session_hash="s"))
    assert "3 files" in str(refused.value) and "EXPLORER_MAX_UPLOAD_FILES" in str(refused.value)


def test_a_table_with_too_many_rows_is_refused():
    import pandas as pd

    limits = gate_events.gate.TextLimits(max_items=5)
    settings = SimpleNamespace(max_upload_files=10, max_upload_total_bytes=1 << 20)
    with pytest.raises(gate_events.gate.Refused, match="max-texts"):
        gate_events.check_value("Templates", pd.DataFrame({"t": ["a {}"] * 6}), settings, limits, False)
    gate_events.check_value("Templates", pd.DataFrame({"t": ["a {}"] * 5}), settings, limits, False)


def waiting(session: str, fn, count: int):
    """A stand-in for gradio's queue holding `count` jobs of `session` (fn: the event's function)."""
    events = [
        SimpleNamespace(session_hash=session, fn=SimpleNamespace(fn=fn), alive=True) for _ in range(count)
    ]
    return SimpleNamespace(event_queue_per_concurrency_id={"model": SimpleNamespace(queue=events)},
                           active_jobs=[None])


def test_a_session_at_its_job_limit_is_refused_when_it_joins_the_queue(app, monkeypatch):
    search = by_name(app)["search"]
    assert search.validator is not None and search.concurrency_id == gate_events.MODEL_POOL
    monkeypatch.setattr(gate_events, "ADMIT_WINDOW", 0.0)
    app._queue = waiting("busy", search.fn, 2)  # the fixture's session_jobs: 2
    values = [{}, "a red circle", None, 0.5, 24, 0.0]
    refused = search.validator(*values, gr.Request(session_hash="busy"))
    assert not all(v["is_valid"] for v in refused)
    assert "EXPLORER_SESSION_JOBS" in next(v["message"] for v in refused if not v["is_valid"])
    admitted = search.validator(*values, gr.Request(session_hash="another visitor"))
    assert all(v["is_valid"] for v in admitted)


def test_a_live_edit_counts_against_the_same_job_limit(app, monkeypatch):
    """Issue 29: a Prompt lab edit that re-scores live (a private event) is refused for a session already
    holding its two jobs (here two classify calls waiting), like any other model call; another
    visitor's edit is not."""
    monkeypatch.setattr(gate_events, "ADMIT_WINDOW", 0.0)
    weighting = next(i for i, b in app.blocks.items() if getattr(b, "elem_id", None) == "pl-weighting")
    [edit] = [f for f in app.fns.values() if (weighting, "input") in f.targets]
    assert edit.api_visibility == "private" and edit is not by_name(app)["evaluate_prompts"]
    app._queue = waiting("busy", by_name(app)["classify"].fn, 2)
    values = [None] * len(edit.inputs)
    refused = edit.validator(*values, gr.Request(session_hash="busy"))
    assert not all(v["is_valid"] for v in refused)
    assert all(v["is_valid"] for v in edit.validator(*values, gr.Request(session_hash="another visitor")))


def test_a_burst_is_refused_before_gradio_shows_it_queued(app):
    search = by_name(app)["search"]
    app._queue = waiting("x", search.fn, 0)
    values = [{}, "a red circle", None, 0.5, 24, 0.0]
    verdicts = [all(v["is_valid"] for v in search.validator(*values, gr.Request(session_hash="burst")))
                for _ in range(8)]
    assert verdicts == [True, True] + [False] * 6


def test_a_scripts_sequential_calls_are_never_refused(app):
    """Admitted, started, finished, the next one admitted at once: one job at a time is within any
    limit, however fast the calls follow each other (an admission stops counting once its job starts)."""
    search = by_name(app)["search"]
    app._queue = waiting("x", search.fn, 0)
    jobs = gate_events.SessionJobs(2)
    jobs.heavy = {search.fn}
    for _ in range(10):
        assert jobs.admit(app._queue, "script") is None
        with jobs.running("script"):
            pass
    assert jobs.admit(app._queue, "script") is None and jobs.admit(app._queue, "script") is None
    assert jobs.admit(app._queue, "script") is not None  # two admitted, not started: a third waits its turn


def test_a_session_with_its_limit_of_jobs_running_is_refused_when_another_starts():
    jobs = gate_events.SessionJobs(2)
    with jobs.running("s"), jobs.running("s"):
        with pytest.raises(gate_events.gate.Refused, match="session-jobs"):
            with jobs.running("s"):
                pass
        with jobs.running("other"):
            pass
    with jobs.running("s"):  # finished jobs no longer count
        pass


def test_every_model_event_counts_as_a_job(app):
    events = by_name(app)
    assert all(events[name].validator is not None for name in GPU_EVENTS)
    assert events["cancel_build"].validator is None and events["duplicates"].validator is None
