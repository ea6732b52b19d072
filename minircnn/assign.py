"""Classroom assignments from the lesson notebooks: release student copies, grade them.

Teachers write the solution inside the lessons, between nbgrader's markers::

    def conv_backward_loops(dout, x, w):
        ### BEGIN SOLUTION
        ...the code a student must write...
        ### END SOLUTION

:func:`release` writes a student copy of every lesson (``.ipynb`` and its jupytext
``.py``) where each block becomes, at the block's indentation,
``raise NotImplementedError("02_cnn_backprop: conv_backward_loops")`` (minitorch style:
a student's run stops at the line to write). The exercise name is the text after
``### BEGIN SOLUTION`` when there is one, else the enclosing ``def``.

:func:`grade` runs a (student's) notebook's code cells in order in one fresh namespace
and scores the graded cells, those whose first line reads
``# GRADED: <name> (<points> points)``: a graded cell that runs without an exception
earns its points, one that raises earns 0. Cells that raise are recorded and execution
continues. Notebooks are read as plain JSON (``.ipynb``) or jupytext percent ``.py``;
neither nbformat nor jupytext is needed.
"""

from __future__ import annotations

import contextlib
import io
import json
import linecache
import os
import re
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
GRADED = re.compile(r"^#\s*GRADED:\s*(?P<name>.+?)\s*\((?P<points>\d+(?:\.\d+)?)\s*points?\)\s*$")
_CELL = re.compile(r"^# %%(?P<rest>.*)$")
_DEF = re.compile(r"^(?P<indent>\s*)(?:async\s+)?def\s+(?P<name>\w+)")
LESSON = re.compile(r"^\d\d_\w+$")


class NotebookFormatError(ValueError):
    """The file is not a readable .ipynb (JSON) or jupytext percent .py notebook."""


@dataclass
class Cell:
    kind: str      # "code" or "markdown"
    source: str    # the cell's text, without a trailing newline


