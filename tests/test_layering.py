"""The house rules of DESIGN.md, read from the source (AST), so a change that breaks them goes red:
explorer/ is five layer packages (embed < inputs < index < science < app, with commands/ beside app/)
and imports only go down; only explorer/app/ui/ and app.py import gradio; ui/ holds no maths (no
numpy), never calls the model's encoders and never reaches into the core's private helpers; tabs share
helpers through ui/common.py, not through each other; functions stay short."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "explorer"
UI = PACKAGE / "app" / "ui"
SOURCES = sorted(PACKAGE.rglob("*.py"))
MAX_FUNCTION_LINES = 60
# Each layer may import the layers below it (a lower rank), never one above; app and commands are the
# two faces, side by side, and do not import each other. cli.py and __main__.py sit on top.
LAYERS = {"embed": 0, "inputs": 1, "index": 2, "science": 3, "app": 4, "commands": 4}
TOP = {"cli", "__main__", "__init__"}


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


def layer_of(module: str) -> str | None:
    """'explorer.index.store' -> 'index'; None for explorer's top modules (cli, __main__)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def explorer_imports(path: Path) -> set[str]:
    """Every explorer module `path` imports, absolute or relative, as dotted names
    ('explorer.embed.model')."""
    own = ["explorer", *path.relative_to(PACKAGE).with_suffix("").parts]
    package = own[:-1] if path.name != "__init__.py" else own[:-1]
    found = set()
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "explorer"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            elif node.module.split(".")[0] == "explorer":
                name = node.module
            else:
                continue
            found |= {name} | {f"{name}.{alias.name}" for alias in node.names}
    return found


def upward_imports(path: Path) -> list[str]:
    """The imports of `path` that climb to a higher layer, or cross between the two faces."""
    mine = layer_of(".".join(["explorer", *path.relative_to(PACKAGE).parts[:1]]))
    if mine is None:
        return []
    wrong = []
    for name in sorted(explorer_imports(path)):
        theirs = layer_of(name)
        if theirs is not None and theirs != mine and LAYERS[theirs] >= LAYERS[mine]:
            wrong.append(name)
    return wrong


def test_explorer_is_layer_packages_with_only_the_cli_on_top():
    loose = [rel(p) for p in PACKAGE.glob("*.py") if p.stem not in TOP]
    assert loose == []
    assert sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()) == sorted(LAYERS)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: rel(p))
def test_imports_only_go_down_the_layers(path):
    assert upward_imports(path) == []


def test_the_layer_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The check itself: an embed module that imports science, absolutely or relatively, is caught."""
    fake = PACKAGE / "embed" / "model.py"
    for line in ("from explorer.science.zeroshot import predict", "from ..science import zeroshot",
                 "import explorer.app.plots"):
        monkeypatch.setattr(Path, "read_text", lambda self, *a, _line=line, **k: _line)
        assert upward_imports(fake), line
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: "from .cache import LRU\nimport numpy")
    assert upward_imports(fake) == []
    commands = PACKAGE / "commands" / "classify.py"
    monkeypatch.setattr(Path, "read_text",
                        lambda self, *a, **k: "from explorer.app.context import AppContext")
    assert upward_imports(commands) == ["explorer.app.context", "explorer.app.context.AppContext"]


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
        siblings |= {
            node.module.split(".")[0]
            for node in ast.walk(tree(path))
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module
        }
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
    missing += [f"{layer}/" for layer in LAYERS if f"{layer}/" not in readme]
    assert missing == []
    commands = [p.stem for p in (PACKAGE / "commands").glob("*.py") if p.stem not in ("__init__", "common")]
    assert [c for c in commands if f"clip-explorer {c}" not in readme] == []
