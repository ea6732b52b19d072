"""Grading student notebooks: the judge outside the student's process.

:func:`grade_batch` reads the teacher's lessons (:class:`~minircnn.classroom.lesson.Course`)
and every submission into memory first. For each submission it takes only the
**solution cells** (matched by nbgrader ``grade_id``, else by the functions they
define), starts a student process that runs the released lesson's code cells with
those answers (:mod:`minircnn.classroom.grade_run`), and runs the lesson's hidden
``grade_<name>(student, rng)`` TESTs *here*: inputs drawn from the teacher's secret,
expected values from the reference code, every comparison in this process. What the
student process prints, writes or rebinds cannot change a score; a submission that
crashes, hangs or sends garbage fails its own TESTs and nothing else. Every
submission gets a report, even one that cannot be read.
"""

from __future__ import annotations

import ast
import re
import tempfile
from pathlib import Path

from minircnn.classroom.assign import (
    Cell,
    NotebookFormatError,
    cells_from_text,
    checksum,
    notebook_metadata,
    released_cells,
)
from minircnn.classroom.grade_run import (
    PUBLIC_SECRET,
    Limits,
    StudentProcess,
    run_tests,
    sandbox_note,
)
from minircnn.classroom.lesson import Course, GradeError
from minircnn.classroom.report import ExerciseResult, GradeReport, TestResult
from minircnn.classroom.sandbox import check_hiding, hidden_folders

_TOP_DEF = re.compile(r"^(?:async\s+)?def\s+(?P<name>\w+)", re.MULTILINE)
# Modules and attributes an answer has no use for, but a cheat would: flagged for review.
_REVIEW = frozenset({"os", "sys", "gc", "inspect", "importlib", "ctypes", "subprocess",
                     "signal", "threading", "multiprocessing", "socket", "runpy", "atexit",
                     "exec", "eval", "compile", "open", "__import__"})
_REVIEW_ATTRIBUTES = frozenset({"__code__", "__globals__", "_getframe", "f_back", "settrace",
                                "_exit", "reload", "get_objects"})

__all__ = ["GradeError", "GradeReport", "Limits", "find_lesson", "grade", "grade_batch"]


class SubmissionError(GradeError):
    """A submission that cannot be read or matched: it gets a report of zeros, with why."""


def find_lesson(name: str, text: str, lessons: list[str]) -> str:
    """The lesson a submission answers: the release's metadata, else its file name."""
    recorded = notebook_metadata(text).get("minircnn", {}) if name.endswith(".ipynb") else {}
    if isinstance(recorded, dict) and recorded.get("lesson") in lessons:
        return recorded["lesson"]
    named = [stem for stem in lessons if stem in Path(name).stem]
    if named:
        return max(named, key=len)
    raise SubmissionError(f"cannot tell which lesson {name} answers",
                     "keep the released notebook's metadata or put the lesson's name in "
                     "the file name (e.g. alice_02_cnn_backprop.ipynb)")


def _answers(source: list[Cell], submitted: list[Cell]) -> dict[str, Cell]:
    """grade_id -> the submitted solution cell; by metadata, else by the functions it defines."""
    wanted = {c.grade_id: c for c in source if c.is_solution}
    found = {c.grade_id: c for c in submitted
             if c.kind == "code" and c.grade_id in wanted and c.nbgrader.get("solution")}
    for grade_id, cell in wanted.items():
        defs = frozenset(_TOP_DEF.findall(cell.source))
        if grade_id in found or not defs:
            continue
        same = [c for c in submitted if c.kind == "code" and not c.nbgrader
                and frozenset(_TOP_DEF.findall(c.source)) == defs]
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
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            used.update(n.split(".")[0] for n in names if n.split(".")[0] in _REVIEW)
        elif isinstance(node, ast.Name) and node.id in _REVIEW:
            used.add(node.id)
        elif isinstance(node, ast.Attribute) and node.attr in _REVIEW_ATTRIBUTES:
            used.add(node.attr)
    return sorted(used)


def _notes(lesson, submitted: list[Cell], answers: dict) -> list[str]:
    """Missing answers, cells that are not released cells, answers to review by hand."""
    notes = [f"solution cell '{c.grade_id}' is missing from the submission: the released "
             "stub ran instead"
             for c in lesson.cells if c.is_solution and c.grade_id not in answers]
    released = {checksum(c.source) for c in released_cells(lesson.cells, lesson.name)
                if c.kind == "code" and not c.is_solution}
    chosen = {id(c) for c in answers.values()}
    for index, cell in enumerate(submitted):
        if cell.kind == "code" and id(cell) not in chosen and cell.source.strip() \
                and checksum(cell.source) not in released:
            first = cell.source.strip().split("\n")[0][:60]
            notes.append(f"modified locked cell: submission cell {index} ({first!r}) is not a "
                         "released cell; it was not run and carries no points")
    for grade_id, cell in answers.items():
        if flagged := review_names(cell.source):
            notes.append(f"review by hand: solution cell '{grade_id}' uses {', '.join(flagged)}")
    return notes


