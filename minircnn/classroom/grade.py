"""Grading student notebooks against the teacher's source lessons (nbgrader's model).

:func:`grade` takes from a submission only its **solution cells** (matched to the
source's by nbgrader ``grade_id``), splices them into the source lesson in place of
the solutions, and runs the result in a fresh Python process (:mod:`minircnn.classroom.grade_child`)
with the source's own test cells, hidden tests included. Everything else the student
changed or added is reported as a "modified locked cell" and never runs. Each test is a
``# TEST <name> (<points> points)`` block of a test cell; a test earns its points when
it runs without an exception. Limits: a time limit per exercise (each student cell and
each test cell), one per notebook, an address-space limit; whatever happens to the
child, :func:`grade` returns a report where unfinished tests score 0 with the reason.

The report's ``to_json()`` is ``{"notebook", "lesson", "score", "max_score",
"exercises": [{"id", "score", "max_score", "status", "message", "tests": [...]}],
"notes"}``; ``status`` is one of passed, partial, failed, timeout, crashed, not run.
"""

from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from minircnn.classroom.assign import (
    Cell,
    NotebookFormatError,
    checksum,
    read_cells,
    read_notebook_metadata,
    released_cells,
    strip_solutions,
)
from minircnn.classroom.grade_run import Limits, run_plan
from minircnn.utils.errors import UsageError

TEST = re.compile(r"^#\s*TEST\s+(?P<name>.+?)\s*\((?P<points>\d+(?:\.\d+)?)\s*points?\)\s*$")
FORBID = re.compile(r"^#\s*forbid:\s*(?P<names>.*)$")
_HIDDEN = re.compile(r"^\s*### (BEGIN|END) HIDDEN TESTS")
_TOP_DEF = re.compile(r"^(?:async\s+)?def\s+(?P<name>\w+)", re.MULTILINE)
# Modules, builtins and attributes an exercise's answer has no use for, but a forged
# result would: a solution that uses them is flagged for the teacher to read.
_REVIEW_MODULES = frozenset({"os", "sys", "gc", "inspect", "importlib", "builtins", "ctypes",
                             "subprocess", "signal", "threading", "multiprocessing", "socket",
                             "shutil"})
_REVIEW_BUILTINS = frozenset({"exec", "eval", "compile", "open", "globals", "setattr",
                              "__import__", "__builtins__"})
_REVIEW_ATTRIBUTES = frozenset({"__code__", "__globals__", "__builtins__", "_getframe",
                                "f_back", "f_globals", "settrace", "setprofile", "_exit",
                                "reload"})

__all__ = ["GradeError", "GradeReport", "Limits", "grade", "parse_test_cell"]


class GradeError(UsageError):
    """The source lesson or the submission cannot be graded: what is wrong, what to do."""


@dataclass
class TestResult:
    name: str
    max_points: float
    hidden: bool
    line: int                 # first line of the test's code in its cell
    source: str
    error: str | None = "not run"

    @property
    def points(self) -> float:
        return self.max_points if self.error is None else 0.0


@dataclass
class ExerciseResult:
    """One test cell of the source: an exercise, its tests and what became of them."""

    id: str
    cell: int
    setup: str
    forbid: list[str]
    tests: list[TestResult]
    status: str = "not run"
    message: str = ""

    @property
    def score(self) -> float:
        return sum(t.points for t in self.tests)

    @property
    def max_score(self) -> float:
        return sum(t.max_points for t in self.tests)


