"""The teacher's side, read once: lessons, their exercises and the hidden TESTs.

A test cell (nbgrader ``grade: true``) is one exercise. What a student sees of it (the
visible check) is never graded; the grade comes from the ``def grade_<name>(student,
rng)`` functions of its hidden block, each under a ``# TEST <title> (<k> points)``
comment. They run in the judge's process (:mod:`minircnn.classroom.grade_run`): they
draw inputs from ``rng``, call the student's functions through ``student``, compute the
expected values with the reference code, and assert. ``# forbid: a.b.c, d.e`` lines
name the library functions the student process must not have.

:class:`Course` reads every lesson file of the source folder into memory (with its
sha256) before the first submission runs; nothing reads or writes them afterwards.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from minircnn.classroom.assign import (
    LESSON,
    Cell,
    NotebookFormatError,
    cells_from_text,
    release_text,
)
from minircnn.classroom.grade_run import hidden_namespace
from minircnn.classroom.sandbox import Forbidden
from minircnn.utils.errors import UsageError

TEST = re.compile(r"^#\s*TEST\s+(?P<name>.+?)\s*\((?P<points>\d+(?:\.\d+)?)\s*points?\)\s*$")
GRADE_DEF = re.compile(r"^def\s+(?P<name>grade_\w+)\s*\(\s*student\s*,\s*rng\s*\)")
FORBID = re.compile(r"^#\s*forbid:\s*(?P<names>.*)$")
_HIDDEN = re.compile(r"^\s*### (BEGIN|END) HIDDEN TESTS")

__all__ = ["Course", "Exercise", "GradeError", "Lesson", "parse_exercise"]


class GradeError(UsageError):
    """The source lesson or the submission cannot be graded: what is wrong, what to do."""


@dataclass
class Exercise:
    """One test cell: its TESTs (title, grade function, points) and its hidden code."""

    id: str
    cell: int
    tests: list[tuple[str, str, float]]
    code: object                # the hidden block, compiled (line numbers kept)
    forbid: list[str] = field(default_factory=list)


def parse_exercise(cell: Cell, index: int, lesson: str) -> Exercise:
    """The TESTs and the compiled hidden block of a test cell.

    Raises:
        GradeError: no grade_id, no TEST, a TEST not followed by its ``def
            grade_<name>(student, rng)`` or outside the hidden block, or nbgrader
            ``points`` that differ from the TESTs' total.
    """
    if cell.grade_id is None:
        raise GradeError(f"{lesson}: test cell {index} has no nbgrader grade_id", "add one")
    where = f"{lesson}: test cell '{cell.grade_id}'"
    hidden_lines, tests, forbid = _split_cell(cell.source.split("\n"), where)
    if not tests:
        raise GradeError(f"{where} has no '# TEST <title> (<k> points)' in its hidden block",
                         "write its hidden TESTs as def grade_<name>(student, rng)")
    declared = cell.nbgrader.get("points")
    total = sum(points for _, _, points in tests)
    if declared is not None and float(declared) != total:
        raise GradeError(f"{where}: nbgrader points {declared} differ from its TESTs' "
                         f"total {total:g}", "make them equal")
    try:
        code = compile("\n".join(hidden_lines) + "\n", f"<hidden tests {lesson}/{cell.grade_id}>",
                       "exec")
    except SyntaxError as err:
        raise GradeError(f"{where}: its hidden block does not compile ({err})",
                         "fix the hidden tests") from err
    return Exercise(cell.grade_id, index, tests, code, forbid)


def _split_cell(lines: list[str], where: str):
    """(the hidden block's lines, blanks elsewhere; its TESTs; the forbidden names)."""
    hidden_lines, tests, forbid, hidden = [], [], [], False
    for number, line in enumerate(lines):
        if _HIDDEN.match(line):
            hidden = "BEGIN" in line
            hidden_lines.append("")
            continue
        hidden_lines.append(line if hidden else "")   # same line numbers in tracebacks
        if (match := FORBID.match(line.strip())) is not None:
            forbid += [n.strip() for n in match["names"].split(",") if n.strip()]
        if (match := TEST.match(line.strip())) is None:
            continue
        follows = next((ln for ln in lines[number + 1:] if ln.strip()), "")
        definition = GRADE_DEF.match(follows)
        if not hidden or definition is None:
            raise GradeError(f"{where}: '{line.strip()}' must sit in the hidden block right "
                             "above its 'def grade_<name>(student, rng):'",
                             "see lessons/README.md, 'Assignments'")
        tests.append((match["name"], definition["name"], float(match["points"])))
    return hidden_lines, tests, forbid


@dataclass
class Lesson:
    """A source lesson: its cells, exercises, forbidden functions and the file's hash."""

    name: str
    path: str
    sha256: str
    cells: list[Cell]
    exercises: list[Exercise]
    forbidden: Forbidden

    def program(self, answers: dict[str, Cell]) -> list[dict]:
        """What the student process runs: the released code cells before the last test
        cell, test cells left out, each solution cell replaced by the student's answer."""
        last = max((e.cell for e in self.exercises), default=0)
        steps = []
        for index, cell in enumerate(self.cells[:last]):
            if cell.kind != "code" or cell.is_test:
                continue
            answer = answers.get(cell.grade_id) if cell.is_solution else None
            source = answer.source if answer is not None else release_text(cell.source, self.name)
            steps.append({"cell": index, "source": source, "student": cell.is_solution})
        return steps


class Course:
    """The teacher's lessons folder, read into memory once: name -> Lesson."""

    def __init__(self, source_dir):
        folder = Path(source_dir)
        if not folder.is_dir():
            raise GradeError(f"source folder {folder} does not exist",
                             "pass the teacher's lessons folder with --source")
        texts = {}
        for path in sorted(folder.iterdir()):
            if path.suffix in (".py", ".ipynb") and LESSON.match(path.stem):
                texts.setdefault(path.stem, {})[path.suffix] = (path, path.read_bytes())
        self.folder = folder
        self.files = {stem: files.get(".py") or files[".ipynb"]   # jupytext .py: the source
                      for stem, files in texts.items()}
        self._lessons: dict[str, Lesson] = {}

    @property
    def names(self) -> list[str]:
        return sorted(self.files)

    def changed_on_disk(self) -> list[str]:
        """The lesson files whose bytes on disk are no longer what was read (and used)."""
        changed = []
        for path, data in self.files.values():
            try:
                now = path.read_bytes()
            except OSError:
                now = None
            if now != data:
                changed.append(str(path))
        return changed

    def hashes(self) -> dict[str, str]:
        return {str(path): hashlib.sha256(data).hexdigest() for path, data in self.files.values()}

    def lesson(self, name: str) -> Lesson:
        """The parsed lesson (parsed on first use). Raises GradeError if it cannot be graded."""
        if name not in self._lessons:
            self._lessons[name] = self._parse(name)
        return self._lessons[name]

    def _parse(self, name: str) -> Lesson:
        path, data = self.files[name]
        try:
            cells = cells_from_text(data.decode("utf-8"), path.suffix, str(path))
        except (UnicodeDecodeError, NotebookFormatError) as err:
            raise GradeError(f"cannot read source lesson {path}: {err}",
                             "fix the teacher's file") from err
        exercises = [parse_exercise(c, i, name) for i, c in enumerate(cells) if c.is_test]
        for exercise in exercises:
            _check_hidden(exercise, name)
        try:
            forbidden = Forbidden([n for e in exercises for n in e.forbid], name)
        except ValueError as err:
            raise GradeError(f"{name} {err}", "fix its '# forbid:' lines") from err
        return Lesson(name, str(path), hashlib.sha256(data).hexdigest(), cells, exercises,
                      forbidden)


def _check_hidden(exercise: Exercise, lesson: str) -> None:
    """The hidden block runs and defines every TEST's function (once, before grading)."""
    where = f"{lesson}: test cell '{exercise.id}'"
    try:
        namespace = hidden_namespace(exercise)
    except Exception as err:   # noqa: BLE001 - the teacher's code, reported as such
        raise GradeError(f"{where}: its hidden block raised {type(err).__name__}: {err}",
                         "fix the hidden tests") from err
    for _, function, _ in exercise.tests:
        if not callable(namespace.get(function)):
            raise GradeError(f"{where}: {function} is not defined", "fix the hidden tests")
