"""minircnn.classroom.sandbox: what the student process can see, asked from inside it.

A student function ``look()`` reports its world as plain data; the test reads the reply.
"""

import os
import sys
import tempfile
from pathlib import Path

import pytest

from minircnn.classroom.grade_run import Limits, StudentProcess
from minircnn.classroom.lesson import Course
from minircnn.classroom.sandbox import PACKAGE_DIR, hidden_folders, sandbox_mode

LOOK = '''\
import inspect, os, sys
import minircnn.detection.boxes as boxes_module


def look(source):
    try:
        boxes_module.box_area([[0.0, 0.0, 1.0, 1.0]])
        forbidden = "callable"
    except RuntimeError as err:
        forbidden = str(err)
    listing = os.listdir(source) if os.path.isdir(source) else None
    try:
        open(os.path.join(source, "planted.py"), "w").close()
        writable = True
    except OSError:
        writable = False
    import threading
    worker = threading.Thread(target=lambda: None)   # threads count against RLIMIT_NPROC
    worker.start()
    worker.join()
    return {"env": sorted(os.environ), "argv": list(sys.argv), "ppid": os.getppid(),
            "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
            "cmdline": open("/proc/self/cmdline", "rb").read().decode().split("\\0"),
            "source": listing, "writable": writable, "forbidden": forbidden,
            "source_code": inspect.getsource(boxes_module.box_area),
            "package": os.path.dirname(os.path.dirname(boxes_module.__file__)),
            "original": os.path.exists(os.path.join({original!r}, "detection", "boxes.py"))}
'''


@pytest.fixture(scope="module", params=["best", "session"])
def world(course, request):
    """What look() saw: in the best sandbox here, and in the session-only fallback."""
    lesson = Course(course[0]).lesson("07_tiny")
    look = LOOK.replace("{original!r}", repr(str(PACKAGE_DIR)))
    hide = hidden_folders([course[0]], keep=[Path(tempfile.gettempdir())])
    process = StudentProcess(lesson, [{"cell": 1, "source": look, "student": True}],
                             Limits(exercise_s=30), hide)
    os.environ["MINIRCNN_GRADE_SECRET"] = "the teacher's"    # the judge's environment only
    if request.param == "session":
        os.environ["MINIRCNN_GRADE_SANDBOX"] = "session"
    sandbox_mode.cache_clear()
    try:
        return process.call("look", (str(course[0]),), {}) | {"mode": sandbox_mode()}
    finally:
        for name in ("MINIRCNN_GRADE_SECRET", "MINIRCNN_GRADE_SANDBOX"):
            os.environ.pop(name, None)
        sandbox_mode.cache_clear()
        process.close()


def test_no_teacher_path_secret_or_reference_reaches_the_student(world, course):
    given = {"HOME", "LANG", "MPLBACKEND", "MPLCONFIGDIR", "MKL_NUM_THREADS", "OMP_NUM_THREADS",
             "OPENBLAS_NUM_THREADS", "PATH", "PYTHONDONTWRITEBYTECODE", "TQDM_DISABLE"}
    assert set(world["env"]) - {"PWD"} == given     # sh sets PWD: the student's own folder
    assert not any(str(course[0]) in a for a in world["cmdline"] + world["argv"])
    assert world["cmdline"][:2] == [sys.executable, "-I"]
    assert "box_area is off limits in lesson 07_tiny" in world["forbidden"]
    assert "off limits" in world["source_code"] and "x2 - x1" not in world["source_code"]
    assert world["package"] != str(PACKAGE_DIR.parent)               # a copy, elsewhere


def test_in_the_namespaces_the_teachers_folders_are_gone(world):
    if world["mode"] != "namespace":
        pytest.skip("no user namespaces: the teacher's container is the sandbox")
    assert world["source"] == [] and not world["writable"]        # an empty read-only tmpfs
    assert not world["original"]                                  # the installed package too
    assert world["ppid"] == 0 and world["pids"] == [1]            # its own PID namespace


def test_the_session_fallback_says_so(world):
    assert world["mode"] in ("namespace", "session")
    if world["mode"] == "session":                 # the files are there: said in the report
        assert world["source"] is not None and world["ppid"] != 0
