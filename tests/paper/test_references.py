"""Every citation of the Fast R-CNN paper in the README, docs, lessons and package names a
section, table, figure or equation that exists (minircnn/paper/references.py) and fits
its topic: a sentence about image pyramids cites 2.4, 3, 5.2 or Table 7, not 5.4.

A citation is ``§5.2``, ``section 5.2``, ``Sec. 5.2``, ``Table 7``, ``Tables 4-8``,
``Figure 2``, ``Fig. 2`` or ``eq. 3``. It cites the paper named shortly before it, else
the one its first lines name (a module about the RPN cites Faster R-CNN). One followed
by "above"/"below", after "lesson NN's", or, in a lesson, a "section N" with no paper
named before it, cites a lesson's own numbered part (its "## N." heading must exist).
"""

import re
from pathlib import Path
from typing import NamedTuple

import pytest

from minircnn.paper import references as refs

ROOT = Path(__file__).resolve().parents[2]
LESSONS = ROOT / "lessons"

CITATION = re.compile(
    r"(?P<sec>(?:§\s?|\b(?:[Ss]ections?|[Ss]ec\.)\s+)(?P<secnum>\d+(?:\.\d+)*))"
    r"|(?P<tab>\bTables?\s+(?P<tabnum>\d+)(?:\s?[–-]\s?(?P<tabend>\d+))?)"
    r"|(?P<fig>\b(?:Figures?|Figs?\.)\s+(?P<fignum>\d+)(?:\s?[–-]\s?(?P<figend>\d+))?)"
    r"|(?P<eq>\b(?:[Ee]q\.|[Ee]quations?)\s?\(?(?P<eqnum>\d+)\)?)")
LESSON_PART = re.compile(r"(?:this lesson's|lesson (?P<lesson>\d\d)'s)\s*$")
ABOVE_BELOW = re.compile(r"^\s+(?:#\s*)?(?:above|below)\b")
# a sentence ends at . ! ?, a blank (comment) line or a markdown table's row
SENTENCE_END = re.compile(r"[.!?](?:\s|$)|\n\s*\n|\n\s*#\s*\n|\|?\n\s*(?:#\s*)?\|")
WINDOW = 120  # characters of context either side of a citation


class Citation(NamedTuple):
    path: Path
    line: int
    text: str        # as written, e.g. "section 5.2"
    refs: tuple      # normalised: ("§5.2",) or ("Table 4", ..., "Table 8")
    before: str      # the sentence before it, up to the previous citation
    after: str       # the sentence after it, up to the next citation


def _texts():
    paths = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")),
             *sorted(LESSONS.glob("[0-9][0-9]_*.py")), *sorted((ROOT / "minircnn").rglob("*.py")),
             *sorted((ROOT / "minircnn").rglob("*.md"))]
    table = ROOT / "minircnn" / "paper" / "references.py"  # the table itself, not a citation
    return [p for p in paths if p.is_file() and p != table]


def _normalise(match) -> tuple:
    if match["sec"]:
        return (f"§{match['secnum']}",)
    for kind, key in (("Table", "tab"), ("Figure", "fig"), ("eq.", "eq")):
        if match[key]:
            first = int(match[f"{key}num"])
            last = int(match.groupdict().get(f"{key}end") or first)
            return tuple(f"{kind} {n}" for n in range(first, last + 1))
    raise AssertionError(match)


def _clip_left(text: str) -> str:
    ends = list(SENTENCE_END.finditer(text))
    return text[ends[-1].end():] if ends else text


def _clip_right(text: str) -> str:
    end = SENTENCE_END.search(text)
    return text[:end.start()] if end else text


