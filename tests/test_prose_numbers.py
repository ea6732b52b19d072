"""No hand-copied measurements in the prose: every number a run measures (AP, times,
iterations, learning rates, ranks, energies) in the lessons' text and the README is
computed by the code, or read from its source and checked against it here.

- A lesson's Markdown may state a measurement only as a worked example (the line shows
  its arithmetic, with = or →), as a number its own code sets or asserts, as the
  paper's number where it cites the paper (checked against minircnn/paper/references.py),
  or as a number of minircnn/weights/README.md where it names that file (checked there).
  Everything else is printed by the cell that computes it. Exercises are prompts, not
  results, and are not checked.
- The README's example output and recipe are the shipped run's: their numbers must be
  those of minircnn/weights/README.md and of ``TrainConfig()``.
"""

import re
from pathlib import Path

import pytest

from minircnn.classroom.assign import read_cells
from minircnn.paper import references
from minircnn.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "lessons").glob("[0-9][0-9]_*.py"))
WEIGHTS_README = (ROOT / "minircnn" / "weights" / "README.md").read_text()

# What a run measures: AP-like fractions, percentages, times, iteration counts, learning
# rates, ranks, speed-ups.
MEASUREMENT = re.compile(
    r"(?<![\w.])(?:0\.\d{2,4}|\d{2}\.\d)(?![\d])"                 # 0.814, 66.9
    r"|(?<![\w.])\d+(?:\.\d+)?\s?%"                                  # 32%, 45 %
    r"|(?<![\w.])\d+(?:\.\d+)?\s?(?:ms|s|min|minutes|seconds|h|hours)\b(?!/)"  # 193 s
    r"|(?<![\w.])\d[\d,]*\s(?:iterations|epochs)\b"                  # 3,600 iterations
    r"|\b(?:lr|learning rate)\s?=?\s?\d[\d.e-]*"                     # lr 0.02
    r"|\brank\s\d+"                                                   # rank 32
    r"|(?<![\w.])\d+(?:\.\d+)?\s?[×x](?=\s|$|[),.;:])")               # 3x faster
NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
PAPER_TEXT = " ".join(e.title + " " + e.reports for paper, _ in references.PAPERS.values()
                      for place in (paper.sections, paper.tables, paper.figures)
                      for e in place.values())
CITES_PAPER = re.compile(r"paper|Fast R-CNN|Table \d|Figure \d|§\d|section \d\.\d|VGG16|VOC",
                         re.I)


def _found_percent(value: set, numbers: set) -> bool:
    """Whether a percentage (given as {"15", "0.15"}) is among ``numbers``, either way."""
    return bool(value & numbers)


def _numbers(text: str) -> set[str]:
    return {n.replace(",", "").rstrip(".") for n in NUMBER.findall(text)}


def _sentences(markdown: str):
    """Sentences and bullets of the prose; each table row with its table's header row."""
    prose, header = [], None
    for line in markdown.splitlines():
        if line.lstrip().startswith("|"):
            header = header or line
            yield header + " " + line
        else:
            header = None
            prose.append(line)
    text = re.sub(r"\s*\n\s*", " ", "\n".join(prose))
    yield from re.split(r"(?<=[.!?])\s+(?=[A-Z`*(])|\s+-\s", text)


PAPER_NUMBERS = _numbers(PAPER_TEXT)
WEIGHTS_NUMBERS = _numbers(WEIGHTS_README)


def _lesson_problems(path: Path) -> list[str]:
    cells = read_cells(path)
    code = " ".join(c.source for c in cells if c.kind == "code")
    code_numbers = _numbers(code)
    problems = []
    for cell in cells:
        if cell.kind != "markdown":
            continue
        markdown = cell.source.split("## Exercises")[0]      # prompts, not results
        if cell.source.lstrip("# ").startswith("Exercise"):
            continue
        for sentence in _sentences(markdown):
            if "=" in sentence or "→" in sentence:
                continue                                    # a worked example
            for m in MEASUREMENT.finditer(sentence):
                value = _numbers(m.group(0))
                if "%" in m.group(0):                       # 15% may be 0.15 in the code
                    value = {v for v in value} | {f"{float(v) / 100:g}" for v in value}
                    found = _found_percent
                else:
                    found = set.issubset
                if found(value, code_numbers):
                    continue                                # the lesson's own setting
                if CITES_PAPER.search(sentence) and found(value, PAPER_NUMBERS):
                    continue                                # the paper's number
                if "weights/README.md" in sentence and found(value, WEIGHTS_NUMBERS):
                    continue                                # read from the shipped run
                problems.append(f"{path.name}: {m.group(0)!r} in {sentence.strip()[:100]!r}")
    return problems


