"""What grading found: per-TEST results, per-exercise scores, notes; as JSON and as text.

``GradeReport.to_json()`` is the contract of ``minircnn grade --json``::

    {"notebook", "lesson", "score", "max_score",
     "exercises": [{"id", "score", "max_score", "status", "message", "tests": [...]}],
     "notes", "sandbox", "seed", "sources"}

``status`` is one of passed, partial, failed, timeout, crashed, not run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ExerciseResult", "GradeReport", "TestResult"]


@dataclass
class TestResult:
    """One ``# TEST <title> (<k> points)``: all or nothing."""

    name: str          # the title
    function: str      # grade_<name>
    max_points: float
    error: str | None = "not run"

    @property
    def points(self) -> float:
        return self.max_points if self.error is None else 0.0


@dataclass
class ExerciseResult:
    """One test cell of the source: an exercise, its TESTs and what became of them."""

    id: str
    cell: int
    tests: list[TestResult]
    status: str = "not run"
    message: str = ""

    @property
    def score(self) -> float:
        return sum(t.points for t in self.tests)

    @property
    def max_score(self) -> float:
        return sum(t.max_points for t in self.tests)

    def settle(self) -> None:
        """status and message from the TESTs' errors."""
        failed = [t for t in self.tests if t.error is not None]
        kinds = {t.error.split(":")[0] for t in failed}
        if not failed:
            self.status = "passed"
        elif len(failed) < len(self.tests):
            self.status = "partial"
        elif kinds <= {"timeout", "crashed", "not run"} and len(kinds) == 1:
            self.status = kinds.pop()
        else:
            self.status = "failed"
        self.message = f"{failed[0].name}: {failed[0].error}" if failed else ""


@dataclass
class GradeReport:
    """One submission's grades."""

    notebook: str
    lesson: str
    exercises: list[ExerciseResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    output: str = ""          # the tail of what the notebook printed
    sandbox: str = ""
    seed: str = ""
    sources: dict = field(default_factory=dict)   # teacher file -> sha256

    @property
    def score(self) -> float:
        return sum(e.score for e in self.exercises)

    @property
    def max_score(self) -> float:
        return sum(e.max_score for e in self.exercises)

    def fail_all(self, reason: str) -> None:
        """Every TEST not yet graded scores 0 with ``reason``."""
        for exercise in self.exercises:
            for test in exercise.tests:
                if test.error == "not run":
                    test.error = reason
            exercise.settle()

    def to_json(self) -> dict:
        return {"notebook": self.notebook, "lesson": self.lesson, "score": self.score,
                "max_score": self.max_score,
                "exercises": [{"id": e.id, "score": e.score, "max_score": e.max_score,
                               "status": e.status, "message": e.message,
                               "tests": [{"name": t.name, "points": t.points,
                                          "max_points": t.max_points, "error": t.error}
                                         for t in e.tests]}
                              for e in self.exercises],
                "notes": self.notes, "sandbox": self.sandbox, "seed": self.seed,
                "sources": self.sources}

    def format_table(self) -> str:
        """Plain text: one row per TEST (grouped by exercise), notes, ``score: X/Y``."""
        rows = [f"{self.notebook} (lesson {self.lesson})"]
        for e in self.exercises:
            rows.append(f"{e.id}: {_num(e.score)}/{_num(e.max_score)} {e.status}")
            for t in e.tests:
                result = "ok" if t.error is None else f"FAIL {t.error}"
                rows.append(f"  {_num(t.points):>3}/{_num(t.max_points):<3} {t.name}: {result}")
        rows += [f"note: {note}" for note in self.notes]
        if self.sandbox:
            rows.append(f"sandbox: {self.sandbox}")
        rows.append(f"score: {_num(self.score)}/{_num(self.max_score)}")
        return "\n".join(rows)


def _num(x: float) -> str:
    return f"{x:g}"