def citations(path: Path) -> list[Citation]:
    text = path.read_text()
    matches = list(CITATION.finditer(text))
    found = []
    for i, m in enumerate(matches):
        left_bound = max(matches[i - 1].end() if i else 0, m.start() - WINDOW)
        right_bound = min(matches[i + 1].start() if i + 1 < len(matches) else len(text),
                          m.end() + WINDOW)
        before, after = text[left_bound:m.start()], text[m.end():right_bound]
        line_start = text.rfind("\n", 0, m.start()) + 1
        code = text[line_start:m.start()].partition("#")[0]
        if path.suffix == ".py" and "#" in text[line_start:m.start()] and code.strip():
            # an end-of-line comment: its context is that comment, not the next lines' code
            before = before[len(before) - (m.start() - line_start - len(code)):]
            after = after.partition("\n")[0]
        found.append(Citation(path, text.count("\n", 0, m.start()) + 1, m.group(0),
                              _normalise(m), _clip_left(before), _clip_right(after)))
    return found


ALL = [c for path in _texts() for c in citations(path)]


def _which(c: Citation) -> str:
    """"lesson NN" for a lesson's own part, else the paper's name."""
    lesson = LESSON_PART.search(c.before)
    if lesson:
        return f"lesson {lesson['lesson'] or c.path.stem[:2]}"
    in_lesson = c.path.parent == LESSONS
    if in_lesson and ABOVE_BELOW.match(c.after):
        return f"lesson {c.path.stem[:2]}"
    if in_lesson and re.fullmatch(r"§\d+", c.refs[0]) and not re.search(
            r"paper|Fast(er)? R-CNN", c.before):
        return f"lesson {c.path.stem[:2]}"      # a bare "section 4" in a lesson: its own part
    text = c.path.read_text()
    wider = text.splitlines()[max(0, c.line - 3):c.line]
    near = " ".join(wider)[-300:] if "Faster R-CNN" not in c.before else c.before
    names = re.findall(r"Faster R-CNN|Fast R-CNN", near)
    if names:                                  # the paper named just before the citation
        return names[-1]
    head = "\n".join(text.splitlines()[:3])              # else the module's own paper
    first = re.search(r"Faster R-CNN|Fast R-CNN", head)
    return first.group(0) if first else "Fast R-CNN"


def _id(c: Citation) -> str:
    return f"{c.path.relative_to(ROOT)}:{c.line}:{c.text}"


def test_the_scan_finds_the_citations():
    # The scanner must see the README's and the lessons' citations, or every check passes.
    assert len(ALL) > 50
    assert any(c.path.name == "README.md" for c in ALL)
    assert any(c.path.parent == LESSONS for c in ALL)


def test_the_table_has_every_section_table_and_figure_of_the_paper():
    paper = refs.FAST_RCNN
    assert set(paper.sections) == {
        "1", "1.1", "1.2", "2", "2.1", "2.2", "2.3", "2.4", "3", "3.1", "4", "4.1", "4.2",
        "4.3", "4.4", "4.5", "5", "5.1", "5.2", "5.3", "5.4", "5.5", "5.6", "6"}
    assert sorted(paper.tables) == list(range(1, 9))
    assert sorted(paper.figures) == [1, 2, 3]
    assert sorted(paper.equations) == [1, 2, 3, 4, 5]
    for paper, topics in refs.PAPERS.values():
        for topic in topics:
            missing = [r for r in topic.refs if not refs.exists(paper, r)]
            assert not missing, f"topic {topic.name!r} names {missing}, not in {paper.name}"


