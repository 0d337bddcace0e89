"""The house's walls, read with `ast` (every import, lazy ones inside functions too): no import circles among the
repository's packages, the torch-free runtime never importing the packages above it (their commands reach the CLI
through entry points), and nothing importing a folder by its repository name instead of its installed one."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Repository folder -> the name an install gives it (pyproject.toml's package-dir).
PACKAGES = {"clipping_edge": "clipping_edge", "training": "clipping_edge.training", "export": "clipping_edge.export",
            "benchmarks": "clipping_edge.benchmarks"}
ABOVE_THE_RUNTIME = tuple(name for name in PACKAGES.values() if name != "clipping_edge")


def _modules() -> dict[str, Path]:
    found = {}
    for folder, package in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            if folder == "clipping_edge" and path.relative_to(ROOT / folder).parts[0] in PACKAGES:
                continue
            name = ".".join((package, *path.relative_to(ROOT / folder).with_suffix("").parts))
            found[name.removesuffix(".__init__")] = path
    return found


def _import_statements(path: Path) -> list[ast.Import | ast.ImportFrom]:
    return [node for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, (ast.Import, ast.ImportFrom))]


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The repository modules `name` imports (a `from pkg import mod` counts as importing pkg.mod)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in _import_statements(path):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    return {t for t in targets if t in modules and t != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_circles():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _is_above(name: str) -> bool:
    return any(name == package or name.startswith(package + ".") for package in ABOVE_THE_RUNTIME)


def test_the_runtime_never_reaches_up():
    reaching = {name: sorted(t for t in targets if _is_above(t)) for name, targets in _graph().items() if not _is_above(name)}
    assert {name: targets for name, targets in reaching.items() if targets} == {}


def test_training_imports_neither_export_nor_benchmarks_and_export_not_benchmarks():
    allowed = {"clipping_edge.training": ("clipping_edge.training",),
               "clipping_edge.export": ("clipping_edge.training", "clipping_edge.export")}
    wrong = {name: sorted(t for t in targets if _is_above(t) and not t.startswith(allowed[package]))
             for name, targets in _graph().items() for package in allowed if name.startswith(package + ".")}
    assert {name: targets for name, targets in wrong.items() if targets} == {}


def test_nothing_imports_a_folder_by_its_repository_name():
    """`import training` works from the repository's root and would load a second copy of every module beside
    `clipping_edge.training`'s (two TrainConfig classes that are not the same class)."""
    old_names = {folder for folder in PACKAGES if folder != "clipping_edge"}
    found = []
    for path in [*ROOT.joinpath("tests").glob("*.py"), *_modules().values()]:
        for node in _import_statements(path):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if node.level == 0 else []
            found += [f"{path.relative_to(ROOT)}:{node.lineno} {name}" for name in names if name.split(".")[0] in old_names]
    assert found == []
