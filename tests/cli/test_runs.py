"""Run folders through the real command: Ctrl-C / SIGTERM and --resume, locks, --overwrite,
and a config.json that cannot steer a resumed run elsewhere."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from minircnn.models import read_checkpoint
from minircnn.training.runs import RunLock
from tests.cli.test_errors import assert_error, run_cli

# 8 images of 64 px, 2 per iteration: 4 iterations per epoch, 2 epochs; tiny model.
TINY = ["--num-train", "8", "--num-val", "2", "--epochs", "2", "--proposals", "dense",
        "--max-proposals", "40", "--hidden", "16", "--seed", "3"]

# Runs `minircnn ARGS...` and sends SIG as a user pressing Ctrl-C (or a batch system
# sending SIGTERM) would: to this process after the K-th training iteration, or (GROUP 1)
# to its whole process group during the K-th, while the training worker is in its slot.
INTERRUPTER = textwrap.dedent("""
    import os, sys
    import minircnn.training.loop as train
    from minircnn.cli.main import main

    sig, k, group = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
    real_iteration, real_slot, calls, parent = train._iteration, train.train_slot, [0], os.getpid()

    def iteration(*args, **kwargs):
        out = real_iteration(*args, **kwargs)
        calls[0] += 1
        if calls[0] == k and not group:
            os.kill(os.getpid(), sig)
        return out

    def slot(model, job, **kwargs):      # image 0's slot, in this process
        if group and calls[0] == k - 1 and os.getpid() == parent:
            os.killpg(0, sig)
        return real_slot(model, job, **kwargs)

    train._iteration, train.train_slot = iteration, slot
    sys.exit(main(sys.argv[4:]))
""")


def _weights(path):
    return read_checkpoint(path).state


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "run"
    done = run_cli("train", *TINY, "--out", out)
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
@pytest.mark.parametrize("sig, k, group", [(signal.SIGINT, 3, False), (signal.SIGTERM, 6, False),
                                           (signal.SIGTERM, 5, True)],
                         ids=["ctrl-c", "sigterm", "sigterm-to-the-group"])
def test_interrupt_saves_the_iteration_and_resume_is_bit_identical(tmp_path, uninterrupted,
                                                                   sig, k, group):
    script = tmp_path / "interrupt.py"
    script.write_text(INTERRUPTER)
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, str(script), str(int(sig)), str(k), str(int(group)),
                           "train", *TINY, "--out", str(out)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TQDM_DISABLE": "1"},
                          start_new_session=True,        # its own group: killpg reaches no test
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert_error(done, 130, f"interrupted at iteration {k}; continue with: minircnn train "
                 f"--out {out} --resume", command="train")
    state = read_checkpoint(out / "checkpoint.npz").extra["run_state"]
    assert state["iteration"] == k and state["epoch"] == k // 4      # mid-epoch (4 per epoch)
    assert not (out / "model.npz").exists()

    resumed = run_cli("train", "--out", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    full, part = _weights(uninterrupted / "model.npz"), _weights(out / "model.npz")
    assert all(np.array_equal(full[name], part[name]) for name in full)   # bit for bit
    history = [json.loads((d / "metrics.json").read_text())["history"]
               for d in (uninterrupted, out)]
    assert history[0] == history[1]


def test_a_second_train_into_a_locked_folder_refuses_naming_the_pid(tmp_path):
    out = tmp_path / "run"
    with RunLock(out):
        done = run_cli("train", *TINY, "--out", out)
    assert_error(done, 1, f"is in use by another minircnn run (PID {os.getpid()})",
                 "choose another --out", command="train")
    assert os.listdir(out) == []                      # nothing written, the lock released


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("999999999\n")           # a PID that is not running
    (out / ".tmp-999999999-x-checkpoint.npz").write_bytes(b"half")   # its torn write
    done = run_cli("train", *TINY, "--epochs", "1", "--out", out)
    assert done.returncode == 0, done.stderr
    assert not (out / ".tmp-999999999-x-checkpoint.npz").exists()
    assert os.listdir(out) != [] and not (out / ".lock").exists()   # released, not left


def test_a_fresh_train_into_a_run_needs_resume_or_overwrite(tmp_path, uninterrupted):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(uninterrupted, out)
    done = run_cli("train", *TINY, "--out", out)
    assert_error(done, 1, "already holds a run", "--resume", "--overwrite", command="train")
    assert _weights(out / "model.npz").keys() == _weights(uninterrupted / "model.npz").keys()
    done = run_cli("train", *TINY, "--epochs", "1", "--out", out, "--overwrite")
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "config.json").read_text())["epochs"] == 1
    assert_error(run_cli("train", "--out", tmp_path / "empty", "--resume"), 1, "holds no run",
                 command="train")


def test_resume_ignores_a_cache_folder_named_in_config_json(tmp_path):
    out = tmp_path / "run"
    done = run_cli("train", *TINY, "--epochs", "1", "--out", out)
    assert done.returncode == 0, done.stderr
    config = json.loads((out / "config.json").read_text())
    outside = tmp_path / "elsewhere" / "cache"
    config["cache_dir"] = str(outside)
    (out / "config.json").write_text(json.dumps(config))
    done = run_cli("train", "--out", out, "--resume")
    assert done.returncode == 0, done.stderr
    assert not outside.exists()
    assert_error(run_cli("train", "--out", out, "--resume", "--epochs", "3"), 1,
                 "different settings: epochs=1 (now 3)", "--overwrite", command="train")
    (out / "config.json").write_text("[1, 2]")
    assert_error(run_cli("train", "--out", out, "--resume"), 1, "config.json holds a list",
                 command="train")
    (out / "config.json").write_text(json.dumps({**config, "epochs": 0}))
    assert_error(run_cli("train", "--out", out, "--resume"), 1, "config.json",
                 "epochs must be an integer >= 1, got 0", command="train")


def test_overwrite_replaces_the_whole_run_or_changes_nothing(tmp_path, monkeypatch):
    """A run file that cannot be removed: every file stays, the message names it."""
    from minircnn.training import runs
    from minircnn.utils.errors import UserError

    out = tmp_path / "run"
    out.mkdir()
    names = ["config.json", "checkpoint.npz", "metrics.json"]
    for name in names:
        (out / name).write_text(name)
    real_replace = os.replace

    def refuse_checkpoint(src, dst):
        if os.path.basename(src) == "checkpoint.npz" and ".overwrite-" in os.fspath(dst):
            raise PermissionError(1, "Operation not permitted")
        real_replace(src, dst)
    monkeypatch.setattr(runs.os, "replace", refuse_checkpoint)
    with pytest.raises(UserError, match=r"cannot remove .*checkpoint\.npz \(Operation not "
                                        r"permitted\); the run in .* is unchanged"):
        runs.check_fresh_or_resume(out, resume=False, overwrite=True)
    assert sorted(os.listdir(out)) == sorted(names)            # config.json is still there
    assert all((out / name).read_text() == name for name in names)
    monkeypatch.setattr(runs.os, "replace", real_replace)
    runs.check_fresh_or_resume(out, resume=False, overwrite=True)
    assert os.listdir(out) == []
