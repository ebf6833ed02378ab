"""The shape of the code: no import cycles, and no import hidden in a function without a reason.

The layers themselves (each imports only downward) are checked by import-linter (``.importlinter``,
run by ``.ci/run`` as ``lint-imports``); these tests hold what it does not: a cycle inside a layer,
and function-level imports, which import-linter cannot see as cycles and which once numbered about
a hundred, each hiding a cycle. A function-level import is allowed only to defer a heavy or optional
dependency on purpose, and then it says so with a ``# deferred: <why>`` comment on its line or the
line above.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "aelab"


def _tool(name: str) -> str:
    """A console script of the test extra, beside this Python (the venv's bin), else on PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    assert found, f"{name} is not installed: pip install -e '.[test]'"
    return found


def test_the_layers_import_only_downward():
    """import-linter's contracts (.importlinter): each layer imports only the layers below it."""
    out = subprocess.run([_tool("lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "0 broken" in out.stdout, out.stdout[-3000:] + out.stderr[-2000:]


def test_the_linter_passes():
    """ruff, as configured in pyproject.toml, on the sources, the tests and the benchmarks."""
    out = subprocess.run([_tool("ruff"), "check", "--no-cache", "src", "tests", "benchmarks"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]


def _modules() -> dict[str, Path]:
    mods = {}
    for p in SRC.rglob("*.py"):
        parts = p.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = p
    return mods


def _target(mod: str, node: ast.ImportFrom, is_pkg: bool) -> str | None:
    if not node.level:
        return node.module
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base) + (("." + node.module) if node.module else "")


def _imports(mods: dict[str, Path]):
    """(module, imported aelab module, line, inside a function?) for every import of an aelab module."""
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        is_pkg = path.name == "__init__.py"
        funcs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        in_func = {id(i) for f in funcs for i in ast.walk(f) if isinstance(i, (ast.Import, ast.ImportFrom))}
        type_only = {id(i) for n in ast.walk(tree) if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)
                     for i in ast.walk(n) if isinstance(i, (ast.Import, ast.ImportFrom))}
        for n in ast.walk(tree):
            if id(n) in type_only:
                continue
            if isinstance(n, ast.ImportFrom):
                base = _target(name, n, is_pkg)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in n.names]
            elif isinstance(n, ast.Import):
                targets = [a.name for a in n.names]
            else:
                continue
            for t in targets:
                yield name, t, n, id(n) in in_func, path


def test_function_level_imports_say_why_they_are_deferred():
    mods = _modules()
    bare = []
    for _name, target, node, in_func, path in _imports(mods):
        if not in_func:
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        here = lines[node.lineno - 1]
        above = lines[node.lineno - 2] if node.lineno > 1 else ""
        if "# deferred:" not in here and "# deferred:" not in above:
            bare.append(f"{path.relative_to(SRC.parent)}:{node.lineno} imports {target}")
    assert not bare, "function-level imports without a '# deferred: <why>' comment:\n" + "\n".join(sorted(set(bare)))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components: each component of two or more modules is a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
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
                cycles.append(sorted(comp))

    for m in sorted(graph):
        if m not in index:
            visit(m)
    return cycles


def test_no_import_cycles():
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, target, _, _, _ in _imports(mods):
        if target in mods and target != name and not name.startswith(target + "."):
            graph[name].add(target)
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_check_sees_a_cycle_and_a_relative_import():
    """The checks above can fail: a three-module loop is found, a chain is not, and a relative
    import resolves to the module it names."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert _target("pkg.a", ast.parse("from . import b\n").body[0], False) == "pkg"
    assert _target("pkg.sub", ast.parse("from ..x import y\n").body[0], True) == "pkg.x"
