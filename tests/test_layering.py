"""The house rules of DESIGN.md, read from the source (AST), so a change that breaks them goes red:
only explorer/ui/ and app.py import gradio; ui/ holds no maths (no numpy), never calls the model's
encoders and never reaches into the core's private helpers; tabs share helpers through ui/common.py,
not through each other; functions stay short."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "explorer"
UI = PACKAGE / "ui"
SOURCES = sorted(PACKAGE.rglob("*.py"))
MAX_FUNCTION_LINES = 60


def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def imported_modules(path: Path) -> set[str]:
    """Top-level names of absolute imports (relative ones are ours and come back as '.')."""
    found = set()
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            found.add("." if node.level else node.module.split(".")[0])
    return found


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_only_the_ui_and_app_import_gradio():
    offenders = [rel(p) for p in SOURCES if "gradio" in imported_modules(p) and UI not in p.parents]
    assert offenders == []
    assert any("gradio" in imported_modules(p) for p in UI.glob("*.py"))  # the check looks at real imports


@pytest.mark.parametrize("path", sorted(UI.glob("*.py")), ids=lambda p: p.name)
def test_ui_never_encodes_nor_does_maths_nor_uses_private_helpers(path):
    module = tree(path)
    calls = [node.func.attr for node in ast.walk(module)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)]
    assert not [c for c in calls if c.startswith("encode_")], "ui/ calls the model's encoders"
    assert "numpy" not in imported_modules(path), "ui/ holds no maths"
    private = [f"{node.module}.{alias.name}" for node in ast.walk(module) if isinstance(node, ast.ImportFrom)
               for alias in node.names if alias.name.startswith("_")]
    assert private == []


def test_tabs_import_shared_helpers_from_common_not_from_each_other():
    for path in UI.glob("*.py"):
        if path.name == "__init__.py":
            continue
        own = path.stem.rsplit("_", 1)[0]  # prompt_lab_tab -> prompt_lab
        siblings = {alias.name for node in ast.walk(tree(path)) if isinstance(node, ast.ImportFrom)
                    and node.level == 1 and node.module is None for alias in node.names}
        siblings |= {node.module.split(".")[0] for node in ast.walk(tree(path)) if isinstance(node, ast.ImportFrom)
                     and node.level == 1 and node.module}
        allowed = {"common", f"{own}_html"}
        assert siblings <= allowed, f"{rel(path)} imports {sorted(siblings - allowed)}"


def test_no_function_is_long_unless_it_only_lays_out_a_page():
    long = []
    for path in SOURCES:
        for node in ast.walk(tree(path)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                layout = UI in path.parents and node.name == "build"
                if lines > MAX_FUNCTION_LINES and not layout:
                    long.append(f"{rel(path)}:{node.name} ({lines} lines)")
    assert long == []


def test_the_docs_module_map_lists_every_module():
    readme = "".join((ROOT / "docs" / name).read_text(encoding="utf-8")  # the module map; every command
                     for name in ("architecture.md", "command-line.md"))
    missing = [rel(p) for p in SOURCES if p.name != "__init__.py" and p.parent.name != "commands"
               and f"{p.stem}.py" not in readme]
    assert missing == []
    commands = [p.stem for p in (PACKAGE / "commands").glob("*.py") if p.stem not in ("__init__", "common")]
    assert [c for c in commands if f"clip-explorer {c}" not in readme] == []
