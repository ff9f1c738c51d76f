"""Every benchmark's quick mode runs end to end and ends with one JSON document holding its figures.

Sizes are tiny and the model is the project's shapes model where a bench takes one, so each run
takes seconds; the figures themselves are not checked here (they mean little at these sizes), only
that they are there and are numbers. bench_search.py has its own test (test_bench_search.py).
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHAPES = "local-dir:tests/assets/shapes_clip"

BENCHES = {
    "bench_text.py": (["--quick", "--model", SHAPES],
                      ["speedup", "cosine_error", "stock_ms", "cut_ms", "cached_ms"]),
    "bench_index.py": (["--images", "8", "--batch-size", "4", "--rescan-files", "100", "--model", SHAPES,
                        "--photos", "{tmp}/photos"],
                       ["pipeline_ratio", "reindex_fraction", "model_only_img_s", "indexing_img_s"]),
    "bench_prompts.py": (["--quick", "--model", SHAPES],
                         ["cold_ms", "warm_ms", "cold_text_ms", "warm_text_ms", "warm_texts_encoded"]),
    "bench_gap.py": (["--quick"], ["total_s"]),
    "bench_fewshot.py": (["--quick"], ["gda_fit_s", "gda_choose_alpha_s", "gda_score_s",
                                       "score_ratio_gda_to_zero_shot"]),
    "bench_decode.py": (["--quick", "--model", SHAPES], ["cosine_to_full_min"]),
    "bench_decode_pool.py": (["--quick"], ["pool_ratio", "pool_per_s", "in_process_per_s"]),
    "bench_ray.py": (["--images", "16", "--batch-size", "8", "--model", SHAPES, "--photos", "{tmp}/photos"],
                     ["local_img_s", "ray_img_s", "ray_over_local", "ray_per_actor_img_s", "ray_startup_s"]),
    "bench_cli_start.py": (["--quick"], ["help_s", "indexes_s", "python_s"]),
    "bench_map.py": (["--quick"], ["payload_per_point_ratio", "patch_over_figure", "recolour_ms",
                                   "recolour_over_redraw"]),
    "bench_switches.py": (["--quick", "--model", SHAPES], ["plain_ms_per_image", "zero_over_plain",
                                                          "zero_cost_ratio", "tda_cost_ratio"]),
    "bench_compare.py": (["--quick"], ["ratio", "ratio_above_floor"]),
}


def run_bench(script: str, flags: list[str], tmp_path: Path) -> dict:
    """Run a bench with --json; returns the JSON document it printed last."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    command = [
        sys.executable,
        str(ROOT / "bench" / script), *(f.format(tmp=tmp_path) for f in flags), "--json"
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_text(doc: dict) -> None:
    assert doc["uses_text_cut"] and doc["texts"] == 80
    assert 0 <= doc["cosine_error"] < 1e-5  # the cut (and packed) path is exact against encode_text


def check_gap(doc: dict) -> None:
    assert [run["images"] for run in doc["runs"]] == [2000]
    assert all(is_number(doc["runs"][0][key]) for key in ("measures_s", "pca_s", "shift_s", "gap_length"))


def check_cli_start(doc: dict) -> None:
    assert doc["help_imports_torch"] is False and doc["indexes_imports_open_clip"] is False


def check_map(doc: dict) -> None:
    assert [run["n"] for run in doc["page"]] == [1000, 10000] and doc["umap_over_pca"] is None  # PCA only
    for run in doc["page"]:  # a recolour sends the colours, never the whole figure again
        assert 0 < run["patch_bytes"] < run["figure_bytes"] and is_number(run["recolour_cached_ms"])


def check_compare(doc: dict) -> None:
    """Three models compared in one child, the first alone in another, each with its own peak and floor."""
    assert len(doc["compare"]["runs"]) == 3 and len(doc["alone"]) == 1 and doc["images"] == 8
    for run in (doc["compare"], *doc["alone"]):
        assert 0 < run["floor_mb"] <= run["peak_mb"]
    assert all(run["top1"] == 1.0 for run in doc["compare"]["runs"])  # copies of the shapes model


EXTRA_CHECKS = {"bench_text.py": check_text, "bench_gap.py": check_gap, "bench_cli_start.py": check_cli_start,
                "bench_map.py": check_map, "bench_compare.py": check_compare}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("script", sorted(BENCHES))
def test_quick_bench_prints_its_figures_as_json_last(script, tmp_path):
    flags, keys = BENCHES[script]
    doc = run_bench(script, flags, tmp_path)
    for key in keys:
        assert is_number(doc.get(key)), f"{script}: {key} = {doc.get(key)!r}"
    EXTRA_CHECKS.get(script, lambda _doc: None)(doc)


@pytest.mark.timeout(300)
def test_fewshot_table_quick_prints_the_markdown_table_and_its_numbers(tmp_path):
    """bench_fewshot.py --table: every method at every shot count, with real and made-up names, from
    the bench itself (docs/architecture.md quotes the full run's markdown)."""
    doc = run_bench("bench_fewshot.py", ["--table", "--quick"], tmp_path)
    assert doc["shots"] == [1, 2] and doc["seeds"] == 2 and doc["classes"] == 4
    assert [(r["names"], r["shots"]) for r in doc["rows"]] == [("real", 1), ("real", 2), ("made-up", 1),
                                                               ("made-up", 2)]
    for row in doc["rows"]:
        assert set(row["methods"]) == {"zero-shot", "prototype", "tip-adapter", "gda"}
        for cell in row["methods"].values():
            assert is_number(cell["mean"]) and is_number(cell["std"]) and len(cell["per_seed"]) == 2
    assert doc["markdown"].startswith("| class names | shots | zero-shot | prototype | tip-adapter | gda |")
    assert all(r["methods"]["prototype"]["not_chosen_seeds"] == 2 for r in doc["rows"] if r["shots"] == 1)
