"""The documentation site builds with ``mkdocs build --strict`` (no broken links, no page
missing from the navigation), its generated pages hold what they promise, and nothing
in the repository points outside it.

The build renders the lessons without executing them (MINIRCNN_DOCS_EXECUTE=false):
nbmake already executes every lesson in this test run. docs/contributing.md says why.
"""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS_PACKAGES = ("mkdocs", "material", "mkdocstrings", "mkdocs_jupyter")
MISSING = [name for name in DOCS_PACKAGES if importlib.util.find_spec(name) is None]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Build the site once into a temporary folder; return that folder."""
    if MISSING:
        pytest.skip(f"the docs extra is not installed (missing {', '.join(MISSING)}): "
                    "pip install -e '.[docs]'")
    site_dir = tmp_path_factory.mktemp("site")
    env = dict(os.environ, MINIRCNN_DOCS_EXECUTE="false", NO_MKDOCS_2_WARNING="1",
               MINIRCNN_DOCS_CACHE=str(tmp_path_factory.mktemp("nbcache")))
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    problems = [line for line in result.stderr.splitlines()
                if line.startswith(("WARNING", "ERROR"))]
    assert result.returncode == 0, "mkdocs build --strict failed:\n" + "\n".join(
        problems or result.stderr.splitlines()[-30:])
    return site_dir


def test_every_nav_page_is_built(site):
    for page in ("index.html", "getting-started/index.html", "design/index.html",
                 "layers/conv/index.html", "layers/roi_pool/index.html",
                 "lessons/index.html", "lessons/06_training/index.html",
                 "api/layers/index.html", "cli/index.html", "performance/index.html",
                 "reproduce/index.html", "reproduce/tables/index.html",
                 "contributing/index.html"):
        assert (site / page).is_file(), f"{page} missing from the built site"


def test_lesson_pages_are_the_student_edition(site):
    """lessons/ is the teacher's edition; the site shows (and offers for download) what
    `minircnn assign` releases: no solution, hidden test or model answer."""
    from minircnn.classroom.assign import BEGIN, read_cells, released_cells

    for notebook in sorted((ROOT / "lessons").glob("[0-9][0-9]_*.ipynb")):
        page = site / "lessons" / notebook.stem
        html = (page / "index.html").read_text(encoding="utf-8")
        download = (page / notebook.name).read_text(encoding="utf-8")
        for text in (html, download):
            for secret in ("BEGIN SOLUTION", "BEGIN HIDDEN TESTS", "def grade_"):
                assert secret not in text, f"{notebook.name}: the site shows {secret!r}"
        assert "Student edition" in html, notebook.name
        teacher = [c for c in read_cells(notebook) if BEGIN in c.source]
        if notebook.stem != "00_setup_and_data":
            assert teacher and "NotImplementedError" in html, notebook.name
        public = "\n".join(c.source for c in released_cells(read_cells(notebook), notebook.stem))
        for cell in teacher:      # no line of an answer (not also in the lesson) reaches it
            answer = cell.source.split(BEGIN, 1)[1].split("### END SOLUTION", 1)[0]
            lines = [ln.strip() for ln in answer.splitlines()
                     if len(ln.strip()) > 30 and ln.strip() not in public]
            assert lines and not any(line in download for line in lines), notebook.name


def test_cli_page_lists_every_subcommand_with_its_options(site):
    from minircnn.cli.main import build_parser

    html = (site / "cli" / "index.html").read_text()
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.choices and a.dest == "command")
    for name, sub in subparsers.choices.items():
        assert f"minircnn {name}" in html, f"cli page lacks the {name} command"
        for action in sub._actions:
            for flag in action.option_strings:
                assert flag in html, f"cli page lacks {name} {flag}"


def test_api_pages_render_the_docstrings(site):
    html = (site / "api" / "layers" / "index.html").read_text()
    assert "conv2d_forward" in html and "roi_pool_forward" in html
    assert "matches torch.nn.functional.linear" in html  # a docstring's own words


def test_derivations_carry_math_for_katex(site):
    html = (site / "layers" / "linear" / "index.html").read_text()
    assert 'class="arithmatex"' in html, "no equation found on the linear derivation"
    assert "assets/katex/katex.min.js" in html, "KaTeX (vendored) is not loaded"


def test_katex_is_vendored_not_fetched(site):
    for path in ("assets/katex/katex.min.js", "assets/katex/auto-render.min.js",
                 "assets/katex/katex.min.css", "assets/katex/fonts/KaTeX_Main-Regular.woff2"):
        assert (site / path).is_file(), f"{path} missing: equations would not render offline"


def test_home_shows_the_detections_picture(site):
    html = (site / "index.html").read_text()
    assert 'src="detections.png"' in html
    assert (site / "detections.png").is_file()


def test_nothing_points_outside_the_repository():
    """README, docs, lessons, package and tests name only files inside the repository
    (the design document is docs/design.md)."""
    outside = re.compile(r"shared folder|DESIGN\.md|STYLE\.md")
    texts = [ROOT / "README.md", *ROOT.glob("docs/**/*.md"), *ROOT.glob("lessons/*.md"),
             *ROOT.glob("lessons/*.py"), *ROOT.glob("minircnn/**/*.py"),
             *(p for p in ROOT.glob("tests/**/*.py") if p.name != "test_docs.py")]
    for path in texts:
        match = outside.search(path.read_text())
        assert match is None, (f"{path.relative_to(ROOT)} mentions {match.group()!r}, "
                               "which is not in the repository: point to docs/design.md")


def test_docs_extra_is_part_of_dev():
    """CI installs the dev extra, so the dev extra must pull in every docs package."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    extras = cfg["options.extras_require"]
    docs = {line.strip() for line in extras["docs"].splitlines() if line.strip()}
    dev = {line.strip() for line in extras["dev"].splitlines() if line.strip()}
    assert docs, "setup.cfg has no docs extra"
    assert docs <= dev, f"dev extra lacks docs packages: {sorted(docs - dev)}"


