"""The shape of the package (issue 28): no module above 500 lines, no function above 60, no
import circle, and no import hidden inside a function except where it pays: a heavy or
optional third-party module (`DEFERRED`), or the package's own modules from the command-line
modules (`archsearch --help` must not wait for torch: tests/test_cli.py measures that it
imports none). Read from the source with `ast`: nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "archsearch"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
# imported where used: heavy at start-up (torch, torchvision, scikit-learn), optional
# (onnxruntime, boto3) or Unix-only (fcntl)
DEFERRED = {"torch", "torchvision", "sklearn", "onnxruntime", "boto3", "fcntl"}
COMMAND_LINE = ("cli/", "sweep/cli.py")  # may defer the package's own modules, for a fast --help


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PACKAGE.rglob("*.py")):
        parts = list(p.relative_to(PACKAGE.parent).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


MODULES = _modules()


def _target(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _functions(tree: ast.AST):
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _module_level_imports(tree: ast.Module):
    """Imports that run when the module loads: every import not inside a function."""
    stack = list(tree.body)
    while stack:
        n = stack.pop()
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if isinstance(n, (ast.Import, ast.ImportFrom)):
            yield n
        stack.extend(ast.iter_child_nodes(n))


def _graph() -> dict[str, set[str]]:
    """Module -> the package's modules its loading imports (a submodule loads its parents too)."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for mod, path in MODULES.items():
        for node in _module_level_imports(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [f"{_target(mod, path, node)}.{a.name}" if f"{_target(mod, path, node)}.{a.name}" in MODULES
                      else _target(mod, path, node) for a in node.names])
            for t in (n for n in names if n.startswith("archsearch")):
                if t in MODULES and t != mod:  # what it names, its own package included
                    graph[mod].add(t)
                parts = t.split(".")
                for i in range(1, len(parts)):  # and the packages above it, loaded first (but its own)
                    dep = ".".join(parts[:i])
                    if dep in MODULES and not mod.startswith(dep + "."):
                        graph[mod].add(dep)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
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
    return out


def test_no_module_is_longer_than_500_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in MODULES.values()
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"split these by responsibility: {long}"


def test_no_function_is_longer_than_60_lines():
    long = [f"{p.relative_to(PACKAGE)}:{f.lineno} {f.name} ({f.end_lineno - f.lineno + 1} lines)"
            for p in MODULES.values() for f in _functions(ast.parse(p.read_text()))
            if f.end_lineno - f.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, long


def test_no_import_circle():
    assert _cycles(_graph()) == []


def test_the_circle_check_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_a_submodule_that_imports_its_package_s_names_is_a_circle():
    """`archs/__init__` importing `archs.vgg` for its registrations while `vgg` imported `Family`
    from `archs` was one (the base classes now live in `archs/base.py`)."""
    node = ast.parse("from . import Family").body[0]
    assert _target("archsearch.archs.vgg", Path("archs/vgg.py"), node) == "archsearch.archs"
    assert _target("archsearch.archs", Path("archs/__init__.py"), node) == "archsearch.archs"
    assert _cycles({"archsearch.archs": {"archsearch.archs.vgg"}, "archsearch.archs.vgg": {"archsearch.archs"}})


def test_imports_inside_functions_are_only_the_deferred_ones():
    hidden = []
    for mod, path in MODULES.items():
        rel = str(path.relative_to(PACKAGE))
        for f in _functions(ast.parse(path.read_text())):
            for node in (n for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [_target(mod, path, node)])
                for name in names:
                    ours = name.startswith("archsearch")
                    if ours and rel.startswith(COMMAND_LINE) or not ours and name.split(".")[0] in DEFERRED:
                        continue
                    hidden.append(f"{rel}:{node.lineno} {f.name}: {name}")
    assert not hidden, f"import these at the top (or break the circle that hid them): {hidden}"
