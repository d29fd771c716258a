"""fastnn's modules import one another one way (docs/architecture.md, "the house").

Read statically from the source: every module's module-level imports (not those inside functions
or under ``TYPE_CHECKING``). The graph has no cycle, nothing imports fastnn inside a function to
dodge one, and each part imports only what sits below it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import fastnn

ROOT = Path(fastnn.__file__).resolve().parent
#: Imports left inside functions on purpose, and why: (module, imported module).
DELIBERATELY_LAZY = {
    ("fastnn.utils", "fastnn.plotting"): "start-up time: plotting's imports cost ~4 ms",
    ("fastnn.export", "fastnn.export.walker"): "start-up time: the ONNX converters, ~10 ms",
    ("fastnn.kernels.gemm", "fastnn.kernels.matmul_simd"): "gemm loads with fastnn, no Numba",
}
#: What each part must not import (prefixes), as the house's dependency direction says.
FORBIDDEN = {
    "fastnn.kernels": ["fastnn"],  # but fastnn.kernels itself, see below
    "fastnn.nodes": ["fastnn.layers", "fastnn.graph", "fastnn.models", "fastnn.training"],
    "fastnn.layers": [
        "fastnn.graph",
        "fastnn.fusion",
        "fastnn.models",
        "fastnn.training",
        "fastnn.saving.api",
        "fastnn.saving.native",
        "fastnn.saving.keras_format",
    ],
    "fastnn.fusion": ["fastnn.graph", "fastnn.models", "fastnn.training", "fastnn.saving"],
    "fastnn.graph": ["fastnn.models", "fastnn.training", "fastnn.saving"],
    "fastnn.training": ["fastnn.models", "fastnn.graph", "fastnn.layers", "fastnn.saving"],
    "fastnn.models": ["fastnn.saving.native", "fastnn.saving.keras_format"],
    "fastnn.saving.registry": ["fastnn"],
    "fastnn.saving.api": ["fastnn"],
}


def module_name(path: Path) -> str:
    parts = ["fastnn", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    found = {module_name(p): p for p in ROOT.rglob("*.py")}
    found.update({module_name(p): p for p in (ROOT / "kernels").glob("*.py")})  # a symlink
    return found


MODULES = modules()


def resolve(module: str, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The fastnn modules an import statement in ``module`` imports."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
        base = node.module or ""
        if node.level:
            parts = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join(parts + ([node.module] if node.module else []))
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    found = []
    for name in names:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name and name != module:
            found.append(name)
    return found


def imports(module: str) -> tuple[set[str], set[str]]:
    """(module-level imports, imports inside functions) of fastnn modules by ``module``."""
    tree = ast.parse(MODULES[module].read_text())
    top, inner = set(), set()

    def visit(nodes, into):
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(node.body, inner)
                continue
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                into.update(resolve(module, node))
            for field in ("body", "orelse", "finalbody", "handlers"):
                children = getattr(node, field, None)
                if isinstance(children, list):
                    visit(children, into)

    visit(tree.body, top)
    return top, inner


GRAPH = {name: imports(name) for name in MODULES}


def test_no_import_cycle():
    """Depth-first search for a back edge in the module-level graph."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in GRAPH:
        stack = [(start, iter(sorted(GRAPH[start][0])))]
        path = [start]
        state.setdefault(start, 1)
        if state[start] == 2:
            continue
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(child) == 1:
                cycle = path[path.index(child) :] + [child]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            elif child not in state:
                state[child] = 1
                stack.append((child, iter(sorted(GRAPH[child][0]))))
                path.append(child)


def test_nothing_imports_fastnn_inside_a_function_but_what_must_load_late():
    late = {(m, i) for m, (_, inner) in GRAPH.items() for i in inner}
    allowed = set(DELIBERATELY_LAZY)
    assert late <= allowed, sorted(late - allowed)


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_each_part_imports_only_what_sits_below_it(part):
    def within(name, prefix):
        return name == prefix or name.startswith(prefix + ".")

    wrong = []
    for module, (top, _) in GRAPH.items():
        if not within(module, part):
            continue
        for target in top:
            if part == "fastnn.kernels" and within(target, "fastnn.kernels"):
                continue
            if any(within(target, prefix) for prefix in FORBIDDEN[part]):
                wrong.append(f"{module} imports {target}")
    assert not wrong, wrong


def test_the_saving_package_loads_nothing_that_imports_layers():
    """Layers import saving.registry and saving.serialization, which runs fastnn/saving/__init__
    first: it may import no module that would import a layer module back."""
    seen, todo = set(), ["fastnn.saving"]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(GRAPH[module][0])
    assert not {m for m in seen if m.startswith(("fastnn.layers", "fastnn.models"))}, seen
