"""Where the student process runs: no answers, a scrubbed environment, namespaces.

Where the student process runs: a package without the answers, a scrubbed environment,
and (where Linux allows) namespaces that hide the teacher's files.

* **The package the student imports** is a copy of minircnn in the submission's own
  temporary folder in which every forbidden function's body is replaced by
  ``raise RuntimeError("... is off limits ...")`` in the *source*. Nothing in the
  student process holds the reference code: ``importlib.reload``, ``runpy.run_module``,
  ``gc.get_objects()`` or reading the module file all find the stub. (Forbidden
  functions outside minircnn, e.g. a NumPy routine a "write the loops" exercise rules
  out, get their ``__code__`` swapped in the student process instead.)
* **The environment** holds only PATH, HOME (the work folder), the locale and the
  BLAS/matplotlib settings; Python runs isolated (``-I``: no PYTHONPATH, no user site).
* **The namespaces** (``unshare --user --map-root-user --mount --pid --net``): the
  teacher's source folder, the installed package, the submissions' and the gradebook's
  folders are covered by empty tmpfs mounts; ``/proc`` shows only the student's own
  processes; there is no network; killing the namespace's first process kills every
  process the student started. Where ``unshare`` is refused, the child runs in its own
  session only, and the report says the sandbox is the teacher's container. The tmpfs
  mounts are made in an outer namespace and the student runs in an inner one, where
  they are locked: ``umount`` cannot uncover the folders.
"""

from __future__ import annotations

import ast
import importlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import types
from functools import cache
from pathlib import Path

import numpy as np

import minircnn

PACKAGE_DIR = Path(minircnn.__file__).resolve().parent
BOOT = ("import sys; sys.path.insert(0, sys.argv[1]); "
        "from minircnn.classroom.grade_child import main; main()")
NAMESPACE_FLAGS = ["--user", "--map-root-user", "--mount", "--pid", "--fork",
                   "--kill-child=SIGKILL", "--mount-proc", "--net"]
# A second user + mount namespace inside the first: the tmpfs mounts made in the first
# become locked, so the student (root of the inner one) cannot umount them.
LOCK_FLAGS = "--user --map-root-user --mount"

__all__ = ["Forbidden", "check_hiding", "forbidden_code", "kill", "launch", "prepare_home",
           "sandbox_mode"]


def plain_function(obj):
    """The Python function behind ``obj`` (NumPy's dispatchers wrap one), else None."""
    inner = getattr(obj, "_implementation", None) if not isinstance(obj, types.FunctionType) \
        else obj
    return inner if isinstance(inner, types.FunctionType) else None


def resolve(dotted: str):
    """The object named ``package.module.attr[.attr]``: import the longest module prefix."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(f"no module in {dotted!r}")


class Forbidden:
    """The forbidden functions of one lesson: minircnn sources rewritten, others swapped.

    Raises (at construction):
        ValueError: a name that does not exist or is not a plain Python function.
    """

    def __init__(self, names: list[str], lesson: str):
        self.names = sorted(set(names))
        self.sources: dict[str, str] = {}   # path inside the package -> rewritten text
        self.swapped: list[str] = []        # functions outside minircnn, swapped in the child
        for name in self.names:
            self._add(name, lesson)

    def _add(self, dotted: str, lesson: str) -> None:
        try:
            function = resolve(dotted)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"forbids {dotted}, which does not exist ({err})") from err
        function = plain_function(function)
        if function is None:
            raise ValueError(f"forbids {dotted}, which is not a plain Python function")
        path = Path(function.__code__.co_filename).resolve()
        if PACKAGE_DIR not in path.parents:
            if function.__code__.co_freevars:
                raise ValueError(f"forbids {dotted}, a closure: name the function it wraps")
            self.swapped.append(dotted)
            return
        relative = str(path.relative_to(PACKAGE_DIR))
        text = self.sources.get(relative) or path.read_text(encoding="utf-8")
        message = forbidden_message(dotted, lesson)
        self.sources[relative] = _stub_out(text, function.__qualname__, message, dotted)


def forbidden_message(dotted: str, lesson: str) -> str:
    return (f"{dotted} is off limits in lesson {lesson}: the exercise asks you to write "
            "it yourself")


def _stub_out(text: str, qualname: str, message: str, dotted: str) -> str:
    """``text`` with the body of the def ``qualname`` replaced by a raise (same line count)."""
    node = _find_def(ast.parse(text), qualname.split("."))
    if node is None or node.body[0].lineno <= node.lineno:
        raise ValueError(f"forbids {dotted}, whose def cannot be found on its own lines")
    lines = text.split("\n")
    first, last = node.body[0].lineno - 1, node.end_lineno    # 0-based body (docstring too)
    indent = " " * node.body[0].col_offset
    lines[first:last] = [f"{indent}raise RuntimeError({message!r})"] + [""] * (last - first - 1)
    return "\n".join(lines)


def _find_def(tree, path: list[str]):
    body = tree.body
    for i, name in enumerate(path):
        match = [n for n in body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef |
                                                ast.ClassDef) and n.name == name]
        if not match:
            return None
        if i == len(path) - 1:
            return match[-1] if not isinstance(match[-1], ast.ClassDef) else None
        body = match[-1].body
    return None


def forbidden_code(forbidden: Forbidden, root: Path) -> Path:
    """Copy minircnn into ``root`` with the forbidden sources; returns the package root."""
    target = root / "minircnn"
    shutil.copytree(PACKAGE_DIR, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for relative, text in forbidden.sources.items():
        (target / relative).write_text(text, encoding="utf-8")
    return root


# --------------------------------------------------------------------------------------
# Starting and stopping the student process.
# --------------------------------------------------------------------------------------
@cache
def _font_caches() -> list[Path]:
    """matplotlib's font lists, built once by the judge (a fresh child would rebuild it)."""
    import matplotlib

    return sorted(Path(matplotlib.get_cachedir()).glob("fontlist-*.json"))


