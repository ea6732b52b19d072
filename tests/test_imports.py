"""The package's import graph: no cycles, and imports point down the layers.

Every ``import`` of a minircnn module anywhere in a file counts, at module level or
inside a function: an import moved into a function to dodge a cycle is still a cycle
(it only hides the order the modules must load in).
"""

import ast
import importlib
import types
from pathlib import Path

import minircnn

PACKAGE = Path(minircnn.__file__).parent
TOOLS = ("cli", "classroom", "paper", "perf")
# The layers of the package (design.md "Layout"): a module may import its own layer and
# the layers below it. Tools sit on top, the detector below them, its foundations last.
RANK = {"backend": 0, "testing": 0, "utils": 0,
        "layers": 1,
        "models": 2, "detection": 2, "data": 2,
        "training": 3, "gradcheck": 3, "viz": 3,
        **{tool: 4 for tool in TOOLS}, "__main__": 4}


def module_files() -> dict[str, Path]:
    """Dotted name -> file of every module in the package (packages by their __init__)."""
    files = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join(parts)] = path
    return files


def imported_modules(name: str, path: Path, known) -> set[str]:
    """The minircnn modules that ``name`` imports (``from pkg import mod`` is ``pkg.mod``;
    ``from pkg import obj`` is ``pkg``, its __init__)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:                              # relative: from . import x
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:      # minircnn.layers.conv.Conv2d -> module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imported_modules(name, path, files) for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle [a, b, ..., a] (depth-first search), or None."""
    state = {}                     # name -> "open" while on the path, "done" after

    def visit(name, path):
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target, path + [target])
                if cycle:
                    return cycle
        state[name] = "done"
        return None

    for name in sorted(graph):
        if name not in state:
            cycle = visit(name, [name])
            if cycle:
                return cycle
    return None


def layer(module: str) -> str:
    """minircnn.layers.conv -> "layers"; minircnn -> "minircnn"."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_imports_point_down_the_layers():
    """Nothing in the detector imports a tool; layers know nothing of models, ..."""
    graph = import_graph()
    upward = [f"{name} -> {target}" for name, targets in sorted(graph.items())
              for target in sorted(targets)
              if layer(name) in RANK and layer(target) in RANK
              and RANK[layer(target)] > RANK[layer(name)]]
    assert upward == []
    unranked = {layer(name) for name in graph} - set(RANK) - {"minircnn"}
    assert not unranked, f"place these in RANK: {sorted(unranked)}"


def test_the_checker_finds_a_cycle_and_an_upward_import():
    """The walk sees imports inside functions and resolves ``from pkg import mod``."""
    source = "def f():\n    from minircnn.paper import rows\n"
    known = {"minircnn.paper", "minircnn.paper.rows", "minircnn.layers.conv"}
    path = PACKAGE / "layers" / "conv.py"
    fake = type("P", (), {"name": "conv.py", "read_text": lambda self: source,
                          "__str__": lambda self: str(path)})()
    found = imported_modules("minircnn.layers.conv", fake, known)
    assert found == {"minircnn.paper.rows"}
    assert RANK[layer("minircnn.paper.rows")] > RANK[layer("minircnn.layers.conv")]
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_modules_import_names_from_the_module_that_defines_them():
    """Inside the package, ``from minircnn.x import name`` names the module that defines
    ``name`` ("go to definition" lands there); only package __init__s re-export."""
    indirect = []
    for name, path in module_files().items():
        if path.name == "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.ImportFrom) and not node.level
                    and (node.module or "").startswith("minircnn")):
                continue
            source = importlib.import_module(node.module)
            for alias in node.names:
                obj = getattr(source, alias.name, None)
                home = getattr(obj, "__module__", None)
                if isinstance(obj, types.ModuleType) or not (home or "").startswith("minircnn"):
                    continue                   # a submodule, or a constant (no __module__)
                if home != node.module:
                    indirect.append(f"{name}: from {node.module} import {alias.name} "
                                    f"(defined in {home})")
    assert indirect == []


def test_only_package_inits_re_export():
    """A module that imports a minircnn name uses it (no ``# noqa: F401`` re-exports)."""
    unused = []
    for name, path in module_files().items():
        if path.name == "__init__.py":
            continue
        tree = ast.parse(path.read_text(), str(path))
        used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("minircnn"):
                unused += [f"{name}: {a.name}" for a in node.names
                           if (a.asname or a.name) not in used]
    assert unused == []
