"""MkDocs hooks of the minircnn site (mkdocs.yml `hooks:`), run at every build.

- The lessons stay in lessons/ (their home, next to their jupytext scripts), where they
  are the **teacher's edition** (solutions, hidden tests, model answers). The site shows
  the **student edition**, as ``minircnn assign`` releases it: this hook writes it from
  lessons/NN_*.ipynb into the mkdocs-jupyter cache folder and adds those notebooks (and
  lessons/README.md) to the site under lessons/, before mkdocs-jupyter turns each one
  into a page. When the build executes the lessons, the hook runs the teacher's notebook
  (cached by its content) and keeps its outputs, except those of the exercise cells, so
  the pages show figures while no answer is shown; mkdocs-jupyter itself then only renders.
- The command-line reference (cli.md) is generated from ``minircnn.cli.main.build_parser()``,
  so it always shows the options the installed command really has.
- Executed lessons render their figures as images and print no progress bars: the
  notebook kernels get matplotlib's inline backend (whatever MPLBACKEND says, e.g. the
  test suite's Agg) and TQDM_DISABLE=1; a figure that still comes out as text
  (``<Figure size ...>``) fails the build.
- The API pages (api/*.md) list every module of the package, found by walking it, so a
  new or renamed module appears without editing the docs.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import logging
import os
import pkgutil
import re
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
LESSONS = ROOT / "lessons"
HELP_WIDTH = "88"  # columns argparse wraps the help text at, whatever the terminal
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
log = logging.getLogger("mkdocs.hooks.minircnn")  # warnings here fail a --strict build
STUDENT_NOTE = ("*Student edition: the exercises' solutions, hidden tests and model answers "
                "are removed, as `minircnn assign` releases this lesson. Teachers find them "
                "in `lessons/` of the repository (the teacher's edition).*")
_build = {"execute": False, "cache": ROOT / ".cache" / "mkdocs-jupyter"}


def on_config(config):
    # Read by the kernels that execute the lessons.
    os.environ["MPLBACKEND"] = INLINE_BACKEND
    os.environ["TQDM_DISABLE"] = "1"
    # This hook executes the teacher's lessons itself (student editions cannot run:
    # their exercises raise NotImplementedError); mkdocs-jupyter only renders.
    jupyter = config.plugins["mkdocs-jupyter"]
    _build["execute"] = bool(jupyter.config["execute"])
    _build["cache"] = Path(jupyter.config["cache_dir"])
    jupyter.config["execute"] = False
    return config


def on_page_content(html: str, page, config, files) -> str:
    if page.file.src_uri.endswith(".ipynb") and "&lt;Figure size" in html:
        log.warning("%s: a figure was printed as text (<Figure size ...>) instead of "
                    "drawn: end the cell with the Figure, or draw with pyplot",
                    page.file.src_uri)
    if page.file.src_uri.endswith(".ipynb"):
        _fix_toc_anchors(page.toc, set(re.findall(r'id="([^"]+)"', html)))
    # "minircnn/weights/README.md" in lessons and prose: a link to its page on the site
    up = "../" * page.url.count("/")
    html = WEIGHTS_MENTION.sub(
        lambda m: f'{m.group(1)}<a href="{up}weights/">{m.group(2)}</a>', html)
    return link_docs_mentions(html, up, files)


# `docs/...` as inline code (lessons name the pages by their path in the repository),
# or an <a> element, whose code is left as it is.
DOCS_MENTION = re.compile(r"<a\b.*?</a>|<code>docs/([^<\s]*)</code>", re.DOTALL)


def link_docs_mentions(html: str, up: str, files) -> str:
    """Each `docs/PATH` written as code, outside a link, becomes a link to PATH on the site
    when the site has it (a page, a folder's index page, or a file such as results.json)."""
    def link(match: re.Match) -> str:
        if match.group(1) is None:
            return match.group()                       # an existing link: unchanged
        path = match.group(1)                          # "reproduce/tables.md", "reproduce/"
        target = files.get_file_from_path(path if path and not path.endswith("/")
                                          else f"{path}index.md")
        if target is None:
            return match.group()
        return f'<a href="{up}{target.url}">{match.group()}</a>'
    return DOCS_MENTION.sub(link, html)


def _fix_toc_anchors(toc, ids: set) -> None:
    """A lesson heading with inline code gets its anchor from nbconvert, words of the
    code included ("...-from-nplinalgsvd"); the table of contents drops them ("...-from").
    Point each such entry at the one heading id whose words contain its own, in order."""
    for item in toc:
        if item.id not in ids:
            words = item.id.split("-")
            found = [i for i in ids if _subsequence(words, i.split("-"))]
            if len(found) == 1:
                item.id = found[0]
        _fix_toc_anchors(item.children, ids)


def _subsequence(short: list, long: list) -> bool:
    rest = iter(long)
    return all(word in rest for word in short)


# The README of the shipped weights, named as a path (plain or as code), not already a link.
WEIGHTS_MENTION = re.compile(r"([^\">/])((?:<code>)?minircnn/weights/README\.md(?:</code>)?)")


def weights_page() -> str:
    """minircnn/weights/README.md as a page, with the misses picture it describes."""
    text = (ROOT / "minircnn" / "weights" / "README.md").read_text(encoding="utf-8")
    return (text.rstrip() + "\n\n![The first 12 held-out images with a miss at IoU 0.75 "
            "(the missed box dashed red)](misses.png)\n")


@event_priority(50)  # before mkdocs-jupyter (priority 0) wraps the notebooks
def on_files(files: Files, config) -> Files:
    files.append(File("lessons/README.md", src_dir=str(ROOT), dest_dir=config["site_dir"],
                      use_directory_urls=config["use_directory_urls"]))
    student_root = _build["cache"] / "student-edition"
    for path in sorted(LESSONS.glob("[0-9][0-9]_*.ipynb")):
        write_student_edition(path, student_root / "lessons" / path.name, _build["execute"])
        files.append(File(f"lessons/{path.name}", src_dir=str(student_root),
                          dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))
    files.append(File.generated(config, "cli.md", content=cli_reference()))
    files.append(File.generated(config, "weights.md", content=weights_page()))
    for name, content in api_pages().items():
        files.append(File.generated(config, f"api/{name}.md", content=content))
    return files


def student_edition(nb: dict, lesson: str) -> dict:
    """A teacher's notebook (JSON) -> its student edition: code through assign's
    release_text, written answers stubbed, no outputs in exercise cells, a note on top."""
    from minircnn.classroom.assign import release_text, strip_answers

    cells = []
    for cell in nb["cells"]:
        source = "".join(cell.get("source", ""))
        nbgrader = cell.get("metadata", {}).get("nbgrader", {})
        if cell["cell_type"] == "code":
            source = release_text(source, lesson)
            if nbgrader.get("solution") or nbgrader.get("grade"):
                cell = {**cell, "outputs": [], "execution_count": None}
            cell = {**cell, "outputs": [o for o in map(_static, cell.get("outputs", [])) if o]}
        else:
            source = strip_answers(source, lesson)
        cells.append({**cell, "source": source})
    note = {"cell_type": "markdown", "metadata": {}, "source": STUDENT_NOTE}
    metadata = {k: v for k, v in nb.get("metadata", {}).items() if k != "widgets"}
    nb = {**nb, "metadata": metadata}
    if "id" in nb["cells"][0]:
        note["id"] = "student-edition"
    return {**nb, "cells": [cells[0], note, *cells[1:]]}


WIDGET = "application/vnd.jupyter.widget-view+json"


def _static(output: dict) -> dict | None:
    """An output without its live widget (a tqdm bar whose script comes from a CDN, blank
    offline): its text stays; an output that was only a widget is dropped."""
    data = output.get("data", {})
    if WIDGET not in data:
        return output
    rest = {k: v for k, v in data.items() if k != WIDGET}
    return {**output, "data": rest} if rest else None


def executed(path: Path) -> dict:
    """The teacher's notebook at ``path`` run top to bottom in lessons/, cached by content."""
    import nbformat
    from nbclient import NotebookClient

    key = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    cached = _build["cache"] / "student-edition" / "executed" / f"{path.stem}-{key}.ipynb"
    if cached.is_file():
        return json.loads(cached.read_text(encoding="utf-8"))
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=1800, kernel_name="python3", config=kernel_config(),
                   resources={"metadata": {"path": str(LESSONS)}}).execute()
    cached.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, cached)
    return json.loads(cached.read_text(encoding="utf-8"))


