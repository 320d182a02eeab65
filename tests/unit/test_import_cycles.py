"""No import cycles between ess modules, counting every import a module can run.

Imports inside functions count (a cycle hidden in a function is still a cycle: it only shows
later, at run time), and so do imports under `if TYPE_CHECKING:`. The whole of ess is checked
(CHECKED), beside import-linter's contracts in `make test`, which read the same imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

#: packages whose modules must form no cycle among themselves or through each other
CHECKED = ("ess",)


def module_files(root: Path = SRC) -> dict[str, Path]:
    """Every module under src/ess by dotted name (a package is its __init__)."""
    out: dict[str, Path] = {}
    for path in sorted((root / "ess").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _resolve(module: str, level: int, name: str | None, *, package: str) -> str:
    if level == 0:
        return name or ""
    base = package.split(".")
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The ess modules `name` imports anywhere in its text (module level or in functions)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, node.level, node.module, package=package)
            found.add(base)
            for alias in node.names:  # `from ess.x import y`: y may be the submodule ess.x.y
                sub = f"{base}.{alias.name}"
                if sub in modules:
                    found.add(sub)
    return {m for m in found if m in modules and m != name}


def import_graph(packages: tuple[str, ...], root: Path = SRC) -> dict[str, set[str]]:
    """Edges between the modules of `packages` (a package's own __init__ included)."""
    modules = module_files(root)

    def inside(mod: str) -> bool:
        return any(mod == p or mod.startswith(p + ".") for p in packages)

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        if inside(name):
            graph[name] = {m for m in imports_of(name, path, modules) if inside(m)}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            comp = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                comp.append(top)
                if top == node:
                    break
            if len(comp) > 1:
                components.append(sorted(comp))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def cycles_in(packages: tuple[str, ...], root: Path = SRC) -> list[list[str]]:
    """The import cycles among the modules of `packages` (empty when there is none)."""
    return find_cycles(import_graph(packages, root))


def test_graph_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "ess" / "p"
    pkg.mkdir(parents=True)
    (tmp_path / "ess" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from ess.p import b\n")
    (pkg / "b.py").write_text("from . import c\n")
    (pkg / "c.py").write_text("import ess.p.a\n")
    graph = import_graph(("ess.p",), tmp_path)
    assert graph["ess.p.a"] == {"ess.p", "ess.p.b"}
    assert cycles_in(("ess.p",), tmp_path) == [["ess.p.a", "ess.p.b", "ess.p.c"]]
    (pkg / "c.py").write_text("import os\n")  # the cycle broken
    assert cycles_in(("ess.p",), tmp_path) == []


def test_no_import_cycles() -> None:
    cycles = cycles_in(CHECKED)
    assert cycles == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_aq_does_not_import_udb() -> None:
    """aq is below udb: the UDB import sink registers itself with ess.aq.sinks."""
    modules = module_files()
    wrong = {
        name: sorted(m for m in imports_of(name, path, modules) if m.startswith("ess.udb"))
        for name, path in modules.items()
        if name.startswith("ess.aq")
    }
    assert {k: v for k, v in wrong.items() if v} == {}
