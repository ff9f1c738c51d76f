"""The browser latency bench (bench/bench_interaction.py, issue 29) in its quick mode, so it cannot rot:
it starts the app, performs each quick interaction in Chromium and prints its figures as JSON last.
The figures are not judged here (speed is measured, not asserted), only that each interaction ran and
its time is split into parts that are numbers."""
from __future__ import annotations

import math

import pytest

from tests.test_benches import run_bench


@pytest.mark.timeout(300)
def test_the_quick_interaction_bench_runs_and_splits_each_time(browser, tmp_path):  # chromium is here
    doc = run_bench("bench_interaction.py", ["--quick"], tmp_path)
    runs = doc["interactions"]
    floors = {"noop", "noop_typed", "noop_at_end", "noop_typed_at_end"}  # first, and again at the end
    assert set(runs) == floors | {"classify_label", "gap_shift"}
    assert doc["repeats"] == 2 and math.isfinite(doc["noop_median_ms"]) and doc["noop_median_ms"] > 0
    for name, figures in runs.items():
        assert figures["runs"] >= 2, name
        assert 0 < figures["median_ms"] <= figures["p95_ms"], (name, figures)
        assert all(math.isfinite(figures[p]) and figures[p] >= 0 for p in ("server_ms", "transfer_ms",
                                                                          "drawing_ms")), (name, figures)
    assert runs["classify_label"]["server_ms"] > 0  # the handler's own time was seen
