"""The package's imports run one way: no import cycle among its modules (every import counts,
also the ones inside functions), and no module imports another module's private names."""

from __future__ import annotations

import ast
from pathlib import Path

import dsnet_automl

ROOT = Path(dsnet_automl.__file__).parent


def _modules() -> dict[str, Path]:
    mods = {}
    for p in ROOT.rglob("*.py"):
        parts = p.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = p
    return mods


def _absolute(module: str, is_pkg: bool, level: int, target: str | None) -> str:
    if level == 0:
        return target or ""
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _graph() -> tuple[dict[str, set[str]], list[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    private: list[str] = []
    for m, p in mods.items():
        is_pkg = p.name == "__init__.py"
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom):
                t = _absolute(m, is_pkg, node.level, node.module)
                if not t.startswith("dsnet_automl"):
                    continue
                subs = [f"{t}.{a.name}" for a in node.names if f"{t}.{a.name}" in mods]
                # `from . import sub` imports the submodule, not the package's own names
                targets = subs if len(subs) == len(node.names) else [t, *subs]
                graph[m] |= {x for x in targets if x in mods and x != m}
                private += [
                    f"{m} imports {a.name} from {t}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__") and t != m
                    and f"{t}.{a.name}" not in mods  # a private *module* is fine: it is named
                ]  # fmt: skip
            elif isinstance(node, ast.Import):
                graph[m] |= {a.name for a in node.names if a.name in mods and a.name != m}
    return graph, private


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle():
    graph, _ = _graph()
    assert len(graph) > 50  # really walked the package
    assert _cycles(graph) == []


def test_detector_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_private_names_imported_across_modules():
    _, private = _graph()
    assert private == []


def test_lower_layers_import_nothing_above_them():
    graph, _ = _graph()

    def reach(m: str) -> set[str]:
        seen, todo = set(), [m]
        while todo:
            for w in graph[todo.pop()]:
                if w not in seen:
                    seen.add(w)
                    todo.append(w)
        return seen

    def pkgs(*names: str) -> tuple[str, ...]:
        return tuple(f"dsnet_automl.{n}" for n in names)

    # slicing -> supernets -> timm_slicing -> factory -> latency -> dynamic -> training ->
    # search -> cli; accuracy (measured top-1) beside them, under training and search
    rules = {
        pkgs("config", "slicing", "supernets"): pkgs("timm_slicing", "factory", "training"),
        pkgs("latency"): pkgs("dynamic", "accuracy", "training", "search", "cli"),
        pkgs("dynamic"): pkgs("accuracy", "training", "search", "cli"),
        pkgs("accuracy"): pkgs("dynamic", "latency", "training", "search", "cli"),
        pkgs("training"): pkgs("search", "cli"),
        pkgs("search"): pkgs("cli"),
    }
    for lows, above in rules.items():
        for low in lows:
            bad = sorted(x for x in reach(low) if x.startswith(above))
            assert bad == [], f"{low} reaches {bad}"


def test_functions_stay_small():
    """Issues 17 and 34: no function in the package is over 80 lines (the trainers share
    training/loop.py; CLI commands declare long option types once at module level)."""
    long = []
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > 80:
                    long.append(f"{path.relative_to(ROOT)}:{node.name} ({n} lines)")
    assert long == []


def test_rich_only_in_the_cli():
    """Issue 34: library code reports progress through dsnet_automl.progress (a hook the
    caller sets); only cli/ draws with rich."""
    users = []
    for path in sorted(ROOT.rglob("*.py")):
        if path.relative_to(ROOT).parts[0] == "cli":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if any(n == "rich" or n.startswith("rich.") for n in names):
                users.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert users == []


def test_moved_modules_keep_their_documented_names():
    """Issue 34: modules the README named before the renovation still import (re-exports)."""
    import importlib

    for old, new, name in (
        ("dsnet_automl.forced_mix", "dsnet_automl.dynamic.forced_mix", "force_route_mix"),
        ("dsnet_automl.search.guided", "dsnet_automl.accuracy.guided", "guided_static_search"),
    ):
        assert getattr(importlib.import_module(old), name) is getattr(
            importlib.import_module(new), name
        )
