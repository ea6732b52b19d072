"""Classroom assignments from the lesson notebooks: read them, release student copies.

A teacher's source lesson marks its cells with nbgrader's metadata (``nbgrader:
{grade, grade_id, locked, points, solution, schema_version: 3}``; in the jupytext ``.py``
it sits on the cell's ``# %%`` line). Two kinds of cells matter:

* a **solution cell** (``solution: true``) holds the code a student writes, between
  nbgrader's markers::

      def conv_backward_loops(dout, x, w):
          ### BEGIN SOLUTION
          ...the code a student must write...
          ### END SOLUTION

* a **test cell** (``grade: true``, ``points``) is one exercise; its ``grade_id`` is the
  exercise's id. What sits between ``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS``
  is for grading only: the ``def grade_<name>(student, rng)`` TESTs the judge runs
  (:mod:`minircnn.classroom.lesson`).

:func:`release` writes a student copy of every lesson (``.ipynb`` and its jupytext
``.py``) where each solution block becomes, at the block's indentation,
``raise NotImplementedError("02_cnn_backprop: conv_backward_loops")`` (minitorch style:
a student's run stops at the line to write) and the hidden tests are gone. The
exercise name is the text after ``### BEGIN SOLUTION`` when there is one, else the
enclosing ``def``. A **written answer** is a Markdown cell (nbgrader's "manually graded
answer": ``solution`` and ``grade``, here 0 points) whose model answer and rubric sit
between the same markers; its student copy reads ``YOUR ANSWER HERE`` (nbgrader's stub).
Grading lives in :mod:`minircnn.classroom.grade`.

Notebooks are read as plain JSON (``.ipynb``) or jupytext percent ``.py``; neither
nbformat nor jupytext is needed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
ANSWER_STUB = "YOUR ANSWER HERE"
BEGIN_HIDDEN = "### BEGIN HIDDEN TESTS"
END_HIDDEN = "### END HIDDEN TESTS"
_CELL = re.compile(r"^# %%(?P<rest>.*)$")
_DEF = re.compile(r"^(?P<indent>\s*)(?:async\s+)?def\s+(?P<name>\w+)")
_KEY = re.compile(r"\s*(?P<key>[A-Za-z_][\w.-]*)=")
LESSON = re.compile(r"^\d\d_\w+$")


class NotebookFormatError(ValueError):
    """The file is not a readable .ipynb (JSON) or jupytext percent .py notebook."""


@dataclass
class Cell:
    kind: str      # "code" or "markdown"
    source: str    # the cell's text, without a trailing newline
    metadata: dict = field(default_factory=dict, compare=False)

    @property
    def nbgrader(self) -> dict:
        """The cell's nbgrader metadata ({} when it has none or it is not a dict)."""
        meta = self.metadata.get("nbgrader")
        return meta if isinstance(meta, dict) else {}

    @property
    def is_solution(self) -> bool:
        return self.kind == "code" and bool(self.nbgrader.get("solution"))

    @property
    def is_test(self) -> bool:
        return self.kind == "code" and bool(self.nbgrader.get("grade"))

    @property
    def grade_id(self) -> str | None:
        grade_id = self.nbgrader.get("grade_id")
        return grade_id if isinstance(grade_id, str) else None


