"""The house rules of ARCHITECTURE.md, checked on the source: the import contracts (import-linter), no
import cycle even through function-level imports, our own modules imported at module level only, short
orchestration functions, and benchmarks/ and tests/ kept apart."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "training", "cases", "methods", "evaluations", "benchmark")
# function-level imports of our own modules that stay: the target imports a heavy third-party module at
# import time (transformer_lens), and the importer is on a light path (`cases list`, `--help`)
LAZY_OK = {("cases.ioi.case", "cases.ioi.hl_model"): "transformer_lens"}
MAX_ORCHESTRATION_LINES = 80


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for p in (ROOT / pkg).rglob("*.py"):
            name = ".".join(p.relative_to(ROOT).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = p
    return mods


MODULES = _modules()


def _target(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path) -> list[tuple[str, bool]]:
    """(imported module of ours, at module level?) for every import in ``path``."""
    found: list[tuple[str, bool]] = []
    is_pkg = path.name == "__init__.py"

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            here = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = module.split(".")[: len(module.split(".")) - child.level + (1 if is_pkg else 0)]
                    base = ".".join(parts + ([base] if base else []))
                names = [f"{base}.{a.name}" for a in child.names] or [base]
            for n in names:
                t = _target(n) if n.split(".")[0] in PACKAGES else None
                if t and t != module:
                    found.append((t, here))
            visit(child, here)

    visit(ast.parse(path.read_text()), True)
    return found


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    assert lint.exists(), "lint-imports (import-linter, the dev extra) is not installed next to this Python"
    out = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "BROKEN" not in out.stdout


def test_no_import_cycle_even_through_function_level_imports():
    edges = defaultdict(set)
    for m, imps in GRAPH.items():
        edges[m].update(t for t, _ in imps)
    index, low, stack, on, comps = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10_000)

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                strong(w)
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
                comps.append(sorted(comp))

    for m in MODULES:
        if m not in index:
            strong(m)
    assert comps == []


def test_our_modules_are_imported_at_module_level():
    lazy = sorted({(m, t) for m, imps in GRAPH.items() for t, top in imps if not top})
    assert [x for x in lazy if x not in LAZY_OK] == []
    for (_, target), heavy in LAZY_OK.items():  # each exception still earns its place
        tree = ast.parse(MODULES[target].read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        assert any(heavy in ast.unparse(n) for n in top), f"{target} no longer imports {heavy}: hoist its import"


def test_core_imports_nothing_of_ours_above_it():
    for m, imps in GRAPH.items():
        if m.startswith("core"):
            assert all(t.startswith("core") for t, _ in imps), (m, imps)


def test_main_is_only_the_entry_point():
    tree = ast.parse((ROOT / "main.py").read_text())
    mods = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert mods == ["benchmark.cli"]


def test_orchestration_functions_are_short():
    long = []
    for p in (ROOT / "benchmark").rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_ORCHESTRATION_LINES:
                    long.append(f"{p.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert long == []


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    roots = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    roots |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and not n.level}
    return roots


def test_benchmarks_and_tests_do_not_import_each_other():
    for p in (ROOT / "benchmarks").glob("*.py"):
        assert "tests" not in _imported_roots(p), p
        text = p.read_text()
        assert not any("sys.path" in line and "tests" in line for line in text.splitlines()), p
    for p in (ROOT / "tests").rglob("*.py"):
        assert "benchmarks" not in _imported_roots(p), p
        if p.name != Path(__file__).name:  # nor loads one by path
            text = p.read_text()
            assert '"benchmarks"' not in text and not ("spec_from_file_location" in text and "benchmarks" in text), \
                f"{p} loads a file under benchmarks/"
