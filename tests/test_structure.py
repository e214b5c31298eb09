"""The shape issue 11 asked for, kept: no import cycle in src/tailorlm (function-local imports count: they hide a
cycle, they do not remove it; ``if TYPE_CHECKING:`` imports do not, they never run), no import of another
module's private names, no function longer than 60 lines, and run.py holding the stage list, not stage logic."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "tailorlm"
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:``."""
    out: list[ast.AST] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        out.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> tuple[set[str], list[str]]:
    """(modules of tailorlm this one imports, ``module:_name`` private names it imports from another module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    edges, private = set(), []
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base) if node.level else (node.module or "")
            if not target.startswith("tailorlm"):
                continue
            for alias in node.names:
                full = f"{target}.{alias.name}"
                edges.add(full if full in modules else target)
                if alias.name.startswith("_") and not alias.name.startswith("__") and target != name:
                    private.append(f"{name} imports {target}:{alias.name}")
        elif isinstance(node, ast.Import):
            edges |= {a.name for a in node.names if a.name.startswith("tailorlm")}
    return {e for e in edges if e in modules and e != name}, private


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_no_import_cycles_and_no_private_imports() -> None:
    modules = _modules()
    graph: dict[str, set[str]] = defaultdict(set)
    private: list[str] = []
    for name, path in modules.items():
        edges, names = _imports(name, path, modules)
        graph[name] |= edges
        private += names
    assert not _cycles(graph), f"import cycles: {_cycles(graph)}"
    assert not private, "imports of another module's private names:\n" + "\n".join(private)


def test_no_function_longer_than_60_lines() -> None:
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "functions over 60 lines:\n" + "\n".join(long)


def test_run_py_is_the_stage_list() -> None:
    """run.py: the STAGES list and the few functions that hand it to the runner; no stage bodies."""
    from tailorlm.run import STAGES

    tree = ast.parse((PACKAGE / "run.py").read_text(encoding="utf-8"))
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert len(functions) <= 4 and all(n.end_lineno - n.lineno < 30 for n in functions)  # type: ignore[operator]
    assert len({s.name for s in STAGES}) == len(STAGES)
    assert all(s.fn.__module__.startswith("tailorlm.stages.") for s in STAGES)


def test_the_checker_sees_a_cycle_and_a_private_import(tmp_path: Path) -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    module = tmp_path / "m.py"
    module.write_text("from tailorlm.run import _hidden\nif TYPE_CHECKING:\n    from tailorlm.cli import app\n")
    edges, private = _imports("tailorlm.m", module, {"tailorlm.run": module, "tailorlm.cli": module})
    assert edges == {"tailorlm.run"} and private == ["tailorlm.m imports tailorlm.run:_hidden"]