@pytest.mark.parametrize("path", LESSONS, ids=[p.name for p in LESSONS])
def test_lesson_text_states_no_hand_copied_measurement(path):
    problems = _lesson_problems(path)
    assert not problems, ("measured numbers typed into the text: print them from the cell "
                          "that computes them, or cite their source\n" + "\n".join(problems))


def test_the_check_catches_a_typed_measurement(tmp_path):
    lesson = tmp_path / "99_demo.py"
    lesson.write_text('# %% [markdown]\n# The detector reaches COCO AP 0.812 after 3,600 '
                      'iterations at lr 0.02.\n\n# %%\nx = 1\n')
    assert len(_lesson_problems(lesson)) == 3
    lesson.write_text('# %% [markdown]\n# The paper reaches 66.9 mAP (Table 4).\n\n'
                      '# %%\nap = 0.812\n# %% [markdown]\n# It reaches 0.812 here.\n')
    assert _lesson_problems(lesson) == []           # the paper's number; the code's number


def _recipe_numbers() -> dict[str, str]:
    config = TrainConfig()
    iterations = config.epochs * (config.num_train // config.images_per_batch)
    return {"training images": str(config.num_train), "held-out images": str(config.num_val),
            "feature stride": str(2 ** config.num_pools),
            "fixed blocks": f"1-{config.freeze_at - 1}",
            "images per minibatch": str(config.images_per_batch),
            "RoIs per minibatch": str(config.rois_per_batch),
            "iterations": f"{iterations:,}"}


def test_readme_recipe_is_train_configs():
    readme = (ROOT / "README.md").read_text()
    said = {"training images": r"(\d+) training and \d+ held-out",
            "held-out images": r"\d+ training and (\d+) held-out",
            "feature stride": r"feature stride (\d+)",
            "fixed blocks": r"blocks (\d-\d) fixed",
            "images per minibatch": r"(\d+) images × \d+ RoIs per minibatch",
            "RoIs per minibatch": r"\d+ images × (\d+) RoIs per minibatch",
            "iterations": r"([\d,]+) iterations, with a progress bar"}
    for name, value in _recipe_numbers().items():
        found = re.search(said[name], readme)
        assert found, f"README.md no longer states the {name} ({said[name]}): update this test"
        assert found.group(1) == value, (f"README.md says {found.group(1)} {name}; "
                                         f"TrainConfig() gives {value}")


def test_readme_example_output_is_the_shipped_runs():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```\n(COCO AP@\[\.5:\.95\] = .*?)```", readme, re.S)
    assert block, "README.md lost the example output of minircnn train"
    shipped = WEIGHTS_NUMBERS
    for number in sorted(_numbers(block.group(1)) - {"0", "5", "95", "300"}):
        value = float(number)
        candidates = {number, f"{value:.3f}".rstrip("0").rstrip("."), f"{value:.3f}"}
        assert candidates & shipped, (f"README.md's example output says {number}, which "
                                      "minircnn/weights/README.md (the shipped run) does not")


def test_readme_measurements_are_those_of_their_source():
    # The README's prose repeats measurements recorded elsewhere: the shipped run
    # (minircnn/weights/README.md), docs/performance.md, docs/reproduce/index.md,
    # TrainConfig() and the paper. Each must still be there.
    sources = (WEIGHTS_NUMBERS | PAPER_NUMBERS | _numbers(" ".join(_recipe_numbers().values()))
               | _numbers((ROOT / "docs" / "performance.md").read_text())
               | _numbers((ROOT / "docs" / "reproduce" / "index.md").read_text()))
    prose = re.sub(r"```.*?```", "", (ROOT / "README.md").read_text(), flags=re.S)
    stale = [f"{m.group(0)!r} in {s.strip()[:90]!r}" for s in _sentences(prose)
             for m in MEASUREMENT.finditer(s) if not _numbers(m.group(0)) <= sources]
    assert not stale, ("README.md states measurements that no source records:\n"
                       + "\n".join(stale))
