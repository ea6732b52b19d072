"""The student process: runs the notebook's code and the calls the judge asks for.

Started by :mod:`minircnn.classroom.grade_run` (``python -I -c BOOT <package copy>``), it
takes its stdin/stdout as the judge's pipe and sends everything the notebook prints to
stderr. Before any student code runs it sets its resource limits, drops setuptools'
editable finders (so ``minircnn`` is only the copy whose forbidden functions are stubs)
and swaps the ``__code__`` of the forbidden functions outside minircnn. Then it answers
requests, one frame each (:mod:`minircnn.classroom.codec`):

    {"op": "exec", "cell": i, "source": text}     -> {"error": None | "Type: message"}
    {"op": "call", "name": f, "args": [...], "kwargs": {...}}
                                                  -> {"value": v} | {"error": "..."}
    {"op": "bye"}                                 -> the process exits

Nothing here is trusted by the judge: it only reads the values that come back, and a
reply that is not a well-formed frame is that submission's failure.
"""

from __future__ import annotations

import linecache
import os
import sys
import traceback

MAX_ERROR = 300   # characters of an error message sent back


def describe(err: BaseException) -> str:
    """One line: ``Type: message (cell 8, line 5)``, the innermost notebook frame."""
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if f.filename.startswith("<cell ")]
    where = f" ({frames[-1].filename[1:-1]}, line {frames[-1].lineno})" if frames else ""
    try:
        text = f"{type(err).__name__}: {err}".strip()
    except Exception:   # noqa: BLE001 - a student's exception whose __str__ raises
        text = type(err).__name__
    if len(text) > MAX_ERROR:
        text = text[:MAX_ERROR] + " ..."
    return " ".join(text.split("\n")) + where


def run_cell(source: str, namespace: dict, cell: int) -> str | None:
    """exec a cell (IPython magics dropped); None, or what it raised in one line."""
    filename = f"<cell {cell}>"
    lines = ["" if line.lstrip().startswith(("%", "!")) else line
             for line in source.split("\n")]
    code = "\n".join(lines) + "\n"
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    try:
        exec(compile(code, filename, "exec"), namespace)   # noqa: S102 - running it is the point
    except BaseException as err:   # noqa: BLE001 - SystemExit and KeyboardInterrupt included
        return describe(err)
    return None


def resolve_refs(value, namespace: dict):
    """Arguments with each Ref replaced by the notebook object it names."""
    from minircnn.classroom.codec import Ref

    if isinstance(value, Ref):
        obj = namespace[value.path[0]]
        for key in value.path[1:]:
            obj = obj[key]
        return obj
    if type(value) in (list, tuple):
        return type(value)(resolve_refs(v, namespace) for v in value)
    if type(value) is dict:
        return {k: resolve_refs(v, namespace) for k, v in value.items()}
    return value


def call(request: dict, namespace: dict) -> dict:
    """Call the notebook's function; its result as plain data, or the error in one line."""
    from minircnn.classroom.codec import CodecError, encode

    name = request["name"]
    function = namespace.get(name)
    if not callable(function):
        return {"error": f"the notebook has no function {name}: define it in its solution cell"}
    try:
        args = resolve_refs(request["args"], namespace)
        kwargs = resolve_refs(request["kwargs"], namespace)
        result = function(*args, **kwargs)
        encode(result)                           # refused here: a clear message back
    except CodecError as err:
        return {"error": f"{name} returned something that is not plain data: {err}"}
    except BaseException as err:   # noqa: BLE001 - the student's exception is the answer
        return {"error": describe(err)}
    return {"value": result}


def _limits(memory_mb: int, output_mb: int, processes: int) -> None:
    import resource

    wanted = [(resource.RLIMIT_FSIZE, output_mb * 2**20), (resource.RLIMIT_CORE, 0),
              (resource.RLIMIT_NPROC, processes)]
    if memory_mb:
        wanted.append((resource.RLIMIT_AS, memory_mb * 2**20))
    for kind, size in wanted:
        try:
            resource.setrlimit(kind, (size, size))
        except (ValueError, OSError):
            pass


def _forbidden_stub(*args, **kwargs):
    raise RuntimeError("__FORBIDDEN_MESSAGE__")


def _swap_forbidden(names: list[str], lesson: str) -> None:
    """Forbidden functions outside minircnn: every reference to them reaches a stub."""
    from minircnn.classroom.sandbox import forbidden_message, plain_function, resolve

    stub = _forbidden_stub.__code__
    for dotted in names:
        function = plain_function(resolve(dotted))
        message = forbidden_message(dotted, lesson)
        consts = tuple(message if c == "__FORBIDDEN_MESSAGE__" else c for c in stub.co_consts)
        function.__code__ = stub.replace(co_consts=consts, co_name=function.__code__.co_name)


def main() -> None:
    from minircnn.classroom.codec import read_frame, write_frame

    inbox, outbox = os.dup(0), os.dup(1)     # the judge's pipe; not inherited by children
    quiet = os.open(os.devnull, os.O_RDONLY)
    os.dup2(quiet, 0)
    os.dup2(2, 1)                            # what the notebook prints goes to stderr
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
    setup = read_frame(inbox)
    _limits(setup["memory_mb"], setup["output_mb"], setup["processes"])
    _swap_forbidden(setup["swapped"], setup["lesson"])
    import minircnn  # noqa: F401 - the copy, loaded before any student code
    namespace = {"__name__": "__main__"}
    write_frame(outbox, {"ready": True})
    while True:
        request = read_frame(inbox, refs=True)
        if request["op"] == "bye":
            os._exit(0)
        if request["op"] == "exec":
            reply = {"error": run_cell(request["source"], namespace, request["cell"])}
        else:
            reply = call(request, namespace)
        sys.stdout.flush()
        write_frame(outbox, reply)


if __name__ == "__main__":
    main()