def problem(c: Citation) -> str | None:
    """What is wrong with citation ``c``, or None."""
    which = _which(c)
    where = f"{c.path.relative_to(ROOT) if c.path.is_relative_to(ROOT) else c.path}:{c.line}"
    if which.startswith("lesson"):
        lesson = next(LESSONS.glob(f"{which[-2:]}_*.py"), None)
        if lesson is None:
            return f"{where}: {c.text!r} names a part of {which}, which does not exist"
        for ref in c.refs:
            part = ref.lstrip("§").split()[-1]
            if not re.search(rf"^# ## {re.escape(part)}\. ", lesson.read_text(), re.M):
                return f"{where}: {c.text!r}: {lesson.name} has no part {part}"
        return None
    paper, topics = refs.PAPERS[which]
    for ref in c.refs:
        if not refs.exists(paper, ref):
            return (f"{where}: {c.text!r} cites {ref} of the {paper.name} paper, which has no "
                    "such place (minircnn/paper/references.py lists them)")
    if len(c.refs) > 1:
        return None  # a range ("Tables 4-8") names several topics at once
    context = c.before + " " + c.after
    mentioned = [t for t in topics if re.search(t.pattern, context, re.I)]
    if mentioned and not any(c.refs[0] in t.refs for t in mentioned):
        fits = "; ".join(f"{t.name}: {', '.join(sorted(t.refs))}" for t in mentioned)
        return (f"{where}: {c.text!r} cites {refs.describe(paper, c.refs[0])}, but the "
                f"sentence is about {fits} ({paper.name} paper; minircnn/paper/references.py)")
    return None


@pytest.mark.parametrize("c", ALL, ids=[_id(c) for c in ALL])
def test_citation_names_a_place_that_exists_and_fits_its_topic(c):
    assert problem(c) is None, problem(c)


@pytest.mark.parametrize("text, wrong", [
    ("The image pyramid (1x and 2x, paper section 5.4) helps small shapes.", True),
    ("The image pyramid (1x and 2x, paper section 5.2) helps small shapes.", False),
    ("More training data (section 5.2) did not help here.", True),
    ("More training data (section 5.3) did not help here.", False),
    ("Softmax against SVMs: Table 8 of the paper.", False),
    ("Softmax against SVMs: Table 6 of the paper.", True),
    ("Truncated SVD of fc6 (paper section 3.1).", False),
    ("Truncated SVD of fc6 (paper section 3.2).", True),
    ("Multi-task training helps (Table 6).", False),
    ("Fine-tuning from conv3_1 up (paper section 4.5, Table 5).", False),
    ("Fine-tuning from conv3_1 up (Table 8).", True),
    ("Selective search takes 2 s per image (Faster R-CNN paper, section 1).", False),
    ("Selective search takes 2 s per image (Faster R-CNN paper, section 3.2).", True),
    ("Figure 4 of the paper.", True),
    ("Tables 4-9 of the paper.", True),
])
def test_the_check_catches_wrong_citations(tmp_path, text, wrong):
    path = tmp_path / "page.md"
    path.write_text(text + "\n")
    found = citations(path)
    assert found, f"no citation found in {text!r}"
    assert any(problem(c) for c in found) == wrong, [problem(c) for c in found]


@pytest.mark.parametrize("before, text, refs, wrong", [
    ("the loss by hand of ", "section 4", ("§4",), False),      # lesson 04 has a part 4
    ("the loss by hand of ", "section 9", ("§9",), True),       # ... and no part 9
    ("as the paper says (", "section 9", ("§9",), True),        # the paper has no section 9
    ("the softmax against SVMs (paper ", "section 5.4", ("§5.4",), False),
])
def test_lesson_parts_and_paper_sections_are_told_apart(before, text, refs, wrong):
    lesson = next((ROOT / "lessons").glob("04_*.py"))
    c = Citation(lesson, 1, text, refs, before, "")
    assert bool(problem(c)) == wrong, problem(c)


def test_the_reports_paper_numbers_are_the_papers():
    # Each row of `minircnn reproduce` quotes the paper's number beside the toy's.
    from minircnn.paper.report import PAPER

    paper_text = " ".join(e.reports for e in (*refs.FAST_RCNN.sections.values(),
                                               *refs.FAST_RCNN.tables.values(),
                                               *refs.FAST_RCNN.figures.values()))
    in_paper = set(re.findall(r"\d+\.\d+|\d+", paper_text))
    for row, (_, quoted) in PAPER.items():
        numbers = set(re.findall(r"\d+\.\d+|\d+", quoted))
        assert numbers <= in_paper, f"{row}: {quoted!r} is not what the paper reports"