def checksum(source: str) -> str:
    """sha256 of a cell's text, trailing spaces ignored (nbgrader checks locked cells so)."""
    text = "\n".join(line.rstrip() for line in source.strip("\n").split("\n"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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
    if path.suffix not in (".ipynb", ".py"):
        raise NotebookFormatError(f"notebook must be .ipynb or .py, got {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise NotebookFormatError(f"cannot read notebook {path}: {err}") from err
    return cells_from_text(text, path.suffix, str(path))


def cells_from_text(text: str, suffix: str, where: str = "notebook") -> list[Cell]:
    """The cells of a notebook's text: ``suffix`` ".ipynb" (JSON) or ".py" (percent)."""
    if suffix == ".ipynb":
        return _ipynb_cells(text, Path(where))
    return _percent_cells(text)


def read_notebook_metadata(path: str | os.PathLike) -> dict:
    """The notebook-level metadata of an .ipynb ({} for a .py or when unreadable)."""
    try:
        return notebook_metadata(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return {}


def notebook_metadata(text: str) -> dict:
    """The notebook-level metadata of an .ipynb's text ({} for a .py or invalid JSON)."""
    try:
        nb = json.loads(text)
    except json.JSONDecodeError:
        return {}
    meta = nb.get("metadata") if isinstance(nb, dict) else None
    return meta if isinstance(meta, dict) else {}


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
        metadata = cell.get("metadata")
        cells.append(Cell(cell.get("cell_type", "code"), source.rstrip("\n"),
                          metadata if isinstance(metadata, dict) else {}))
    return cells


def _percent_cells(text: str) -> list[Cell]:
    """Split a jupytext percent script at its ``# %%`` lines.

    Comment lines above the first marker (the YAML header) are skipped; code there
    becomes a first code cell, as jupytext does. ``key=<json>`` pairs after the marker
    (``# %% nbgrader={"grade": true, ...}``) are the cell's metadata.
    """
    cells: list[Cell] = []
    kind, metadata, lines = None, {}, []
    for line in text.splitlines():
        match = _CELL.match(line)
        if match is None:
            lines.append(line)
            continue
        if kind is not None:
            cells.append(_finish_percent_cell(kind, lines, metadata))
        elif any(ln.strip() and not ln.startswith("#") for ln in lines):
            cells.append(_finish_percent_cell("code", lines, {}))   # code above the first # %%
        rest = match["rest"]
        kind = "markdown" if re.match(r"\s*\[(markdown|md)\]", rest) else "code"
        metadata = _percent_metadata(re.sub(r"^\s*\[\w+\]", "", rest))
        lines = []
    if kind is not None:
        cells.append(_finish_percent_cell(kind, lines, metadata))
    elif any(ln.strip() and not ln.startswith("#") for ln in lines):
        cells.append(_finish_percent_cell("code", lines, {}))       # a script without markers
    return cells


def _percent_metadata(rest: str) -> dict:
    """``key=<json> key2=<json>`` (jupytext's cell options) -> dict; other text ignored."""
    metadata, decoder, position = {}, json.JSONDecoder(), 0
    while (match := _KEY.match(rest, position)) is not None:
        try:
            value, position = decoder.raw_decode(rest, match.end())
        except json.JSONDecodeError:
            break
        metadata[match["key"]] = value
    return metadata


def _finish_percent_cell(kind: str, lines: list[str], metadata: dict) -> Cell:
    while lines and not lines[-1].strip():
        lines = lines[:-1]   # jupytext puts a blank line between cells
    if kind == "markdown":   # markdown lines are "# text" comments
        lines = [line[2:] if line.startswith("# ") else line.lstrip("#") for line in lines]
    return Cell(kind, "\n".join(lines), metadata)


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


def strip_hidden_tests(text: str, lesson: str) -> str:
    """``text`` without its ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS`` regions.

    Raises:
        ValueError: unbalanced or nested markers (with the line).
    """
    out: list[str] = []
    inside = None   # line number of the open BEGIN HIDDEN TESTS
    for number, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if stripped.startswith(BEGIN_HIDDEN):
            if inside is not None:
                raise ValueError(f"{lesson}: line {number}: {BEGIN_HIDDEN} inside the region "
                                 f"opened on line {inside}")
            inside = number
        elif stripped.startswith(END_HIDDEN):
            if inside is None:
                raise ValueError(f"{lesson}: line {number}: {END_HIDDEN} without {BEGIN_HIDDEN}")
            inside = None
        elif inside is None:
            out.append(line)
    if inside is not None:
        raise ValueError(f"{lesson}: line {inside}: {BEGIN_HIDDEN} is never closed by "
                         f"{END_HIDDEN}")
    return "\n".join(out)


def strip_answers(text: str, lesson: str) -> str:
    """Each written answer (a Markdown solution region) of ``text`` -> ``YOUR ANSWER HERE``.

    ``text`` is a Markdown cell, or a percent .py whose code solutions are already gone
    (:func:`release_text`), where Markdown lines read ``# ### BEGIN SOLUTION``.
    Raises:
        ValueError: unbalanced markers (with the line).
    """
    out: list[str] = []
    inside = None   # line number of the open BEGIN
    for number, line in enumerate(text.split("\n"), start=1):
        prefix = "# " if line.startswith("# ") else ""     # a percent .py's Markdown line
        bare = line[len(prefix):].strip()
        if bare.startswith(BEGIN) or bare.startswith(END):
            opening = bare.startswith(BEGIN)
            if opening == (inside is not None):
                raise ValueError(f"{lesson}: line {number}: unbalanced {bare!r} in a written "
                                 "answer")
            inside = number if opening else None
            if opening:
                out.append(prefix + ANSWER_STUB)
        elif inside is None:
            out.append(line)
    if inside is not None:
        raise ValueError(f"{lesson}: line {inside}: {BEGIN} is never closed by {END}")
    return "\n".join(out)


def release_text(text: str, lesson: str) -> str:
    """A cell's (or a whole percent file's) student version: no solutions, no hidden tests."""
    student, _ = strip_solutions(strip_hidden_tests(text, lesson), lesson)
    return strip_answers(student, lesson)


def release_cell_source(cell: Cell, lesson: str) -> str:
    """The text a student receives for one cell (Markdown: the written answers stubbed)."""
    if cell.kind == "code":
        return release_text(cell.source, lesson)
    return strip_answers(cell.source, lesson)


def released_cells(cells: list[Cell], lesson: str) -> list[Cell]:
    """The cells a student receives (each through :func:`release_cell_source`)."""
    return [Cell(c.kind, release_cell_source(c, lesson), c.metadata) for c in cells]


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
    at its indentation, hidden tests are removed, stored outputs are cleared, and the
    .ipynb records its lesson (notebook metadata ``minircnn.lesson``) so that a renamed
    submission is still graded against the right source. Other files are not copied.

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
            text = release_text(path.read_text(encoding="utf-8"), path.stem)
        else:
            text = _release_ipynb(path)
        target = out / path.name
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written


def _release_ipynb(path: Path) -> str:
    _ipynb_cells(path.read_text(encoding="utf-8"), path)   # validates the structure
    nb = json.loads(path.read_text(encoding="utf-8"))
    nb.setdefault("metadata", {})["minircnn"] = {"lesson": path.stem}
    for cell in nb["cells"]:
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        if cell.get("cell_type") == "code":
            source = release_text(source, path.stem)
            cell["outputs"], cell["execution_count"] = [], None
        else:
            source = strip_answers(source, path.stem)
        lines = source.split("\n")
        cell["source"] = [line + "\n" for line in lines[:-1]] + [lines[-1]] if source else []
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
