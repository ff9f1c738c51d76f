"""Load: 20 visitors at once, each in its own session, indexing, classifying and searching through the
HTTP API for half a minute (tests/load/locustfile.py; EXPLORER_LOAD_SECONDS runs it longer), against one
hosted app: no call may fail."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

LOCUSTFILE = Path(__file__).resolve().parents[1] / "load" / "locustfile.py"
# 30 s (it was 60) keeps the suite inside CI's 30 minutes; every visitor still indexes, classifies, searches
USERS, SECONDS = 20, int(os.environ.get("EXPLORER_LOAD_SECONDS", "30"))


def test_twenty_visitors_for_half_a_minute_without_an_error(hosted_app, tmp_path):
    run = subprocess.run([
        sys.executable, "-m", "locust", "-f",
        str(LOCUSTFILE), "--headless", "-u",
        str(USERS), "-r",
        str(USERS), "-t", f"{SECONDS}s", "--host",
        hosted_app.url.rstrip("/"), "--json", "--only-summary", "--stop-timeout", "30"
    ], capture_output=True, text=True, timeout=SECONDS + 240, cwd=tmp_path)
    stats = json.loads(run.stdout)
    by_name = {entry["name"]: entry for entry in stats}
    failures = {name: e["num_failures"] for name, e in by_name.items() if e["num_failures"]}
    print({name: (e["num_requests"], round(e["total_response_time"] / max(e["num_requests"], 1)))
           for name, e in by_name.items()})
    assert failures == {}, run.stderr[-3000:]
    assert by_name["build_index (result)"]["num_requests"] == USERS  # every visitor indexed its photos
    assert by_name["classify (result)"]["num_requests"] >= USERS and by_name["search (result)"][
        "num_requests"] >= USERS
