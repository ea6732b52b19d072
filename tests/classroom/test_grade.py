"""minircnn.classroom.grade: the judge's TESTs, its reports, gradebook and CLI, its errors."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minircnn.classroom.grade import GradeError, Limits, grade, grade_batch
from minircnn.classroom.grade_run import test_rng as draw_rng
from minircnn.classroom.sandbox import Forbidden, resolve
from minircnn.cli.main import main

FAST = Limits(exercise_s=10, notebook_s=60, memory_mb=2048)


def _scores(report) -> dict:
    return {e.id: (e.score, e.status) for e in report.exercises}


def test_release_strips_solutions_and_hidden_tests(course):
    text = (course[1] / "07_tiny.py").read_text(encoding="utf-8")
    assert "HIDDEN" not in text and "grade_random" not in text and "2 * x" not in text
    assert "assert double(3) == 6" in text and '"grade_id": "area"' in text


def test_the_secret_draws_the_hidden_inputs():
    a = draw_rng("key", "07_tiny", "area", "random boxes").random(3)
    assert np.array_equal(a, draw_rng("key", "07_tiny", "area", "random boxes").random(3))
    for other in (("key2", "07_tiny", "area", "random boxes"),
                  ("key", "07_tiny", "area", "two boxes by hand"),
                  ("key", "07_tiny", "double", "random boxes")):
        assert not np.array_equal(a, draw_rng(*other).random(3)), other


def test_a_forbidden_minircnn_function_is_a_stub_in_the_package_copy():
    forbidden = Forbidden(["minircnn.detection.boxes.box_area",
                           "minircnn.training.optim.SGD.step"], "07_tiny")
    boxes = forbidden.sources["detection/boxes.py"]
    namespace = {}
    exec(compile(boxes, "boxes.py", "exec"), namespace)   # the rewritten module still loads
    with pytest.raises(RuntimeError, match="box_area is off limits in lesson 07_tiny"):
        namespace["box_area"](np.zeros((1, 4)))
    assert namespace["box_iou"] is not None and "def box_area(boxes)" in boxes
    original = resolve("minircnn.detection.boxes.box_area").__code__.co_filename
    assert len(boxes.split("\n")) == len(Path(original).read_text().split("\n"))  # same lines
    assert "SGD.step is off limits" in forbidden.sources["training/optim.py"]
    assert Forbidden(["numpy.pad"], "x").swapped == ["numpy.pad"]   # a dispatcher's function
    with pytest.raises(ValueError, match="not a plain Python function"):
        Forbidden(["numpy.add"], "x")


def test_json_report_honest_empty_and_public_seed_note(course, tiny, tmp_path):
    honest = tiny.write_student(tmp_path, "alice", tiny.honest_text(course))
    reports = grade_batch([honest, course[1] / "07_tiny.py"], course[0], FAST)
    alice, empty = (r.to_json() for r in reports)
    assert (alice["score"], alice["max_score"], empty["score"]) == (5, 5, 0)
    assert [(e["id"], e["status"]) for e in alice["exercises"]] == [
        ("double", "passed"), ("area", "passed")]
    assert empty["exercises"][0]["message"].startswith(
        "small numbers: double raised NotImplementedError: 07_tiny: double")
    assert alice["seed"] == "public" and any("public tests" in n for n in alice["notes"])
    assert list(alice["sources"].values())[0] == reports[0].sources[str(course[0] / "07_tiny.py")]
    assert "never run by the grader" not in reports[0].output


def test_cli_gradebook_json_and_secret(course, tiny, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "submissions"
    folder.mkdir()
    honest = tiny.honest_text(course)
    bob = tiny.swap(honest, "return x + x", "return abs(x) * 2")
    files = [tiny.write_student(folder, "alice", honest), tiny.write_student(folder, "bob", bob),
             tiny.write_student(folder, "carol", (course[1] / "07_tiny.py").read_text()),
             folder / "dave_07_tiny.ipynb"]
    files[3].write_text("{not json")                                 # unreadable: a row anyway
    book = tmp_path / "book" / "grades.csv"
    monkeypatch.setenv("MINIRCNN_GRADE_SECRET", "s3cret")
    argv = ["grade", *map(str, files), "--source", str(course[0]), "--csv", str(book),
            "--time-limit", "10", "--json"]
    assert main(argv) == 0
    reports = json.loads(capsys.readouterr().out)
    assert book.read_text().splitlines() == [
        "notebook,lesson,double,area,score,max_score",
        f"{files[0]},07_tiny,3,2,5,5", f"{files[1]},07_tiny,1,2,3,5",
        f"{files[2]},07_tiny,0,0,0,5", f"{files[3]},07_tiny,0,0,0,5"]
    assert [r["seed"] for r in reports] == ["secret"] * 4
    bob = reports[1]["exercises"][0]
    assert bob["status"] == "partial" and "2 x for an array" in bob["message"]
    assert reports[3]["exercises"][0]["message"].startswith(
        "small numbers: not run: cannot read the notebook")


def test_cli_text_report(course, tiny, tmp_path, capsys):
    honest = tiny.write_student(tmp_path, "alice", tiny.honest_text(course))
    assert main(["grade", str(honest), "--source", str(course[0]), "--secret", "k"]) == 0
    printed = capsys.readouterr().out
    assert "  2/2   random arrays and negative numbers: ok" in printed
    assert "score: 5/5" in printed and "public tests" not in printed
    assert "\nsandbox: namespace: " in printed or "\nsandbox: session: " in printed


def test_cli_grade_errors(course, tmp_path, capsys):
    good = str(course[1] / "07_tiny.py")
    assert main(["grade", good, "--source", str(tmp_path / "nowhere")]) == 2
    assert "minircnn grade: error: source folder" in capsys.readouterr().err


def _source(tmp_path, text):
    (tmp_path / "src").mkdir(exist_ok=True)
    (tmp_path / "src" / "07_tiny.py").write_text(text)
    return tmp_path / "src"


@pytest.mark.parametrize("old, new, match", [
    ('"grade_id": "double", "locked": true, "points": 3',
     '"grade_id": "double", "locked": true, "points": 4', "points 4 differ from its TESTs'"),
    ("boxes.box_area\n", "boxes.box_aera\n", "forbids minircnn.detection.boxes.box_aera"),
    ("assert double(3) == 6\n", "# TEST visible (1 point)\nassert 1\n",
     "must sit in the hidden block"),
    ("def grade_small(student, rng):", "def small(student, rng):", "right above its 'def grade_"),
    ("from minircnn.detection.boxes import box_area\n",
     "from minircnn.detection.boxes import no_such_thing\n", "its hidden block raised ImportError"),
], ids=["points", "forbid typo", "visible TEST", "no grade def", "hidden block raises"])
def test_source_errors_name_the_fix(tmp_path, course, tiny, old, new, match):
    with pytest.raises(GradeError, match=match):
        grade(course[1] / "07_tiny.py", _source(tmp_path, tiny.swap(tiny.LESSON, old, new)), FAST)


def test_the_readme_recipe_runs_where_unshare_works(course, tiny, tmp_path):
    """lessons/README.md's tested recipe, on the tiny course: a user namespace without
    network around the whole grader, the student processes nested inside it."""
    readme = (Path(__file__).resolve().parents[2] / "lessons" / "README.md").read_text()
    line = readme.split("<!-- tested recipe -->\n```bash\n")[1].split("\n```")[0]
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "--user", "--map-root-user", "--net", "true"], check=False).returncode:
        pytest.skip("unshare is refused here: the recipe is for hosts that allow it")
    for folder in ("submissions", "grades"):
        (tmp_path / folder).mkdir()
    shutil.copytree(course[0], tmp_path / "lessons")
    tiny.write_student(tmp_path / "submissions", "alice", tiny.honest_text(course))
    root = Path(__file__).resolve().parents[2]   # this checkout: the minircnn it tests
    env = dict(os.environ, MINIRCNN_GRADE_SECRET="k", PYTHONPATH=str(root),
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    done = subprocess.run(["sh", "-c", line], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "score: 5/5" in done.stdout and "sandbox" not in done.stderr
    rows = (tmp_path / "grades" / "grades.csv").read_text().splitlines()
    assert rows[1].endswith(",07_tiny,3,2,5,5"), rows


def test_a_lesson_without_graded_exercises_gives_an_empty_report(tmp_path, course, tiny):
    text = tiny.LESSON.split("# %% nbgrader")[0]                  # the setup cell only
    source = _source(tmp_path, text)
    report = grade(tiny.write_student(tmp_path, "alice", text), source, FAST)
    assert (report.score, report.max_score, report.exercises) == (0, 0, [])
    assert any("has no graded exercise" in n for n in report.notes), report.notes