# --------------------------------------------------------------------------------------
# Reading notebooks.
# --------------------------------------------------------------------------------------
def read_cells(path: str | os.PathLike) -> list[Cell]:
    """The cells of an ``.ipynb`` or a jupytext percent ``.py`` notebook, in order.

    Raises:
        NotebookFormatError: unreadable file, invalid JSON, no ``cells`` list, or a
            suffix other than .ipynb / .py.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise NotebookFormatError(f"cannot read notebook {path}: {err}") from err
    if path.suffix == ".ipynb":
        return _ipynb_cells(text, path)
    if path.suffix == ".py":
        return _percent_cells(text)
    raise NotebookFormatError(f"notebook must be .ipynb or .py, got {path}")


def _ipynb_cells(text: str, path: Path) -> list[Cell]:
    try:
        nb = json.loads(text)
    except json.JSONDecodeError as err:
        raise NotebookFormatError(f"{path} is not valid notebook JSON: {err}") from err
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise NotebookFormatError(f"{path} has no 'cells' list: not a Jupyter notebook")
    cells = []
    for cell in nb["cells"]:
        source = cell.get("source", "") if isinstance(cell, dict) else None
        if not isinstance(source, str | list):
            raise NotebookFormatError(f"{path}: a cell without a 'source' string or list")
        source = "".join(source) if isinstance(source, list) else source
        cells.append(Cell(cell.get("cell_type", "code"), source.rstrip("\n")))
    return cells


def _percent_cells(text: str) -> list[Cell]:
    """Split a jupytext percent script at its ``# %%`` lines.

    Comment lines above the first marker (the YAML header) are skipped; code there
    becomes a first code cell, as jupytext does.
    """
    cells: list[Cell] = []
    kind, lines = None, []
    for line in text.splitlines():
        match = _CELL.match(line)
        if match is None:
            lines.append(line)
            continue
        if kind is not None:
            cells.append(_finish_percent_cell(kind, lines))
        elif any(ln.strip() and not ln.startswith("#") for ln in lines):
            cells.append(_finish_percent_cell("code", lines))   # code above the first # %%
        kind = "markdown" if re.search(r"\[(markdown|md)\]", match["rest"]) else "code"
        lines = []
    if kind is not None:
        cells.append(_finish_percent_cell(kind, lines))
    elif any(ln.strip() and not ln.startswith("#") for ln in lines):
        cells.append(_finish_percent_cell("code", lines))       # a script without markers
    return cells


def _finish_percent_cell(kind: str, lines: list[str]) -> Cell:
    while lines and not lines[-1].strip():
        lines = lines[:-1]   # jupytext puts a blank line between cells
    if kind == "markdown":   # markdown lines are "# text" comments
        lines = [line[2:] if line.startswith("# ") else line.lstrip("#") for line in lines]
    return Cell(kind, "\n".join(lines))


# --------------------------------------------------------------------------------------
# Releasing student copies.
# --------------------------------------------------------------------------------------
def strip_solutions(text: str, lesson: str) -> tuple[str, list[str]]:
    """Replace every solution block of ``text`` by a ``raise NotImplementedError``.

    Args:
        text: a cell's source or a whole percent .py file.
        lesson: the lesson's name, quoted in each error message.
    Returns:
        The student text and the exercise names, in order.
    Raises:
        ValueError: an END without a BEGIN, or a BEGIN never closed (with the line).
    """
    out: list[str] = []
    names: list[str] = []
    inside = None   # line number of the open BEGIN
    for number, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            if inside is not None:
                raise ValueError(f"{lesson}: line {number}: {BEGIN} inside the block "
                                 f"opened on line {inside}")
            inside = number
            indent = line[:len(line) - len(line.lstrip())]
            name = stripped[len(BEGIN):].strip(" :-") or _enclosing_def(out, indent)
            names.append(name or f"exercise {len(names) + 1}")
            out.append(f"{indent}# YOUR CODE HERE")
            out.append(f"{indent}raise NotImplementedError({f'{lesson}: {names[-1]}'!r})")
        elif stripped.startswith(END):
            if inside is None:
                raise ValueError(f"{lesson}: line {number}: {END} without {BEGIN}")
            inside = None
        elif inside is None:
            out.append(line)
    if inside is not None:
        raise ValueError(f"{lesson}: line {inside}: {BEGIN} is never closed by {END}")
    return "\n".join(out), names


def _enclosing_def(previous: list[str], indent: str) -> str | None:
    """Name of the nearest ``def`` above, indented less than the block."""
    for line in reversed(previous):
        match = _DEF.match(line)
        if match and len(match["indent"]) < len(indent):
            return match["name"]
    return None


def release(src_dir: str | os.PathLike, out_dir: str | os.PathLike) -> list[Path]:
    """Write student copies of every lesson ``NN_name.ipynb`` / ``NN_name.py`` in src_dir.

    Each solution block becomes ``raise NotImplementedError("<lesson>: <exercise>")``
    at its indentation; stored outputs are cleared. Other files are not copied.

    Returns:
        The paths written, sorted.
    Raises:
        FileNotFoundError: src_dir is not a folder.  ValueError: unbalanced markers,
            or out_dir is src_dir (that would overwrite the solutions).
    """
    src, out = Path(src_dir), Path(out_dir)
    if not src.is_dir():
        raise FileNotFoundError(f"src_dir {src} is not a folder")
    if out.resolve() == src.resolve():
        raise ValueError(f"out_dir must differ from src_dir, got {out} for both")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(src.iterdir()):
        if path.suffix not in (".ipynb", ".py") or not LESSON.match(path.stem):
            continue
        if path.suffix == ".py":
            text, _ = strip_solutions(path.read_text(encoding="utf-8"), path.stem)
        else:
            text = _release_ipynb(path)
        target = out / path.name
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written


def _release_ipynb(path: Path) -> str:
    _ipynb_cells(path.read_text(encoding="utf-8"), path)   # validates the structure
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        if cell.get("cell_type") == "code":
            source, _ = strip_solutions(source, path.stem)
            cell["outputs"], cell["execution_count"] = [], None
        lines = source.split("\n")
        cell["source"] = [line + "\n" for line in lines[:-1]] + [lines[-1]] if source else []
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------------------
# Grading.
# --------------------------------------------------------------------------------------
@dataclass
class CheckResult:
    """One graded cell: its name, points earned out of max_points, the error if it raised."""

    name: str
    points: float
    max_points: float
    cell: int                # index of the cell in the notebook
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None


@dataclass
class GradeReport:
    """Result of :func:`grade`: per-check results, errors of ungraded cells, totals."""

    notebook: str
    checks: list[CheckResult] = field(default_factory=list)
    cell_errors: list[tuple[int, str]] = field(default_factory=list)  # (cell, error)
    output: str = ""         # what the notebook printed

    @property
    def total(self) -> float:
        return sum(c.points for c in self.checks)

    @property
    def max_total(self) -> float:
        return sum(c.max_points for c in self.checks)

    def format_table(self) -> str:
        """A plain-text table: one row per graded check, then ``score: X/Y``."""
        width = max([len(c.name) for c in self.checks] + [5])
        rows = [f"{'check':<{width}}  points  result", "-" * (width + 40)]
        for c in self.checks:
            result = "ok" if c.passed else f"FAIL {c.error}"
            rows.append(f"{c.name:<{width}}  {_num(c.points):>3}/{_num(c.max_points):<3} {result}")
        for cell, error in self.cell_errors:
            rows.append(f"(cell {cell}, not graded) {error}")
        rows.append(f"score: {_num(self.total)}/{_num(self.max_total)}")
        return "\n".join(rows)


def _num(x: float) -> str:
    return f"{x:g}"


def graded_header(source: str) -> tuple[str, float] | None:
    """(name, points) when the cell's first non-blank line is ``# GRADED: name (N points)``."""
    for line in source.splitlines():
        if line.strip():
            match = GRADED.match(line.strip())
            return (match["name"], float(match["points"])) if match else None
    return None