@dataclass
class GradeReport:
    """What :func:`grade` found: per-exercise results and notes on the submission."""

    notebook: str
    lesson: str
    exercises: list[ExerciseResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    output: str = ""          # the tail of what the notebook printed

    @property
    def score(self) -> float:
        return sum(e.score for e in self.exercises)

    @property
    def max_score(self) -> float:
        return sum(e.max_score for e in self.exercises)

    def to_json(self) -> dict:
        return {"notebook": self.notebook, "lesson": self.lesson, "score": self.score,
                "max_score": self.max_score, "notes": self.notes,
                "exercises": [{"id": e.id, "score": e.score, "max_score": e.max_score,
                               "status": e.status, "message": e.message,
                               "tests": [{"name": t.name, "points": t.points,
                                          "max_points": t.max_points, "hidden": t.hidden,
                                          "error": t.error} for t in e.tests]}
                              for e in self.exercises]}

    def format_table(self) -> str:
        """Plain text: one row per test (grouped by exercise), notes, ``score: X/Y``."""
        rows = [f"{self.notebook} (lesson {self.lesson})"]
        for e in self.exercises:
            rows.append(f"{e.id}: {_num(e.score)}/{_num(e.max_score)} {e.status}"
                        + (f" - {e.message}" if e.message else ""))
            for t in e.tests:
                result = "ok" if t.error is None else f"FAIL {t.error}"
                hidden = " (hidden)" if t.hidden else ""
                rows.append(f"  {_num(t.points):>3}/{_num(t.max_points):<3} "
                            f"{t.name}{hidden}: {result}")
        rows += [f"note: {note}" for note in self.notes]
        rows.append(f"score: {_num(self.score)}/{_num(self.max_score)}")
        return "\n".join(rows)


def _num(x: float) -> str:
    return f"{x:g}"


# --------------------------------------------------------------------------------------
# The source lesson: its test cells.
# --------------------------------------------------------------------------------------
def parse_test_cell(cell: Cell, index: int) -> ExerciseResult:
    """Split a test cell into setup (before the first ``# TEST``) and its tests.

    ``# forbid: a.b.c, d.e`` lines in the setup list the functions the tests guard.
    Raises:
        GradeError: no grade_id, no ``# TEST`` block, or metadata ``points`` that differ
            from the sum of the blocks' points.
    """
    if cell.grade_id is None:
        raise GradeError(f"test cell {index} has no nbgrader grade_id", "add one")
    setup, tests, forbid, hidden = [], [], [], False
    for number, line in enumerate(cell.source.split("\n"), start=1):
        if _HIDDEN.match(line):
            hidden = "BEGIN" in line
        if (match := TEST.match(line.strip())) is not None:
            tests.append(TestResult(match["name"], float(match["points"]), hidden, number + 1, ""))
        elif tests:
            tests[-1].source += line + "\n"
        else:
            setup.append(line)
            if (match := FORBID.match(line.strip())) is not None:
                forbid += [n.strip() for n in match["names"].split(",") if n.strip()]
    exercise = ExerciseResult(cell.grade_id, index, "\n".join(setup), forbid, tests)
    declared = cell.nbgrader.get("points")
    if not tests:
        raise GradeError(f"test cell '{cell.grade_id}' has no '# TEST <name> (<n> points)' "
                         "line", "split its asserts into named tests")
    if declared is not None and float(declared) != exercise.max_score:
        raise GradeError(f"test cell '{cell.grade_id}': nbgrader points {declared} differ "
                         f"from its tests' total {exercise.max_score:g}", "make them equal")
    return exercise


def _check_forbidden(exercise: ExerciseResult) -> None:
    from minircnn.classroom.grade_child import guardable, resolve

    for name in exercise.forbid:
        try:
            target = resolve(name)
        except (ImportError, AttributeError) as err:
            raise GradeError(f"exercise '{exercise.id}' forbids {name}, which does not "
                             f"exist ({err})", "fix the '# forbid:' line") from err
        if not guardable(target):
            raise GradeError(f"exercise '{exercise.id}' forbids {name}, which is not a plain "
                             "Python function", "name the function it calls")


def find_lesson(submission: Path, source_dir: Path) -> str:
    """The source lesson a submission answers: the release's metadata, else its name."""
    lessons = sorted({p.stem for p in source_dir.iterdir()
                      if p.suffix in (".py", ".ipynb") and re.match(r"^\d\d_\w+$", p.stem)})
    recorded = read_notebook_metadata(submission).get("minircnn", {})
    if isinstance(recorded, dict) and recorded.get("lesson") in lessons:
        return recorded["lesson"]
    named = [stem for stem in lessons if stem in submission.stem]
    if named:
        return max(named, key=len)
    raise GradeError(f"cannot tell which lesson of {source_dir} {submission} answers",
                     "keep the released notebook's metadata or put the lesson's name in "
                     "the file name (e.g. alice_02_cnn_backprop.ipynb)")


def _source_cells(source_dir: Path, lesson: str) -> list[Cell]:
    for suffix in (".py", ".ipynb"):   # the jupytext .py is the source of truth
        if (source_dir / f"{lesson}{suffix}").is_file():
            return read_cells(source_dir / f"{lesson}{suffix}")
    raise GradeError(f"{source_dir} has no {lesson}.py or .ipynb",
                     "pass the teacher's lessons folder with --source")


# --------------------------------------------------------------------------------------
# The submission: its solution cells, and what else changed.
# --------------------------------------------------------------------------------------
def _top_defs(source: str) -> frozenset:
    return frozenset(_TOP_DEF.findall(source))


def _solutions(source: list[Cell], submitted: list[Cell]) -> dict[str, Cell]:
    """grade_id -> the submitted cell; by metadata, else by the functions it defines."""
    wanted = {c.grade_id: c for c in source if c.is_solution}
    found = {c.grade_id: c for c in submitted
             if c.kind == "code" and c.grade_id in wanted and c.nbgrader.get("solution")}
    for grade_id, cell in wanted.items():
        defs = _top_defs(cell.source)
        if grade_id in found or not defs:
            continue
        same = [c for c in submitted if c.kind == "code" and not c.nbgrader
                and _top_defs(c.source) == defs]
        if same:
            found[grade_id] = same[-1]
    return found


def review_names(source: str) -> list[str]:
    """The suspicious modules, builtins and attributes a solution cell uses, sorted."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return ["(does not parse)"]
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            used.update(m.split(".")[0] for m in modules if m.split(".")[0] in _REVIEW_MODULES)
        elif isinstance(node, ast.Name) and node.id in _REVIEW_BUILTINS | _REVIEW_MODULES:
            used.add(node.id)
        elif isinstance(node, ast.Attribute) and node.attr in _REVIEW_ATTRIBUTES:
            used.add(node.attr)
    return sorted(used)


def _locked_notes(source: list[Cell], submitted: list[Cell], solutions: dict,
                  lesson: str) -> list[str]:
    """"modified locked cell" notes: submitted code cells no released cell matches."""
    released = {checksum(c.source) for c in released_cells(source, lesson)
                if c.kind == "code" and not c.is_solution}
    answers = {id(c) for c in solutions.values()}
    notes = []
    for index, cell in enumerate(submitted):
        if cell.kind != "code" or id(cell) in answers or not cell.source.strip():
            continue
        if checksum(cell.source) not in released:
            first = cell.source.strip().split("\n")[0][:60]
            notes.append(f"modified locked cell: submission cell {index} ({first!r}) is not "
                         "a released cell; it was not run and carries no points")
    return notes


# --------------------------------------------------------------------------------------
# Grading.
# --------------------------------------------------------------------------------------
def prepare(submission: str | os.PathLike, source_dir: str | os.PathLike):
    """Read and match everything before running: (report, the steps to run).

    Raises:
        GradeError: no such source folder or lesson, malformed test cells.
        NotebookFormatError: the submission or the source cannot be read.
    """
    path, src = Path(submission), Path(source_dir)
    if not src.is_dir():
        raise GradeError(f"source folder {src} does not exist",
                         "pass the teacher's lessons folder with --source")
    if not path.is_file():
        raise NotebookFormatError(f"cannot read notebook {path}: no such file")
    lesson = find_lesson(path, src)
    source, submitted = _source_cells(src, lesson), read_cells(path)
    solutions = _solutions(source, submitted)
    report = GradeReport(str(submission), lesson)
    report.notes += _locked_notes(source, submitted, solutions, lesson)
    return report, _plan(source, solutions, report, lesson)


def _plan(source: list[Cell], solutions: dict, report: GradeReport, lesson: str) -> list:
    """The steps the child runs: source cells up to the last test cell, answers spliced in."""
    last_test = max((i for i, c in enumerate(source) if c.is_test), default=-1)
    steps = []
    for index, cell in enumerate(source[:last_test + 1]):
        if cell.kind != "code":
            continue
        if cell.is_test:
            exercise = parse_test_cell(cell, index)
            _check_forbidden(exercise)
            report.exercises.append(exercise)
            steps.append({"kind": "test", "cell": index, "exercise": exercise.id,
                          "setup": exercise.setup, "forbid": exercise.forbid,
                          "tests": [{"source": t.source, "line": t.line}
                                    for t in exercise.tests]})
        elif cell.is_solution:
            answer = solutions.get(cell.grade_id)
            if answer is None:
                report.notes.append(f"solution cell '{cell.grade_id}' is missing from the "
                                    "submission: the released stub ran instead")
            text = answer.source if answer else strip_solutions(cell.source, lesson)[0]
            if answer is not None and (flagged := review_names(text)):
                report.notes.append(f"review by hand: solution cell '{cell.grade_id}' uses "
                                    f"{', '.join(flagged)}")
            steps.append({"kind": "solution", "cell": index, "source": text,
                          "grade_id": cell.grade_id})
        else:
            steps.append({"kind": "setup", "cell": index, "source": cell.source})
    if not report.exercises:
        raise GradeError(f"source lesson {lesson} has no test cell (nbgrader grade: true)",
                         "mark the cells that test its exercises")
    return steps


def grade(submission: str | os.PathLike, source_dir: str | os.PathLike,
          limits: Limits | None = None) -> GradeReport:
    """Grade one submission against the source lessons in ``source_dir``.

    Raises:
        GradeError, NotebookFormatError: see :func:`prepare`; never for what the
            submission's code does.
    """
    report, steps = prepare(submission, source_dir)
    run_plan(steps, report, limits or Limits())
    return report
