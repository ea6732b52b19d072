"""Expected failures of the `minircnn` command: one line on stderr, no traceback, exit 1 / 2.

Each case runs the real command in a subprocess, as a user would, and checks the
message, the exit status and that no Python traceback was printed.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from minircnn.backend import gpu_available
from minircnn.cli.main import main
from minircnn.models import MiniResNet, save_checkpoint
from minircnn.models.pretrained import DETECTOR_FILE

needs_shipped = pytest.mark.skipif(not os.path.isfile(DETECTOR_FILE),
                                   reason="shipped weights missing")


def run_cli(*argv, cwd=None, env=None):
    full_env = {**os.environ, "TQDM_DISABLE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "minircnn", *map(str, argv)], cwd=cwd,
                          env=full_env, capture_output=True, text=True, timeout=300)


def assert_error(done, code, *fragments, command):
    """Exit ``code``, one line ``minircnn <command>: error: ...`` (an interrupt, 130, is
    no error: ``minircnn <command>: interrupted ...``) naming every fragment."""
    assert done.returncode == code, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    kind = "interrupted" if code == 130 else "error: "
    assert last.startswith(f"minircnn {command}: {kind}"), done.stderr
    for fragment in fragments:
        assert fragment in done.stderr, (fragment, done.stderr)


@pytest.fixture(scope="module")
def classifier_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("clf") / "classifier.npz"
    save_checkpoint(MiniResNet(3, widths=(4, 4, 4, 4), rng=np.random.default_rng(0)), path)
    return path


def test_a_text_file_given_to_eval(tmp_path):
    text = tmp_path / "notes.npz"
    text.write_text("hello\n")
    done = run_cli("eval", text)
    assert_error(done, 1, "notes.npz is not a minircnn checkpoint", "minircnn train",
                 command="eval")
    assert "pickle" not in done.stderr


def test_a_missing_and_a_truncated_checkpoint(tmp_path):
    assert_error(run_cli("eval", tmp_path / "none.npz"), 1, "none.npz: no such file",
                 command="eval")
    if os.path.isfile(DETECTOR_FILE):
        cut = tmp_path / "cut.npz"
        with open(DETECTOR_FILE, "rb") as f:
            cut.write_bytes(f.read()[:5000])
        assert_error(run_cli("detect", cut, "x.png", "-o", tmp_path / "o.png"), 1,
                     "cut.npz is not a readable minircnn checkpoint", command="detect")


def test_a_classifier_checkpoint_given_to_detect_says_what_it_is(classifier_checkpoint,
                                                                  tmp_path):
    done = run_cli("detect", classifier_checkpoint, "in.png", "-o", tmp_path / "o.png")
    assert_error(done, 1, "MiniResNet classifier checkpoint", "finetune --pretrained",
                 command="detect")
    assert "TrainConfig" not in done.stderr


@needs_shipped
def test_a_detector_given_to_finetune_says_what_it_is():
    done = run_cli("finetune", "--pretrained", DETECTOR_FILE, "--epochs", "1")
    assert_error(done, 1, "Fast R-CNN detector checkpoint", "minircnn eval", command="finetune")


@needs_shipped
def test_a_text_file_renamed_png_given_to_detect(tmp_path):
    fake = tmp_path / "photo.png"
    fake.write_text("not an image")
    done = run_cli("detect", DETECTOR_FILE, fake, "-o", tmp_path / "o.png")
    assert_error(done, 1, "photo.png is not an image file", command="detect")
    assert "SyntaxError" not in done.stderr


@pytest.mark.skipif(gpu_available(), reason="a GPU is present")
def test_device_gpu_without_a_gpu():
    done = run_cli("train", "--device", "gpu", "--num-train", "2", "--epochs", "1")
    assert_error(done, 1, "--device gpu needs CuPy and a CUDA GPU", "--device cpu",
                 command="train")


def test_debug_shows_the_traceback(tmp_path):
    missing = tmp_path / "none.npz"
    for argv, env in ((["--debug", "eval", missing], None), (["eval", missing, "--debug"], None),
                      (["eval", missing], {"MINIRCNN_DEBUG": "1"})):
        done = run_cli(*argv, env=env)
        assert done.returncode == 1 and "Traceback" in done.stderr, (argv, done.stderr)


def test_settings_are_checked_before_any_work(tmp_path):
    done = run_cli("train", "--epochs", "0", "--out", tmp_path / "run", cwd=tmp_path)
    assert_error(done, 2, "argument --epochs: must be an integer >= 1, got 0", command="train")
    assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()
    done = run_cli("train", "--num-train", "1", "--out", tmp_path / "run")
    assert_error(done, 2, "fewer than the 2 images of one iteration", "--num-train 2",
                 command="train")
    assert not (tmp_path / "run").exists()


# (argv, what the message must say): every numeric option out of its range.
OUT_OF_RANGE = [
    (["train", "--epochs", "-1"], "--epochs: must be an integer >= 1, got -1"),
    (["train", "--num-train", "0"], "--num-train: must be an integer >= 1, got 0"),
    (["train", "--num-val", "0"], "--num-val: must be an integer >= 1, got 0"),
    (["train", "--hidden", "0"], "--hidden: must be an integer >= 1, got 0"),
    (["train", "--max-proposals", "0"], "--max-proposals: must be an integer >= 1, got 0"),
    (["train", "--lr", "0"], "--lr: must be a finite number in (0, inf), got 0"),
    (["train", "--lr", "-1"], "--lr: must be a finite number in (0, inf), got -1"),
    (["train", "--lr", "inf"], "--lr: must be a finite number in (0, inf), got inf"),
    (["train", "--lr", "nan"], "--lr: must be a finite number in (0, inf), got nan"),
    (["train", "--seed", "-3"], "--seed: must be an integer >= 0, got -3"),
    (["train", "--epochs", "two"], "--epochs: expected an integer >= 1, got 'two'"),
    (["train", "--test-scales", "1,9"],
     "--test-scales: must be a non-empty tuple of numbers in [0.25, 4.0], got 1,9"),
    (["train", "--test-scales", "1,x"],
     "--test-scales: expected a non-empty tuple of numbers in [0.25, 4.0], got '1,x'"),
    (["train", "--train-scales", "0.1,1"],
     "--train-scales: must be a non-empty tuple of numbers in [0.25, 4.0], got 0.1,1"),
    (["eval", "m.npz", "--num-val", "0"], "--num-val: must be an integer >= 1, got 0"),
    (["detect", "m.npz", "i.png", "-o", "o.png", "--score-thresh", "2"],
     "--score-thresh: must be a finite number in [0, 1], got 2"),
    (["dataset", "out", "--num-images", "0"], "--num-images: must be an integer >= 1, got 0"),
    (["dataset", "out", "--image-size", "4"], "--image-size: must be an integer >= 16, got 4"),
    (["bench", "--repeats", "0"], "--repeats: must be an integer >= 1, got 0"),
    (["pretrain", "--lr", "-0.1"], "--lr: must be a finite number in (0, inf), got -0.1"),
    (["pretrain", "--epochs", "0"], "--epochs: must be an integer >= 1, got 0"),
    (["finetune", "--finetune-from", "9"], "--finetune-from: must be an integer in 1..4, got 9"),
    (["finetune", "--train-per-class", "0"], "--train-per-class: must be an integer >= 1"),
    (["reproduce", "--seeds", "0"], "--seeds: must be an integer >= 1, got 0"),
    (["reproduce", "--seeds", "-1"], "--seeds: must be an integer >= 1, got -1"),
    (["reproduce", "--workers", "0"], "--workers: must be an integer >= 1, got 0"),
]


@pytest.mark.parametrize("argv, message", OUT_OF_RANGE, ids=lambda v: " ".join(v)
                         if isinstance(v, list) else None)
def test_out_of_range_options_exit_2_with_the_range(argv, message, capsys, tmp_path,
                                                    monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"minircnn {argv[0]}: error: argument {message}" in err, err
    assert os.listdir(tmp_path) == []                       # nothing was written


def test_unknown_finetune_strategy(capsys):
    assert main(["finetune", "--strategies", "full,warp"]) == 2
    assert "--strategies: unknown warp, choose from scratch" in capsys.readouterr().err


def test_a_diverging_learning_rate_stops_training_with_a_clear_error(tmp_path):
    done = run_cli("train", "--num-train", "4", "--num-val", "2", "--epochs", "1",
                   "--proposals", "dense", "--max-proposals", "60", "--hidden", "16",
                   "--cache-dir", "", "--lr", "1e6", "--out", tmp_path / "run")
    assert_error(done, 1, "training diverged at iteration", "lower the learning rate",
                 command="train")
    assert not (tmp_path / "run" / "model.npz").exists()


def test_the_readme_states_the_exit_code_rule():
    """The rule the tests here hold the command to, as the README says it."""
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "README.md")) as f:
        readme = f.read()
    flat = " ".join(readme.split())
    for words in ("and exits 1", "or 2 for a usage error", "(exit 130)", "--version"):
        assert words in flat, words


def test_detect_output_format_and_folder_are_checked_first(tmp_path, classifier_checkpoint):
    """-o x.gif is a usage error (2); a missing folder is an error (1), never created."""
    done = run_cli("detect", classifier_checkpoint, "in.png", "-o", tmp_path / "x.gif")
    assert_error(done, 2, "x.gif: cannot write .gif images", ".png, .jpg or .jpeg",
                 command="detect")
    missing = tmp_path / "no" / "such" / "x.png"
    done = run_cli("detect", classifier_checkpoint, "in.png", "-o", missing)
    assert_error(done, 1, f"the folder {missing.parent} does not exist", command="detect")
    assert not (tmp_path / "no").exists()


@needs_shipped
@pytest.mark.parametrize("name, magic", [("out.png", b"\x89PNG"), ("out.JPG", b"\xff\xd8\xff"),
                                         ("out.jpeg", b"\xff\xd8\xff")])
def test_detect_writes_the_format_its_extension_names(tmp_path, name, magic):
    from PIL import Image

    from minircnn.data import ShapesDataset

    image = tmp_path / "in.png"
    pixels = ShapesDataset(1, image_size=64)[0]["image"].transpose(1, 2, 0)   # (H, W, 3)
    Image.fromarray((pixels * 255).round().astype(np.uint8)).save(image)
    done = run_cli("detect", DETECTOR_FILE, image, "-o", tmp_path / name)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / name).read_bytes()[:len(magic)] == magic


def test_interrupt_is_reported_as_an_interrupt_not_an_error(capsys, monkeypatch):
    import importlib

    cli = importlib.import_module("minircnn.cli.main")   # minircnn.cli.main is also main()

    def interrupted(args):
        raise KeyboardInterrupt                   # Ctrl-C outside a training loop

    parser = cli.build_parser()
    parser.parse_args(["gradcheck"])              # the sub-parsers exist
    sub = next(a for a in parser._actions if getattr(a, "choices", None))
    sub.choices["gradcheck"].set_defaults(func=interrupted)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    assert main(["gradcheck"]) == 130
    err = capsys.readouterr().err
    assert err.startswith("minircnn gradcheck: interrupted") and "error" not in err, err