def grade(notebook_path: str | os.PathLike) -> GradeReport:
    """Run a notebook's code cells in order in one fresh namespace and score its graded cells.

    The working directory is the notebook's folder (also put first on sys.path) and
    matplotlib uses the Agg backend; IPython magics (lines starting with % or !) are
    skipped. Whatever the notebook prints is kept in ``report.output``.

    Raises:
        NotebookFormatError: the notebook cannot be read.
    """
    path = Path(notebook_path).resolve()
    cells = read_cells(path)
    report = GradeReport(str(notebook_path))
    namespace = {"__name__": "__main__", "__file__": str(path)}
    buffer = io.StringIO()
    with _grading_environment(path.parent), contextlib.redirect_stdout(buffer), \
            contextlib.redirect_stderr(buffer):
        for index, cell in enumerate(cells):
            if cell.kind != "code":
                continue
            error = _run_cell(cell.source, namespace, f"<{path.name} cell {index}>",
                              f"<{path.name} cell ")
            header = graded_header(cell.source)
            if header is not None:
                name, points = header
                report.checks.append(CheckResult(name, 0.0 if error else points, points,
                                                 index, error))
            elif error is not None:
                report.cell_errors.append((index, error))
    report.output = buffer.getvalue()
    return report


def _run_cell(source: str, namespace: dict, filename: str, prefix: str) -> str | None:
    """exec one cell; None if it ran, else a one-line description of the exception.

    The description ends with where it was raised: the innermost frame in any cell of
    the notebook (filenames starting with ``prefix``), e.g. "(nb.ipynb cell 5, line 3)".
    """
    code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                     for line in source.split("\n")) + "\n"
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    try:
        exec(compile(code, filename, "exec"), namespace)   # noqa: S102 - running the notebook is the point
    except KeyboardInterrupt:
        raise
    except BaseException as err:   # SystemExit included: a cell must not end the grading
        frames = [f for f in traceback.extract_tb(err.__traceback__)
                  if f.filename.startswith(prefix)]
        where = f" ({frames[-1].filename[1:-1]}, line {frames[-1].lineno})" if frames else ""
        return f"{type(err).__name__}: {err}{where}"
    return None


@contextlib.contextmanager
def _grading_environment(folder: Path):
    """cwd = folder, folder first on sys.path, MPLBACKEND=Agg; all restored afterwards."""
    old_cwd, old_path = os.getcwd(), list(sys.path)
    old_backend = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = "Agg"
    if "matplotlib" in sys.modules:   # already imported: switch now (env is read on import)
        sys.modules["matplotlib"].use("Agg")
    old_figures = _pyplot_figures()
    os.chdir(folder)
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        os.chdir(old_cwd)
        sys.path[:] = old_path
        if "matplotlib.pyplot" in sys.modules:   # close the notebook's pyplot figures
            for number in _pyplot_figures() - old_figures:
                sys.modules["matplotlib.pyplot"].close(number)
        if old_backend is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = old_backend


def _pyplot_figures() -> set:
    pyplot = sys.modules.get("matplotlib.pyplot")
    return set(pyplot.get_fignums()) if pyplot is not None else set()
