import dataclasses
import json
import subprocess
import sys

import pytest

from minircnn.cli.main import main
from minircnn.gradcheck import cases as gradcheck_cases


def test_gradcheck_passes_and_prints_every_layer(gradcheck_command):
    code, out, _ = gradcheck_command           # `minircnn gradcheck` (tests/conftest.py)
    assert code == 0
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


def test_every_command_is_an_add_run_pair_side_by_side():
    """Each sub-parser is built by ``add_<cmd>``, handled by ``run_<cmd>`` in the same
    module, defined right after it (a reader finds a command's flags and handler together)."""
    import inspect

    from minircnn.cli.main import ADD_COMMANDS, build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert [add.__name__ for add in ADD_COMMANDS] == [f"add_{c}" for c in sub.choices]
    for name, command in sub.choices.items():
        add = next(a for a in ADD_COMMANDS if a.__name__ == f"add_{name}")
        run = command.get_default("func")
        assert run.__name__ == f"run_{name}" and run.__module__ == add.__module__, name
        module = inspect.getmodule(add)
        top_level = [n for n, _ in sorted(
            ((n, f) for n, f in vars(module).items()
             if inspect.isfunction(f) and f.__module__ == module.__name__),
            key=lambda item: item[1].__code__.co_firstlineno)]
        after_add = top_level[top_level.index(add.__name__) + 1:]
        next_public = next(n for n in after_add if not n.startswith("_"))
        assert next_public == run.__name__, f"{name}: {next_public} comes between"


def test_version(capsys):
    from minircnn import __version__

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out == f"minircnn {__version__}\n"


def _options():
    """(command, action) for every option of every sub-command but --help / --debug."""
    import argparse

    from minircnn.cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        for action in command._actions:
            if action.option_strings and action.dest not in ("help", "debug"):
                yield name, command, action


def test_every_command_has_a_description_and_every_option_its_default_and_range():
    from minircnn.cli.help import HelpFormatter, _default_text

    seen = set()
    for name, command, action in _options():
        if name not in seen:
            assert command.description, f"minircnn {name} --help has no description"
            seen.add(name)
        text = HelpFormatter(name)._get_help_string(action)
        flag = action.option_strings[-1]
        if _default_text(action) is not None:
            assert "default" in text, f"minircnn {name} {flag}: no default in {text!r}"
        if getattr(action.type, "rule", None) is not None:   # a number with a range
            assert any(w in text for w in (">=", "> 0", "..", "in [", "in (", "0: none")), \
                f"minircnn {name} {flag}: no range in {text!r}"


def test_train_help_shows_the_configs_defaults(capsys):
    from minircnn.training.config import TrainConfig

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())          # argparse wraps lines
    config = TrainConfig()
    for flag, value in (("--epochs", config.epochs), ("--lr", config.lr),
                        ("--seed", config.seed), ("--backbone", config.backbone),
                        ("--roi-op", config.roi_op), ("--num-val", config.num_val),
                        ("--hidden", config.hidden), ("--device", config.device)):
        assert f"default: {value})" in out, (flag, value)
