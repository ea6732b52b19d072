"""A class gradebook: grade reports as one CSV row per submission.

The judge writes it once, after every student process of the batch is dead, from its
own reports, atomically (``utils.fileio.atomic_write``): a reader sees the old file or
the whole new one, never a half-written or a student-edited one.
"""

from __future__ import annotations

import csv
import io
import os

from minircnn.utils.fileio import atomic_write


def csv_columns(reports) -> list[str]:
    """Exercise columns in lesson order: ``id`` for one lesson, ``lesson/id`` for several."""
    lessons = list(dict.fromkeys(r.lesson for r in reports))
    columns = []
    for report in reports:
        for exercise in report.exercises:
            name = exercise.id if len(lessons) == 1 else f"{report.lesson}/{exercise.id}"
            if name not in columns:
                columns.append(name)
    return columns


def write_csv(reports, path: str | os.PathLike) -> None:
    """``notebook,lesson,<exercise>...,score,max_score``; an exercise a row's lesson
    does not have is left empty."""
    columns = csv_columns(reports)
    several = len({r.lesson for r in reports}) > 1
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["notebook", "lesson", *columns, "score", "max_score"])
    for report in reports:
        scores = {(f"{report.lesson}/{e.id}" if several else e.id): f"{e.score:g}"
                  for e in report.exercises}
        writer.writerow([report.notebook, report.lesson, *(scores.get(c, "") for c in columns),
                         f"{report.score:g}", f"{report.max_score:g}"])
    with atomic_write(path, "w") as f:
        f.write(buffer.getvalue())
