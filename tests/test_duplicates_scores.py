"""`duplicates` reports the cosine of every linked pair and each group's min and max cosine."""
from __future__ import annotations

import json

import numpy as np
import pytest

from explorer.index.image_index import open_index

A = np.arccos(0.9)
VECTORS = np.array([
    [1, 0, 0, 0],                          # 0 -- 1 -- 2: a chain, cos 0.9 per step, 0.62 end to end
    [np.cos(A), np.sin(A), 0, 0],
    [np.cos(2 * A), np.sin(2 * A), 0, 0],
    [0, 0, 1, 0],                          # 3: alone (0.6 and 0.28 to 4 and 5)
    [0, 0, 0.6, 0.8],                      # 4 -- 5: cos 0.936
    [0, 0, 0.28, 0.96],
], dtype=np.float32)
NAMES = [f"{i}.png" for i in range(len(VECTORS))]


@pytest.fixture()
def index(tmp_path):
    from explorer.index.store import Store

    store = Store(tmp_path / "idx", create=True)
    store.set_meta("identity", {"name": "synthetic", "pretrained": None, "embed_dim": 4, "image_size": 8,
                                "preprocess": []})
    store.set_meta("root", str(tmp_path / "photos"))
    store.write_batch([(name, 1, 1, v) for name, v in zip(NAMES, VECTORS)])
    store.close()
    opened = open_index(tmp_path / "idx")
    yield opened
    opened.close()


def cosine(a: str, b: str) -> float:
    va, vb = VECTORS[NAMES.index(a)], VECTORS[NAMES.index(b)]
    return float(va @ vb / np.linalg.norm(va) / np.linalg.norm(vb))


def test_groups_carry_their_pairs_cosines_and_min_max(index):
    groups = index.duplicate_groups(threshold=0.8)
    assert [g.paths for g in groups] == [["0.png", "1.png", "2.png"], ["4.png", "5.png"]]
    chain, pair = groups
    assert sorted((p.a, p.b) for p in chain.links) == [("0.png", "1.png"), ("1.png", "2.png")]
    assert [(p.a, p.b) for p in pair.links] == [("4.png", "5.png")]
    for p in chain.links + pair.links:
        assert p.score == pytest.approx(cosine(p.a, p.b), abs=1e-6)
    assert chain.links[0].score == pytest.approx(0.9, abs=1e-5)
    # The chain's ends are linked only through 1: its min over all pairs is below the threshold.
    assert chain.over == "all pairs"
    assert chain.min_score == pytest.approx(cosine("0.png", "2.png"), abs=1e-6) == pytest.approx(
        0.62, abs=1e-5)
    assert chain.max_score == pytest.approx(max(cosine("0.png", "1.png"), cosine("1.png", "2.png")), abs=1e-6)
    assert pair.min_score == pair.max_score == pytest.approx(cosine("4.png", "5.png"), abs=1e-6)


def test_duplicates_cli_prints_scores_in_text_and_json(index, capsys):
    from explorer.cli import main

    folder = str(index.folder)
    assert main(["duplicates", "--index", folder, "--threshold", "0.8", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["groups"] == [["0.png", "1.png", "2.png"], ["4.png", "5.png"]]
    chain = report["scored_groups"][0]
    assert chain["min_score"] == pytest.approx(0.62, abs=1e-5)
    assert chain["max_score"] == pytest.approx(0.9, abs=1e-5)
    assert chain["scores_over"] == "all pairs"
    assert {(p["a"], p["b"]): p["score"]
            for p in chain["pairs"]} == pytest.approx(
                {("0.png", "1.png"): cosine("0.png", "1.png"), ("1.png", "2.png"): cosine("1.png", "2.png")},
                abs=1e-6)
    assert main(["duplicates", "--index", folder, "--threshold", "0.8"]) == 0
    text = capsys.readouterr().out
    assert "group 1 (3 images): cosine min 0.6200, max 0.9000 over all pairs" in text
    assert "0.9000  0.png  ~  1.png" in text
    assert "0.9360  4.png  ~  5.png" in text