def _hook_module(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / "hooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docstrings_become_markdown_that_keeps_shapes_and_links():
    pytest.importorskip("griffe")
    markdown = _hook_module("docstrings").markdown
    assert markdown("dout (N, C*H*W) -> dx (N, C, H, W)") == \
        "dout `(N, C*H*W)` -> dx `(N, C, H, W)`"                   # no *H* italics
    assert markdown("see :func:`nms` and :class:`~minircnn.layers.Conv2d`") == \
        "see `nms` and `minircnn.layers.Conv2d`"
    assert markdown("Derivation: docs/layers/conv.md.") == \
        "Derivation: [docs/layers/conv.md](../layers/conv.md)."
    assert markdown("``cols[n, :, i*OW + j]`` (1 or 2)") == "``cols[n, :, i*OW + j]`` (1 or 2)"


def test_the_rendered_lessons_hold_no_live_widget(site):
    """tqdm's notebook bar is a widget whose script comes from a CDN: blank offline."""
    for page in sorted((site / "lessons").glob("*/index.html")):
        html = page.read_text(encoding="utf-8")
        assert "widget-view+json" not in html and "jsdelivr" not in html, page
    assert (site / "weights" / "index.html").is_file()
    assert "misses.png" in (site / "weights" / "index.html").read_text(encoding="utf-8")


def test_every_in_page_anchor_resolves(site):
    """Table-of-contents links land on their heading (lesson headings with inline code
    included)."""
    for page in sorted(site.glob("**/index.html")):
        html = page.read_text(encoding="utf-8")
        ids = set(re.findall(r'id="([^"]+)"', html))
        broken = sorted(set(re.findall(r'href="#([^"]+)"', html)) - ids)
        assert not broken, (page.relative_to(site), broken[:5])


def test_lessons_link_the_pages_they_name(site):
    """`docs/reproduce/tables.md` in a lesson is a link to that page of the site."""
    html = (site / "lessons" / "01_rcnn_to_fast_rcnn" / "index.html").read_text()
    assert '<a href="../../reproduce/tables/"><code>docs/reproduce/tables.md</code></a>' in html
    html = (site / "lessons" / "08_ablations_and_limits" / "index.html").read_text()
    assert '<a href="../../reproduce/"><code>docs/reproduce/</code></a>' in html


def test_docs_mentions_become_links_only_where_the_site_has_the_file():
    pytest.importorskip("mkdocs")
    from mkdocs.structure.files import File, Files

    link = _hook_module("minircnn_docs").link_docs_mentions
    files = Files([File(p, "docs", "site", True) for p in ("reproduce/index.md",
                                                          "reproduce/tables.md")])
    html = ('<p><code>docs/reproduce/tables.md</code> <code>docs/nowhere.md</code> '
            '<a href="x"><code>docs/reproduce/</code></a> <code>docs/reproduce/</code></p>')
    assert link(html, "../", files) == (
        '<p><a href="../reproduce/tables/"><code>docs/reproduce/tables.md</code></a> '
        '<code>docs/nowhere.md</code> <a href="x"><code>docs/reproduce/</code></a> '
        '<a href="../reproduce/"><code>docs/reproduce/</code></a></p>')


def _png(width_px: int, dpi: int) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width_px, 10)).save(buffer, "png", dpi=(dpi, dpi))
    return buffer.getvalue()


def test_a_lesson_figure_too_wide_for_readable_labels_fails_the_build(caplog):
    """Lesson figures are shown at the column's full width (docs/assets/extra.css); one
    so wide that its 10-point labels would shrink under 9 px warns, failing --strict."""
    import base64

    hooks = _hook_module("minircnn_docs")
    css = (ROOT / "docs" / "assets" / "extra.css").read_text()
    assert "jp-OutputArea-output img" in css and "width: 100%" in css
    assert hooks.figure_inches(_png(950, 100)) == pytest.approx(9.5, abs=0.01)
    assert hooks.figure_inches(_png(1900, 200)) == pytest.approx(9.5, abs=0.01)

    def notebook(width_px):
        png = base64.b64encode(_png(width_px, 100)).decode()
        return {"cells": [{"cell_type": "code", "outputs": [
            {"output_type": "display_data", "data": {"image/png": png}}]}]}
    hooks.check_figures(notebook(900), "narrow.ipynb")
    assert not caplog.records
    hooks.check_figures(notebook(1700), "wide.ipynb")
    assert "wide.ipynb, cell 0: a figure 17.0 inches wide" in caplog.text
