"""minircnn/utils/workers.py: proposal worker processes die with their parent."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

SCRIPT = textwrap.dedent("""
    import multiprocessing, threading, time
    from minircnn.utils.workers import map_in_workers

    def slow(x):
        time.sleep(120)
        return x

    def report():
        while len(multiprocessing.active_children()) < 2:
            time.sleep(0.05)
        time.sleep(0.5)                       # let both workers finish their initializer
        print(" ".join(str(p.pid) for p in multiprocessing.active_children()), flush=True)

    if __name__ == "__main__":
        threading.Thread(target=report, daemon=True).start()
        print(map_in_workers(slow, [1, 2], 2))
""")


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:                                   # an exited, not yet reaped child is a zombie
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def test_map_in_workers_returns_in_order():
    from minircnn.utils.workers import map_in_workers

    assert map_in_workers(abs, [-3, 1, -2], 2) == [3, 1, 2]


def test_map_in_workers_reports_each_result_in_order():
    from minircnn.utils.workers import map_in_workers

    seen = []
    assert map_in_workers(abs, [-3, 1, -2, 5], 2, on_result=seen.append) == [3, 1, 2, 5]
    assert seen == [3, 1, 2, 5]


def test_in_background_returns_raises_and_leaves_no_process():
    import multiprocessing

    from minircnn.utils.workers import InBackground

    with InBackground(divmod, 17, 5) as job:
        assert job.result() == (3, 2)
    with InBackground(divmod, 1, 0) as job, pytest.raises(ZeroDivisionError):
        job.result()                                  # the worker's exception, here
    with InBackground(time.sleep, 120):               # left before it ends: terminated
        pass
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize("function, arg, how", [
    (os._exit, 3, "exit code 3"),
    (signal.raise_signal, signal.SIGKILL, "killed by SIGKILL")])   # as the OOM killer does
def test_in_background_reports_a_dead_worker_instead_of_waiting_forever(function, arg, how):
    import multiprocessing

    from minircnn.utils.errors import WorkerDied
    from minircnn.utils.workers import InBackground

    with InBackground(function, arg) as job, pytest.raises(WorkerDied, match=how) as died:
        job.result()
    assert f"{function.__qualname__} ended" in str(died.value) and "memory" in str(died.value)
    assert multiprocessing.active_children() == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_workers_exit_when_the_parent_is_killed(tmp_path, sig):
    script = tmp_path / "parent.py"
    script.write_text(SCRIPT)
    pids = []
    with subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as parent:
        try:
            pids = [int(p) for p in parent.stdout.readline().split()]
            assert len(pids) == 2, parent.stderr.read()
            parent.send_signal(sig)
            # Liveness bounds only, far above the normal sub-second exit, so that a heavily
            # loaded machine does not fail the test; a regression hangs until they pass.
            parent.wait(timeout=600)
            deadline = time.monotonic() + 300
            while not all(_gone(p) for p in pids) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert all(_gone(p) for p in pids), pids
        finally:
            parent.kill()
            for p in pids:
                if not _gone(p):
                    os.kill(p, signal.SIGKILL)