def kernel_config():
    """The kernel manager's settings: CurveZMQ keys for the kernel's sockets.

    A kernel talks to the build over local TCP sockets; without keys every kernel warns
    "Kernel is running over TCP without encryption". With ``transport_encryption="auto"``
    jupyter_client gives each kernel a key pair (the python3 kernelspec declares
    ``supported_encryption: curve``), so the traffic is encrypted and the warning is not
    printed. A pyzmq built without CurveZMQ (``zmq.has("curve")`` False) or a
    jupyter_client without the setting keeps plain TCP, as before.
    """
    import zmq
    from jupyter_client.manager import KernelManager
    from traitlets.config import Config

    if not zmq.has("curve") or not KernelManager.class_traits().get("transport_encryption"):
        return Config()
    return Config({"KernelManager": {"transport_encryption": "auto"}})


# Lesson figures fill the lesson column (docs/assets/extra.css): LESSON_COLUMN_PX CSS
# pixels in a 1280 px browser window (measured in Chromium). Text of FONT_PT points (the
# size of matplotlib's tick and axis labels) in a figure W inches wide then shows at
# FONT_PT / 72 * LESSON_COLUMN_PX / W pixels, whatever the dpi: at most MAX_FIGURE_INCHES
# wide it stays at READABLE_PX or more.
LESSON_COLUMN_PX, FONT_PT, READABLE_PX = 617, 10, 9
MAX_FIGURE_INCHES = FONT_PT / 72 * LESSON_COLUMN_PX / READABLE_PX        # 9.5 inches


