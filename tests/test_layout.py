"""The layering of the package, checked on its source: no import cycle, no upward import
(``ops`` below ``models`` below ``tools``; only the command line imports the tools)."""

from __future__ import annotations

import ast
from pathlib import Path

import pntm

ROOT = Path(pntm.__file__).parent


def module_imports() -> dict[str, set[str]]:
    """Every pntm module and the pntm modules it imports (at the top or inside a function)."""
    files = {}
    for path in ROOT.rglob("*.py"):
        name = ".".join(("pntm",) + path.relative_to(ROOT).with_suffix("").parts)
        files[name.removesuffix(".__init__")] = path
    graph = {}
    for name, path in files.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
        # a package importing its own submodules is how packages export: not an edge up
        graph[name] = {t for t in targets if t in files and t != name
                       and not t.startswith(name + ".")}
    return graph


def test_no_import_cycle():
    graph, state, cycles = module_imports(), {}, []

    def visit(module, path):
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, [" -> ".join(c) for c in cycles]


def test_no_upward_import():
    # ops are the maths (they import no model and no tool), models are modules (no tool), and
    # only the command line and the tools themselves import the tools
    def package(module):
        return module.split(".")[1] if module.count(".") else ""

    below = {"ops": {"models", "tools"}, "models": {"tools"}}
    wrong = [f"{m} imports {t}" for m, targets in module_imports().items() for t in targets
             if package(t) in below.get(package(m), set())
             or (package(t) == "tools" and package(m) != "tools" and m != "pntm.cli")]
    assert not wrong, wrong
