"""The code's shape: imports run one way, no module imports another in a cycle, none is over
400 lines, and the README's Layout names every module."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("basics", "perturbations", "models", "robustness", "reports")
MAX_LINES = 400


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for p in sorted((ROOT / pkg).rglob("*.py")):
            parts = p.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def imports(path: Path, top_level_only: bool = False) -> set[str]:
    """First-party modules `path` imports (at any depth, or only those run at import time)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.If) and top_level_only:  # `if TYPE_CHECKING:` blocks count: a cycle for the reader
            nodes_in = node.body
        else:
            nodes_in = [node]
        for n in nodes_in:
            if isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
                found.add(n.module)
                found.update(f"{n.module}.{a.name}" for a in n.names)
            elif isinstance(n, ast.Import):
                found.update(a.name for a in n.names)
    return {m for m in found if m.split(".")[0] in PACKAGES}


def layer(module: str) -> str:
    if module.startswith("robustness.cli"):
        return "cli"
    if module.startswith("robustness.store"):
        return "store"
    return module.split(".")[0]


# Who may import whom. The engine (robustness) computes without reports; reports read the
# store and never torch; only the command line sits above both.
ALLOWED = {
    "basics": {"basics"},
    "perturbations": {"basics", "perturbations"},
    "models": {"basics", "perturbations", "models"},
    "store": {"basics", "store"},
    "robustness": {"basics", "perturbations", "models", "store", "robustness"},
    "reports": {"basics", "store", "reports"},
    "cli": {"basics", "perturbations", "models", "store", "robustness", "reports", "cli"},
}


def test_imports_run_one_way():
    mods = modules()
    bad = []
    for name, path in mods.items():
        for target in imports(path):
            if target in mods and layer(target) not in ALLOWED[layer(name)]:
                bad.append(f"{name} imports {target}")
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    mods = modules()
    graph = {m: {t for t in imports(p, top_level_only=True) if t in mods and t != m} for m, p in mods.items()}
    # a package's __init__ importing its own submodules is how a registry fills itself, not a cycle
    graph = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in graph.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(m, stack):
        state[m] = 1
        for t in graph[m]:
            if state.get(t) == 1:
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t, stack + [t])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])
    assert not cycles, "\n".join(cycles)


def test_no_module_imports_private_names_of_another():
    bad = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
                bad += [f"{name}: {node.module}.{a.name}" for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")]
    assert not bad, "\n".join(bad)


def test_no_module_over_400_lines():
    long = {n: len(p.read_text().splitlines()) for n, p in modules().items()}
    assert not {n: k for n, k in long.items() if k > MAX_LINES}


def test_readme_layout_names_every_module():
    text = (ROOT / "README.md").read_text()
    layout = text[text.index("## Layout"):]
    layout = layout[:layout.index("\n## ", 4)] if "\n## " in layout[4:] else layout
    listed = {x for x in re.findall(r"`([a-z_/]+\.py)`", layout) if x.split("/")[0] in PACKAGES}
    files = {str(p.relative_to(ROOT)) for p in modules().values() if p.name != "__init__.py"}
    assert not files - listed, f"modules the README's Layout does not name: {sorted(files - listed)}"
    assert not listed - files - {"__init__.py"}, f"the Layout names modules that do not exist: {sorted(listed - files)}"