def figure_inches(png: bytes) -> float:
    """A PNG's width in inches: its pixels over its pHYs density (matplotlib writes it;
    100 dpi, matplotlib's default, where it is missing)."""
    width = int.from_bytes(png[16:20], "big")                 # IHDR's width
    at = png.find(b"pHYs")
    per_metre = int.from_bytes(png[at + 4:at + 8], "big") if at > 0 else 0
    dpi = per_metre * 0.0254 if per_metre and png[at + 12] == 1 else 100.0
    return width / dpi


def check_figures(nb: dict, lesson: str) -> None:
    """Warn (failing a --strict build) about a figure too wide for readable labels."""
    for index, cell in enumerate(nb["cells"]):
        for output in cell.get("outputs", []):
            data = output.get("data", {}).get("image/png")
            if not data:
                continue
            inches = figure_inches(base64.b64decode("".join(data)))
            if inches > MAX_FIGURE_INCHES:
                log.warning("%s, cell %d: a figure %.1f inches wide shows %d-point labels at "
                            "%.1f px on the site; make it at most %.1f inches wide (figsize), "
                            "or draw its panels in rows", lesson, index, inches, FONT_PT,
                            FONT_PT / 72 * LESSON_COLUMN_PX / inches, MAX_FIGURE_INCHES)


