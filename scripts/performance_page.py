"""Write the measured part of docs/performance.md from ``minircnn bench --json`` output.

    minircnn bench --json > bench.json
    python scripts/performance_page.py bench.json        # rewrites docs/performance.md

Only the text between the two markers below is replaced; the rest of the page is
written by hand. Without a JSON file the script runs the benchmark itself.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

from minircnn.perf.bench import run_bench
from minircnn.perf.bench_table import BENCH_HEADER, bench_rows, describe_run
from minircnn.utils.text_tables import markdown_table

PAGE = Path(__file__).resolve().parents[1] / "docs" / "performance.md"
BEGIN = "<!-- measured: begin (scripts/performance_page.py writes this part) -->"
END = "<!-- measured: end -->"


def measured_section(results: dict, date: str) -> str:
    """The machine, the run's settings, every whole benchmark as a Markdown table, then
    each whole's parts as a breakdown of its time."""
    machine = results.get("machine", {})
    wholes = {name: e for name, e in results["entries"].items() if "pct_of_whole" not in e}
    lines = [BEGIN, "",
             f"Measured {date} on {machine.get('cpu', 'an unknown CPU')}, "
             f"{machine.get('platform', 'unknown OS')}, BLAS: {machine.get('blas', 'unknown')}.",
             "", describe_run(results) + ".", "",
             markdown_table(BENCH_HEADER, bench_rows({**results, "entries": wholes}),
                            right=(1, 2, 3, 4))]
    for whole, parts in parts_by_whole(results["entries"]).items():
        lines += ["", *breakdown(whole, results["entries"][whole]["ms"], parts)]
    return "\n".join([*lines, "", END])


def parts_by_whole(entries: dict) -> dict[str, dict[str, float]]:
    """{whole's name: {part's name: ms}}: a part names its whole only through
    ``pct_of_whole``, so the whole is the entry whose time that percentage implies."""
    wholes = {name: e["ms"] for name, e in entries.items() if "pct_of_whole" not in e}
    found: dict[str, dict[str, float]] = {}
    for name, e in entries.items():
        if "pct_of_whole" in e:
            implied = 100.0 * e["ms"] / e["pct_of_whole"]          # the whole's ms
            whole = min(wholes, key=lambda w: abs(wholes[w] - implied))
            found.setdefault(whole, {})[name] = e["ms"]
    return found


def whole_percents(values) -> list[int]:
    """Percentages of the sum, rounded so that they add up to exactly 100: each share
    rounded down, then the points left over go to the largest remainders (Hamilton)."""
    values = list(values)
    exact = [100.0 * v / sum(values) for v in values]
    floors = [int(x) for x in exact]
    by_remainder = sorted(range(len(values)), key=lambda i: floors[i] - exact[i])
    for i in by_remainder[:100 - sum(floors)]:
        floors[i] += 1
    return floors


def breakdown(whole: str, whole_ms: float, parts: dict[str, float]) -> list[str]:
    """A whole's parts as shares of the parts' sum (a partition: they add up to 100 %),
    and a sentence comparing that sum with the whole timed in one piece."""
    total = sum(parts.values())
    rows = [(name.split(" part: ", 1)[-1], f"{ms:.2f}", f"{pct}%")
            for (name, ms), pct in zip(parts.items(), whole_percents(parts.values()),
                                       strict=True)]
    return [f"Where the time of **{whole}** goes: each stage timed alone, as a share of "
            f"the stages' sum. Timed one at a time the {len(parts)} stages take "
            f"{total:.2f} ms, {100.0 * total / whole_ms:.0f}% of the {whole_ms:.2f} ms of "
            "the whole timed in one piece: a stage run alone keeps its data in the caches "
            "and shares them with no other stage, so the shares say where the time goes, "
            "not how the whole's milliseconds split exactly.", "",
            markdown_table(("stage", "ms alone", "share of the stages"), rows,
                           right=(1, 2))]


def replace_section(page: str, section: str) -> str:
    """``page`` with the text between BEGIN and END (markers included) replaced."""
    if BEGIN not in page or END not in page:
        raise ValueError(f"{PAGE} lacks the markers {BEGIN!r} ... {END!r}")
    head, rest = page.split(BEGIN, 1)
    return head + section + rest.split(END, 1)[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="?", help="output of `minircnn bench --json`")
    parser.add_argument("--page", default=str(PAGE), help="the page to rewrite")
    args = parser.parse_args(argv)
    results = json.loads(Path(args.json).read_text()) if args.json else run_bench()
    date = datetime.date.today().isoformat()
    page = Path(args.page)
    page.write_text(replace_section(page.read_text(), measured_section(results, date)))
    print(f"wrote {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
