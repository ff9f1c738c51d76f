"""bench/bench_search.py --quick runs end to end and ends with its JSON document."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NUMBERS = ("single_query_ms", "batch_query_ms", "recall_at_10", "build_s", "bytes_per_vector",
           "exact_single_query_ms", "exact_batch_query_ms", "memory_budget_mb")


def run_bench(*flags: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_search.py"), "--quick", *flags],
                          capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_quick_bench_prints_its_figures_as_json():
    result = run_bench("--json")
    for key in NUMBERS:
        assert isinstance(result[key], (int, float)) and not isinstance(result[key], bool), key
        assert result[key] >= 0, key
    assert result["index_type"].startswith("IVF") and "nprobe" in result["params"]
    assert result["recall_at_10"] >= 0.9


def test_quick_bench_takes_the_compressed_branch_under_a_small_memory_budget():
    result = run_bench("--json", "--memory-mb", "2")
    assert result["index_type"].endswith(",SQ8") and result["memory_budget_mb"] == 2
    assert result["bytes_per_vector"] < result["exact_bytes_per_vector"] / 2
    assert result["recall_at_10"] >= 0.9
