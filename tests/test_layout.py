"""README.md and docs/design.md draw the package as it is (scripts/layout.py)."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "minircnn"


def _script():
    spec = importlib.util.spec_from_file_location("layout", ROOT / "scripts" / "layout.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _block(path: Path) -> list[str]:
    script = _script()
    text = path.read_text()
    return text.split(script.BEGIN)[1].split(script.END)[0].strip().splitlines()[1:-1]


def test_the_layout_blocks_are_what_the_package_is():
    assert _script().main(["--check"]) == 0, "run: python scripts/layout.py"


def test_design_lists_every_module_with_its_docstring_and_nothing_else():
    script = _script()
    listed = {}
    folders = []
    for line in _block(ROOT / "docs" / "design.md")[1:]:
        depth = (len(line) - len(line.lstrip())) // 2
        name = line.split()[0]
        folders[depth - 1:] = [name.rstrip("/")]
        listed["/".join(folders)] = line[script.NAME_WIDTH:]
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        key = str(rel.parent) if path.name == "__init__.py" else str(rel)
        if key != ".":
            modules[key] = script.summary(path)
    assert listed == modules


def test_every_module_says_what_it_is_in_its_first_line():
    """The layout's words: a one-line summary (PEP 257), a sentence ending in a period."""
    vague = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
             if not _script().summary(p).endswith(".")]
    assert vague == []


def test_at_most_eight_modules_at_the_package_root():
    assert len(list(PACKAGE.glob("*.py"))) <= 8


def test_the_readme_lists_every_package_and_root_module():
    names = {line.split()[0] for line in _block(ROOT / "README.md")[1:]}
    expected = {p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    expected |= {p.name + "/" for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert names == expected
