"""minircnn/training/runs.py: the run state a checkpoint keeps, and the loop's plumbing."""

import ast
import inspect

import minircnn.training.loop as loop
import minircnn.training.runs as runs
from minircnn.training.runs import RunState


def test_run_state_is_saved_as_the_dict_checkpoints_always_held():
    state = RunState(epoch=1, iteration=8, epochs=[{"epoch": 1, "loss": 0.5}],
                     history={"loss": [0.7, 0.5], "accuracy": [0.5, 0.9]})
    assert state.to_dict() == {"epoch": 1, "iteration": 8, "epochs": [{"epoch": 1, "loss": 0.5}],
                               "history": {"loss": [0.7, 0.5], "accuracy": [0.5, 0.9]}}
    state.partial_epoch = {"order": [3, 1, 2, 0], "next": 1, "sums": {"loss": 0.1}}
    assert state.to_dict()["partial_epoch"] == state.partial_epoch
    assert RunState.from_dict(state.to_dict()) == state


def test_an_older_checkpoints_run_state_still_resumes():
    """A run_state written before RunState existed: the same keys, partial_epoch only
    when the run stopped midway; keys it lacks take their defaults."""
    saved = {"epoch": 2, "iteration": 16, "epochs": [{}, {}],
             "history": {"loss": [1.0] * 16, "accuracy": [0.5] * 16},
             "partial_epoch": {"order": [0, 1], "next": 1, "sums": {}}}
    state = RunState.from_dict(saved)
    assert (state.epoch, state.iteration, state.partial_epoch) == (2, 16, saved["partial_epoch"])
    assert state.to_dict() == saved
    assert RunState.from_dict({"epoch": 1, "iteration": 4}).history == {"loss": [],
                                                                        "accuracy": []}


def test_no_function_of_the_training_loop_takes_more_than_six_parameters():
    for module in (loop, runs):
        tree = ast.parse(inspect.getsource(module))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                args = node.args
                names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs
                         if a.arg not in ("self", "cls")]
                assert len(names) <= 6, f"{module.__name__}.{node.name}: {names}"
