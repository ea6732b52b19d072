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

from minircnn.perf.bench import BENCH_HEADER, bench_rows, describe_run, run_bench
from minircnn.utils.text_tables import markdown_table

PAGE = Path(__file__).resolve().parents[1] / "docs" / "performance.md"
BEGIN = "<!-- measured: begin (scripts/performance_page.py writes this part) -->"
END = "<!-- measured: end -->"


def measured_section(results: dict, date: str) -> str:
    """The machine, the run's settings and every benchmark entry as a Markdown table."""
    machine = results.get("machine", {})
    lines = [BEGIN, "",
             f"Measured {date} on {machine.get('cpu', 'an unknown CPU')}, "
             f"{machine.get('platform', 'unknown OS')}, BLAS: {machine.get('blas', 'unknown')}.",
             "", describe_run(results) + ".", "",
             markdown_table(BENCH_HEADER, bench_rows(results), right=(1, 2, 3, 4)), "", END]
    return "\n".join(lines)


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
