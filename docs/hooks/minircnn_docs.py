"""MkDocs hooks of the minircnn site (mkdocs.yml `hooks:`), run at every build.

- The lessons stay in lessons/ (their home, next to their jupytext scripts): this hook
  adds lessons/README.md and lessons/NN_*.ipynb to the site under lessons/, before
  mkdocs-jupyter turns each notebook into a page.
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
import logging
import os
import pkgutil
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
LESSONS = ROOT / "lessons"
HELP_WIDTH = "88"  # columns argparse wraps the help text at, whatever the terminal
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
log = logging.getLogger("mkdocs.hooks.minircnn")  # warnings here fail a --strict build


def on_config(config):
    # Read by the kernels that mkdocs-jupyter starts to execute the lessons.
    os.environ["MPLBACKEND"] = INLINE_BACKEND
    os.environ["TQDM_DISABLE"] = "1"
    return config


def on_page_content(html: str, page, config, files) -> str:
    if page.file.src_uri.endswith(".ipynb") and "&lt;Figure size" in html:
        log.warning("%s: a figure was printed as text (<Figure size ...>) instead of "
                    "drawn: end the cell with the Figure, or draw with pyplot",
                    page.file.src_uri)
    return html


@event_priority(50)  # before mkdocs-jupyter (priority 0) wraps the notebooks
def on_files(files: Files, config) -> Files:
    for path in [LESSONS / "README.md", *sorted(LESSONS.glob("[0-9][0-9]_*.ipynb"))]:
        files.append(File(path.relative_to(ROOT).as_posix(), src_dir=str(ROOT),
                          dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))
    files.append(File.generated(config, "cli.md", content=cli_reference()))
    for name, content in api_pages().items():
        files.append(File.generated(config, f"api/{name}.md", content=content))
    return files


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


# API pages: (title, introduction) by page; a subpackage's modules go on its own page
# (when it has one), other modules on "train" when listed in TRAINING, else "utilities".
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
    "train": ("Training", "Training loops and their configs, SGD and its schedules, "
              "transfer learning, truncated SVD of the head."),
    "utilities": ("Utilities", "Array backend, gradient checking, benchmarks, drawing, "
                  "files, classroom assignments."),
}
TRAINING = ("train", "optim", "transfer", "compress", "reproduce")
NOT_DOCUMENTED = ("__main__", "cli")  # the command line has its own page, cli.md


def _api_page_of(module: str) -> str:
    parts = module.split(".")  # "minircnn.layers.conv" or "minircnn.training.loop"
    if len(parts) > 2 and parts[1] in API_PAGES:
        return parts[1]
    return "train" if parts[1] in TRAINING else "utilities"


def api_pages() -> dict[str, str]:
    """page name -> Markdown with one mkdocstrings block per module of the package."""
    import minircnn

    modules = [m.name for m in pkgutil.walk_packages(minircnn.__path__, "minircnn.")
               if not m.ispkg and m.name.split(".")[-1] not in NOT_DOCUMENTED]
    pages = {name: [f"# {title}", "", intro] for name, (title, intro) in API_PAGES.items()}
    for module in sorted(modules):
        pages[_api_page_of(module)] += ["", f"::: {module}"]
    return {name: "\n".join(lines) + "\n" for name, lines in pages.items()}
