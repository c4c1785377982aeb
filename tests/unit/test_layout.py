"""The code is layered the way the data flows (pipeline -> models -> ensembles -> web -> cli.py; bench uses
them all), with no upward import and no import cycle, imports inside functions included."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("pipeline", "models", "ensembles", "web", "cli", "bench")


def project_modules() -> dict[str, Path]:
    modules = {"cli": ROOT / "cli.py"}
    for package in LAYERS:
        for file in (ROOT / package).rglob("*.py") if (ROOT / package).is_dir() else []:
            name = ".".join(file.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            modules[name] = file
    return modules


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (anywhere in the file)."""
    modules = project_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, file in modules.items():
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            graph[name] |= {target for target in targets if target in modules and target != name}
    return graph


def test_no_module_imports_from_a_layer_above_its_own():
    rank = {layer: k for k, layer in enumerate(LAYERS)}
    upward = [f"{a} -> {b}" for a, targets in import_graph().items() for b in targets
              if rank[a.split(".")[0]] < rank[b.split(".")[0]]]
    assert upward == []


def test_no_import_cycles():
    graph, state, cycles = import_graph(), {}, []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []
