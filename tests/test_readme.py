"""The README is the front door: short, every link in it (and in docs/) leads somewhere that exists, its
two commands are the ones CI runs, and it shows a screenshot of every tab."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
# the pictures tests/browser/test_readme_screenshots.py takes (map.png: tests/browser/test_map_page.py,
# probes.png: tests/browser/test_probes_page.py, compare.png: tests/browser/test_compare_page.py)
TABS = ("classify", "prompt-lab", "search", "map", "heatmaps", "gap", "teach", "probes", "compare")
MAX_README_LINES = 200
# [text](target), ![alt](target), and HTML src= / href= attributes
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|(?:src|href)=\"([^\"]+)\"")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)


def prose(path: Path) -> str:
    """The page without its code blocks (their brackets are code, not links)."""
    return FENCE.sub("", path.read_text(encoding="utf-8"))


def links(path: Path) -> list[str]:
    return [a or b for a, b in LINK.findall(prose(path))]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = prose(path)
    found, seen = set(), {}
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", text, re.M):
        base = slug(heading)
        found.add(base if base not in seen else f"{base}-{seen[base]}")
        seen[base] = seen.get(base, 0) + 1
    return found | set(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", text))


def broken(page: Path) -> list[str]:
    wrong = []
    for target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):      # https:, mailto: ... (not checked offline)
            continue
        file, _, anchor = target.partition("#")
        where = (page.parent / file).resolve() if file else page
        if not where.exists() or ROOT not in (where, *where.parents):
            wrong.append(f"{target}: no such file in the repository")
        elif anchor and where.suffix == ".md" and anchor not in anchors(where):
            wrong.append(f"{target}: no heading or anchor #{anchor} in {where.relative_to(ROOT)}")
    return wrong


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_link_leads_to_a_file_and_anchor_that_exist(page):
    assert links(page) or page != README
    assert broken(page) == []


def test_the_link_check_sees_a_broken_link_and_a_missing_anchor(tmp_path, monkeypatch):
    page = ROOT / "docs" / "no-such-page.md"
    text = ("[ok](../README.md) [gone](missing.md) ![pic](../assets/none.png) [far](../../../etc/passwd) "
            "[a](architecture.md#few-shot-methods) [b](architecture.md#no-such-part) <img src=\"x.png\">\n"
            "```\n[in code](not/checked.md)\n```\n")
    real = Path.read_text
    monkeypatch.setattr(Path, "read_text",
                        lambda self, *a, **k: text if self == page else real(self, *a, **k))
    assert [w.split(":")[0] for w in broken(page)] == [
        "missing.md", "../assets/none.png", "../../../etc/passwd", "architecture.md#no-such-part", "x.png"]


def test_github_anchors_of_headings():
    assert slug("Hosted mode: the threat model, the gate and its limits") == \
        "hosted-mode-the-threat-model-the-gate-and-its-limits"
    assert slug("GPU and Ray: indexing at scale") == "gpu-and-ray-indexing-at-scale"
    assert "indexing-on-a-ray-cluster" in anchors(ROOT / "docs" / "scale.md")


def test_the_readme_is_short():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= MAX_README_LINES


def test_the_two_commands_are_the_scripts_ci_runs():
    text = README.read_text(encoding="utf-8")
    block = re.search(r"## Two commands\n.*?```bash\n(.*?)```", text, re.S)
    assert block, "the README has a '## Two commands' section with a bash block"
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert commands == ["bash scripts/run-app.sh", "bash scripts/run-tests.sh"]
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
          if line.strip() and not line.startswith("#")]
    assert ci[-1] == "bash scripts/run-tests.sh"           # CI runs exactly the README's test command
    app = (ROOT / "scripts" / "run-app.sh").read_text(encoding="utf-8")
    assert "scripts/setup.sh" in app and "app.py" in app     # and the app command sets up and starts app.py


def test_the_readme_shows_every_tab():
    shown = set(links(README))
    for tab in TABS:
        assert f"assets/screenshots/{tab}.png" in shown, tab
        assert (ROOT / "assets" / "screenshots" / f"{tab}.png").is_file(), tab