def write_student_edition(path: Path, target: Path, execute: bool) -> None:
    nb = executed(path) if execute else json.loads(path.read_text(encoding="utf-8"))
    check_figures(nb, path.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(student_edition(nb, path.stem), indent=1, ensure_ascii=False)
                      + "\n", encoding="utf-8")


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of every sub-command, in ``minircnn --help`` order."""
    for action in parser._actions:  # argparse has no public accessor for sub-parsers
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            return [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return []


def _help_text(parser: argparse.ArgumentParser) -> str:
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_WIDTH
    try:
        return parser.format_help()
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


def cli_reference() -> str:
    """The Markdown of cli.md: ``minircnn --help`` and each sub-command's ``--help``."""
    from minircnn.cli.main import build_parser

    parser = build_parser()
    lines = [
        "# Command line",
        "",
        "`minircnn COMMAND [options]` (or `python -m minircnn COMMAND ...`). This page is",
        "generated at every build from the command's own argument parser, so it lists",
        "exactly the options of the installed version.",
        "",
        "```text",
        _help_text(parser).rstrip(),
        "```",
    ]
    for name, summary, sub in _subcommands(parser):
        lines += ["", f"## minircnn {name}", "", summary[:1].upper() + summary[1:] + ".", "",
                  "```text", _help_text(sub).rstrip(), "```"]
    return "\n".join(lines) + "\n"


# API pages: (title, introduction) by page, one page per subpackage. A module goes on
# its subpackage's page; top-level modules (backend, viz) go on "utils".
API_PAGES = {
    "layers": ("Layers", "Each op is a pair `out, cache = op_forward(...)` / "
               "`grads = op_backward(dout, cache)`; the backward passes are derived in "
               "[Derivations](../layers/index.md)."),
    "detection": ("Detection", "Boxes, proposals, RoI sampling, inference and evaluation. "
                  "Nothing here imports the models: `detect` takes any object with a "
                  "`forward`."),
    "models": ("Models", "Backbones, the detector, the R-CNN / SPP-net baselines, "
               "checkpoints and the weights that ship with the package."),
    "data": ("Data", "The synthetic shapes dataset and its COCO export."),
    "training": ("Training", "The training loop and its config, SGD and its schedules, "
                 "run folders, metrics, transfer learning."),
    "gradcheck": ("Gradient checks", "Numerical gradients and the check of every layer "
                  "(`minircnn gradcheck`)."),
    "paper": ("The paper's tables", "`minircnn reproduce`: the detectors it trains, the "
              "rows it measures and the report it writes."),
    "perf": ("Performance", "`minircnn bench` and the GPU check."),
    "classroom": ("Classroom", "`minircnn assign` and `minircnn grade`: student copies of "
                  "the lessons and their grading."),
    "utils": ("Utilities", "Array backend, argument checks, atomic files, progress, drawing."),
}
# Internals left out of the reference: the command line (its own page, cli.md), the
# test suite's fake CuPy, and the grader's child process and sandbox plumbing.
NOT_DOCUMENTED = ("minircnn.__main__", "minircnn.cli.", "minircnn.testing.",
                  "minircnn.classroom.grade_child", "minircnn.classroom.grade_run",
                  "minircnn.classroom.sandbox", "minircnn.classroom.codec")


def _api_page_of(module: str) -> str:
    parts = module.split(".")  # "minircnn.layers.conv", "minircnn.viz"
    return parts[1] if len(parts) > 2 and parts[1] in API_PAGES else "utils"


def api_pages() -> dict[str, str]:
    """page name -> Markdown with one mkdocstrings block per module of the package."""
    import minircnn

    modules = [m.name for m in pkgutil.walk_packages(minircnn.__path__, "minircnn.")
               if not m.ispkg and not m.name.startswith(NOT_DOCUMENTED)]
    pages = {name: [f"# {title}", "", intro] for name, (title, intro) in API_PAGES.items()}
    for module in sorted(modules):
        pages[_api_page_of(module)] += ["", f"::: {module}"]
    return {name: "\n".join(lines) + "\n" for name, lines in pages.items()}
