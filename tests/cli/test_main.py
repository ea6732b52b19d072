import dataclasses
import json
import subprocess
import sys

import pytest

from minircnn.cli.main import main
from minircnn.gradcheck import cases as gradcheck_cases


def test_gradcheck_passes_and_prints_every_layer(capsys):
    assert main(["gradcheck"]) == 0
    out = capsys.readouterr().out
    for case in gradcheck_cases.LAYER_CASES:
        assert f"\n{case.name} " in out
    assert f"{len(gradcheck_cases.LAYER_CASES)} passed, 0 failed" in out
    assert "FAIL" not in out


def test_gradcheck_exits_1_on_a_broken_layer(capsys, monkeypatch):
    linear = next(c for c in gradcheck_cases.LAYER_CASES if c.name == "linear")

    def wrong_backward(dout, cache):
        dx, dw, db = linear.backward(dout, cache)
        return dx, dw * 1.5, db  # dw off by 50 %

    broken = dataclasses.replace(linear, name="linear_broken", backward=wrong_backward)
    monkeypatch.setattr(gradcheck_cases, "LAYER_CASES", [linear, broken])
    assert main(["gradcheck", "--seed", "3"]) == 1
    out = capsys.readouterr().out
    assert "1 passed, 1 failed" in out
    broken_line = next(line for line in out.splitlines() if line.startswith("linear_broken"))
    assert broken_line.endswith("FAIL")


def test_bench_json_is_valid(capsys):
    assert main(["bench", "--only", "matmul", "--repeats", "1", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert list(results["entries"]) == ["matmul float32 1024^3"]
    assert results["matmul_gflops"] > 0


def test_bench_table(capsys):
    assert main(["bench", "--only", "relu", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "relu fwd+bwd" in out and "% of matmul" in out


def test_unknown_command_and_missing_command_exit_2(capsys):
    for argv in ([], ["no-such-command"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2


def test_python_dash_m_help():
    done = subprocess.run([sys.executable, "-m", "minircnn", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "gradcheck" in done.stdout and "bench" in done.stdout
    done = subprocess.run([sys.executable, "-m", "minircnn", "gradcheck", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "--seed" in done.stdout