def prepare_home(home: Path) -> None:
    """The child's HOME: its own matplotlib folder, seeded with the judge's font list."""
    folder = home / ".matplotlib"
    folder.mkdir(parents=True, exist_ok=True)
    for path in _font_caches():
        shutil.copyfile(path, folder / path.name)


def user_tasks() -> int:
    """Processes and threads of this user now: RLIMIT_NPROC counts them all, so the
    student's limit is this plus what it may add (a shared account has many)."""
    uid, count = os.getuid(), 0
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        try:
            status = Path("/proc", entry, "status").read_text()
        except OSError:
            continue   # not a process, or gone meanwhile
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("Uid", "").split()[:1] == [str(uid)]:
            count += int(fields.get("Threads", "1"))
    return count


def environment(home: Path) -> dict:
    """What the student process sees of the environment: nothing of the teacher's."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
            "MPLBACKEND": "Agg", "MPLCONFIGDIR": str(home / ".matplotlib"),
            "PYTHONDONTWRITEBYTECODE": "1", "TQDM_DISABLE": "1", "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@cache
def sandbox_mode() -> str:
    """"namespace" where unshare can hide a folder under a tmpfs here, else "session".

    ``MINIRCNN_GRADE_SANDBOX=session`` asks for the session alone (inside a container
    that is the sandbox already, or to see what the fallback does)."""
    unshare = shutil.which("unshare")
    if os.environ.get("MINIRCNN_GRADE_SANDBOX") == "session":
        return "session"
    if unshare is None or not sys.platform.startswith("linux"):
        return "session"
    with tempfile.TemporaryDirectory(prefix="minircnn-probe-") as tmp:
        Path(tmp, "secret").write_text("x")
        script = (f"mount -t tmpfs none {shlex.quote(tmp)} && exec {unshare} {LOCK_FLAGS} "
                  f"sh -c '! umount {shlex.quote(tmp)} 2>/dev/null && test ! -e {tmp}/secret'")
        try:
            done = subprocess.run([unshare, *NAMESPACE_FLAGS, "sh", "-c", script],
                                  capture_output=True, timeout=20, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return "session"
    return "namespace" if done.returncode == 0 else "session"


def hidden_folders(extra: list[Path], keep: list[Path]) -> list[str]:
    """The folders to cover: ``extra`` and the installed package's, unless one holds
    something the child needs (``keep``, Python, NumPy) - then the package folder alone."""
    needed = [Path(p).resolve() for p in [*keep, sys.prefix, sys.base_prefix,
                                           Path(np.__file__).parent]]
    candidates = [PACKAGE_DIR.parent, *_editable_roots(), *extra]
    hide = []
    for folder in (Path(p).resolve() for p in candidates):
        blocked = any(n == folder or folder in n.parents for n in needed)
        if blocked and folder == PACKAGE_DIR.parent:
            folder = PACKAGE_DIR
        elif blocked:
            continue
        if folder.is_dir():
            hide.append(folder)
    outermost = {f for f in hide if not any(h in f.parents for h in hide)}   # one mount each
    return sorted(str(f) for f in outermost)


def _editable_roots() -> list[Path]:
    """Folders an editable install maps ``minircnn`` to (setuptools' __editable__ finders)."""
    roots = []
    for name, module in list(sys.modules.items()):
        mapping = getattr(module, "MAPPING", None) if name.startswith("__editable__") else None
        if isinstance(mapping, dict) and "minircnn" in mapping:
            roots.append(Path(mapping["minircnn"]).parent)
    return roots


def _in_namespaces(argv: list[str], hide: list[str]) -> list[str]:
    """``argv`` inside the namespaces, ``hide`` covered by empty read-only tmpfs mounts."""
    unshare = shutil.which("unshare")
    mounts = "".join(f"mount -t tmpfs -o ro,size=4k none {shlex.quote(p)} && " for p in hide)
    return [unshare, *NAMESPACE_FLAGS, "sh", "-c", f'{mounts}exec {unshare} {LOCK_FLAGS} "$@"',
            "sh", *argv]


def check_hiding(hide: list[str]) -> None:
    """Raise RuntimeError if the namespaces cannot cover ``hide`` (before anyone is graded)."""
    if sandbox_mode() != "namespace":
        return
    done = subprocess.run(_in_namespaces(["true"], hide), capture_output=True, text=True,
                          timeout=60, check=False)
    if done.returncode:
        raise RuntimeError(f"cannot hide {', '.join(hide)} from the student process: "
                           f"{done.stderr.strip()[-300:]}")


def launch(package_root: Path, work: Path, output, hide: list[str]) -> subprocess.Popen:
    """Start the student process: stdin/stdout are the judge's pipe, stderr ``output``."""
    prepare_home(work)
    argv = [sys.executable, "-I", "-c", BOOT, str(package_root)]
    if sandbox_mode() == "namespace":
        argv = _in_namespaces(argv, hide)
    return subprocess.Popen(argv, cwd=work, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=output, env=environment(work), start_new_session=True)


def kill(child: subprocess.Popen) -> None:
    """Kill the child's process group (and with it the namespace); wait for it."""
    try:
        os.killpg(child.pid, signal.SIGKILL)   # the child leads its own session
    except (ProcessLookupError, PermissionError):
        child.kill()
    for pipe in (child.stdin, child.stdout):
        if pipe is not None:
            try:
                pipe.close()
            except OSError:
                pass
    child.wait()