def _empty_report(name: str, lesson, why: str) -> GradeReport:
    report = GradeReport(name, lesson.name if lesson else "?")
    for exercise in lesson.exercises if lesson else []:
        report.exercises.append(ExerciseResult(exercise.id, exercise.cell, [
            TestResult(title, function, points) for title, function, points in exercise.tests]))
    report.notes.append(why)
    report.fail_all(f"not run: {why}")
    return report


def _read(path: Path, course: Course):
    """(text, lesson name) of a submission, or raise SubmissionError."""
    if path.suffix not in (".ipynb", ".py"):
        raise SubmissionError(f"notebook must be .ipynb or .py, got {path}", "")
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SubmissionError(f"cannot read notebook {path}: {err}", "") from err
    return text, find_lesson(path.name, text, course.names)


def grade_one(name: str, text: str, lesson, limits: Limits, secret: str,
              hide: list[str]) -> GradeReport:
    """Grade one submission's text against a parsed lesson (see the module docstring)."""
    try:
        submitted = cells_from_text(text, Path(name).suffix, name)
    except NotebookFormatError as err:
        return _empty_report(name, lesson, f"cannot read the notebook: {err}")
    answers = _answers(lesson.cells, submitted)
    report = GradeReport(name, lesson.name, notes=_notes(lesson, submitted, answers))
    if not lesson.exercises:
        report.notes.append(f"lesson {lesson.name} has no graded exercise (no code cell with "
                            "nbgrader grade: true): nothing to run")
        return report
    process = StudentProcess(lesson, lesson.program(answers), limits, hide)
    try:
        for exercise in lesson.exercises:
            report.exercises.append(run_tests(exercise, process, secret, lesson.name))
    finally:
        report.output = process.close()
    report.notes = process.notes + report.notes
    return report


def _read_all(paths: list[Path], course: Course) -> list[tuple]:
    """(text, lesson, None) per submission, or (None, None, why it cannot be read)."""
    read = []
    for path in paths:
        try:
            text, name = _read(path, course)
        except SubmissionError as err:
            read.append((None, None, str(err)))
            continue
        read.append((text, course.lesson(name), None))   # a broken lesson: grade nobody
    return read


def _folders_to_hide(course: Course, paths: list[Path], hide) -> list[str]:
    """The teacher's folders the student processes must not see; checked to work."""
    folders = hidden_folders([course.folder, *(p.parent for p in paths), *map(Path, hide),
                              Path.cwd()], keep=[Path(tempfile.gettempdir())])
    try:
        check_hiding(folders)
    except RuntimeError as err:
        raise GradeError(str(err), "grade inside a container with "
                         "MINIRCNN_GRADE_SANDBOX=session (lessons/README.md)") from err
    return folders


def grade_batch(submissions, source_dir, limits: Limits | None = None,
                secret: str | None = None, hide=()) -> list[GradeReport]:
    """Grade every submission against the lessons in ``source_dir``; one report each.

    The teacher's files are read (and hashed) before the first submission runs.
    ``secret`` seeds the hidden inputs (None: the public seed, and the report says so);
    ``hide``: more folders the student process must not see (the gradebook's).
    Raises:
        GradeError: the source folder or a lesson cannot be graded (nothing ran).
    """
    limits, course = limits or Limits(), Course(source_dir)
    paths = [Path(p) for p in submissions]
    read = _read_all(paths, course)
    folders = _folders_to_hide(course, paths, hide)
    reports = []
    for path, (text, lesson, error) in zip(paths, read, strict=True):
        if error is not None:
            report = _empty_report(str(path), lesson, error)
        else:
            report = grade_one(str(path), text, lesson, limits, secret or PUBLIC_SECRET, folders)
        report.sandbox, report.sources = sandbox_note(), course.hashes()
        report.seed = "secret" if secret else "public"
        if not secret:
            report.notes.append("public tests: no --secret / MINIRCNN_GRADE_SECRET was given, "
                                "so the hidden inputs are the ones anyone can compute")
        reports.append(report)
    for path in course.changed_on_disk():   # by someone else: the grader never writes them
        for report in reports:
            report.notes.append(f"the teacher's file {path} changed on disk during grading; "
                                "the copy read before the first submission was used")
    return reports


def grade(submission, source_dir, limits: Limits | None = None,
          secret: str | None = None) -> GradeReport:
    """Grade one submission (see :func:`grade_batch`)."""
    return grade_batch([submission], source_dir, limits, secret)[0]
