"""The table of minircnn bench's results: plain text for the terminal, rows for the docs.

The results are those of ``run_bench`` (perf/bench.py); scripts/performance_page.py
writes the rows into docs/performance.md."""

from __future__ import annotations

from minircnn.utils.text_tables import text_table

BENCH_HEADER = ("benchmark", "ms", "GFLOP/s", "% of matmul", "speed-up / part")


def bench_rows(results: dict) -> list[tuple[str, ...]]:
    """One row of formatted cells per entry of run_bench's results (see BENCH_HEADER)."""
    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    def relative(e):  # "12x" faster than compare_to, or "34% of whole" for a part
        if "pct_of_whole" in e:
            return f"{e['pct_of_whole']:.0f}% of whole"
        return fmt(e.get("speedup"), ".1f") + "x" * ("speedup" in e)

    return [(name, fmt(e["ms"], ".2f"), fmt(e["gflops"], ".1f"),
             fmt(e["pct_of_matmul"], ".1f"), relative(e))
            for name, e in results["entries"].items()]


def describe_run(results: dict) -> str:
    """One line: NumPy version, CPUs, load, threads, repeats and the matmul yardstick."""
    load = results.get("load_avg")
    cpus = f"{results.get('cpu_count')} CPUs" + ("" if load is None else f", load {load:.1f}")
    threads = results.get("blas_threads")
    timing = "" if threads is None else (f"{threads} BLAS thread{'s' * (threads != 1)}, "
                                         "CPU time of the thread unless named; ")
    kept = {True: "malloc keeps freed memory; "}.get(results.get("malloc_keeps_freed"), "")
    return (f"NumPy {results['numpy']}, {cpus}, {timing}{kept}best of {results['repeats']}; "
            f"float32 matmul {results['matmul_gflops']:.1f} GFLOP/s")


def format_bench_table(results: dict) -> str:
    """The results of run_bench as a plain-text table."""
    return describe_run(results) + "\n" + text_table(BENCH_HEADER, bench_rows(results),
                                                      right=(1, 2, 3, 4))
