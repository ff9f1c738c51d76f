"""Load with a stranger among the visitors (issue 22): locust, headless, twice against one hosted server,
first with ordinary visitors only (tests/load/locustfile.py), then with the same visitors plus one
attacker (tests/load/hostile_locustfile.py). The visitors' p95 latency with the attacker stays within
3x of theirs without, and no visitor's call fails in either run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

LOAD = Path(__file__).resolve().parents[1] / "load"
VISITORS = 6
SECONDS = int(os.environ.get("EXPLORER_HOSTILE_LOAD_SECONDS", "35"))
MEASURED = ("classify (result)", "search (result)")  # the visitors' answers (the stream that carries them)


def percentile(histogram: dict, q: float) -> float:
    """The q-quantile of locust's response-time histogram ({ms bucket: count}), in ms."""
    points = sorted((float(ms), n) for ms, n in histogram.items())
    total = sum(n for _, n in points)
    seen = 0
    for ms, n in points:
        seen += n
        if seen >= q * total:
            return ms
    return points[-1][0] if points else float("nan")


def run_locust(locustfile: Path, users: int, host: str, cwd: Path) -> dict:
    run = subprocess.run([
        sys.executable, "-m", "locust", "-f",
        str(locustfile), "--headless", "-u",
        str(users), "-r",
        str(users), "-t", f"{SECONDS}s", "--host",
        host.rstrip("/"), "--json", "--only-summary", "--stop-timeout", "20"
    ], capture_output=True, text=True, timeout=SECONDS + 180, cwd=cwd)
    try:
        stats = json.loads(run.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"locust gave no stats ({run.returncode}):\n{run.stderr[-3000:]}") from None
    by_name = {entry["name"]: entry for entry in stats}
    histogram: dict = {}
    for name in MEASURED:
        for ms, n in by_name.get(name, {}).get("response_times", {}).items():
            histogram[ms] = histogram.get(ms, 0) + n
    visitors = {name: e for name, e in by_name.items() if not name.startswith("attack:")}
    return {"p95": percentile(histogram, 0.95), "p50": percentile(histogram, 0.5),
            "calls": sum(histogram.values()),
            "failures": {name: e["num_failures"] for name, e in visitors.items() if e["num_failures"]},
            "attacks": {name: e["num_requests"] for name, e in by_name.items() if name.startswith("attack:")},
            "stderr": run.stderr[-2000:]}


def test_visitors_p95_with_an_attacker_within_3x_of_without(server, tmp_path):
    quiet = run_locust(LOAD / "locustfile.py", VISITORS, server.url, tmp_path)
    attacked = run_locust(LOAD / "hostile_locustfile.py", VISITORS + 1, server.url, tmp_path)
    print(
        f"\n{VISITORS} visitors, {SECONDS} s per run: p95 {quiet['p95']:.0f} ms (p50 {quiet['p50']:.0f} ms, "
        f"{quiet['calls']} calls) without the attacker; "
        f"p95 {attacked['p95']:.0f} ms (p50 {attacked['p50']:.0f} ms, "
        f"{attacked['calls']} calls) with it: {attacked['p95'] / max(quiet['p95'], 1):.2f}x; "
        f"the attacker's requests: {attacked['attacks']}")
    assert quiet["failures"] == {}, quiet["stderr"]
    assert attacked["failures"] == {}, attacked["stderr"]
    assert quiet["calls"] >= VISITORS and attacked["calls"] >= VISITORS
    assert sum(attacked["attacks"].values()) > 5, "the attacker hardly attacked"
    assert attacked["p95"] <= 3 * quiet["p95"], f"p95 {attacked['p95']:.0f} ms vs {quiet['p95']:.0f} ms"
