"""The layers run one way, and no module imports itself back through another.

    common  <  contracts  <  envs  <  rollouts  <  judges  <  train
                         \\
                          serve   (common and contracts only; train may use serve)

A library module may import its own package and the packages below it. Every import counts:
at the top, inside a function, or under TYPE_CHECKING. The one exception is listed in
`UPWARD` with its reason (a CLI is the composition root where a user's choice of env is loaded).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["common", "contracts", "envs", "rollouts", "judges", "train"]
# What each package may import besides itself.
ALLOWED: dict[str, set[str]] = {pkg: set(ORDER[:i]) for i, pkg in enumerate(ORDER)}
ALLOWED["serve"] = {"common", "contracts"}
ALLOWED["train"] |= {"serve"}
UPWARD = {
    ("serve.bench", "envs"): "`--workload agent` loads the env the user names; serve.workloads takes it as an argument",
}


def _modules() -> dict[str, Path]:
    found = {}
    for pkg in ALLOWED:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _imports(module: str, path: Path) -> set[str]:
    """Every mcpgym module or package `module` imports, resolved to an absolute dotted name."""
    is_pkg = path.name == "__init__.py"
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names.add(prefix)
            names.update(f"{prefix}.{alias.name}" for alias in node.names)
    return {name for name in names if name.split(".")[0] in ALLOWED}


def test_layers_run_one_way() -> None:
    wrong = []
    for module, path in _modules().items():
        pkg = module.split(".")[0]
        for name in sorted(_imports(module, path)):
            target = name.split(".")[0]
            if target != pkg and target not in ALLOWED[pkg] and (module, target) not in UPWARD:
                wrong.append(f"{module} imports {name} ({pkg} may import {sorted(ALLOWED[pkg])})")
    assert not wrong, "\n".join(wrong)


def test_upward_exceptions_are_still_needed() -> None:
    modules = _modules()
    for module, target in UPWARD:
        assert any(name.split(".")[0] == target for name in _imports(module, modules[module])), (module, target)


def test_no_import_cycles() -> None:
    modules = _modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in modules.items():
        for name in _imports(module, path):
            # `from pkg import name` names a module when there is one, else the package.
            target = name if name in modules else name.rsplit(".", 1)[0]
            if target in modules and target != module and not module.startswith(target + "."):
                graph[module].add(target)
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for module in sorted(modules):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)
