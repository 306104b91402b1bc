"""The layering of the package, checked on its source: no import cycle, no upward import
(``ops`` below ``models`` below ``tools``; only the command line imports the tools); and of the
repository: no weights tracked under ``results/``."""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

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


def test_no_weights_tracked_under_results():
    # committed runs keep config, metrics and evaluations; weights and training state stay out
    # of the tree so the repository stays light as the grid grows (issue "The whole Chomsky
    # benchmark"); runs a sweep makes locally are ignored by .gitignore
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files", "results"], cwd=root, capture_output=True,
                             text=True, check=True).stdout.split()
    heavy = [p for p in tracked if p.endswith(("model.safetensors", "train_state.pt"))]
    assert not heavy, heavy[:5]
    ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index",
                              "results/any/run-s0/model.safetensors"], cwd=root)
    assert ignored.returncode == 0
