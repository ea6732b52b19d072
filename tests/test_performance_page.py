"""scripts/performance_page.py: the generated part of docs/performance.md."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("performance_page",
                                                  ROOT / "scripts" / "performance_page.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RESULTS = {"numpy": "2.0.0", "repeats": 3, "cpu_count": 2, "load_avg": 1.5,
           "machine": {"platform": "Linux-x86_64", "cpu": "Some CPU", "blas": "openblas"},
           "matmul_gflops": 50.0,
           "entries": {"matmul float32 1024^3": {"ms": 40.0, "flops": 2e9, "gflops": 50.0,
                                                 "pct_of_matmul": 100.0},
                       "relu fwd+bwd": {"ms": 2.5, "flops": None, "gflops": None,
                                        "pct_of_matmul": None},
                       # a whole and its parts, timed alone: they add up to 110 % of it
                       "step": {"ms": 20.0, "flops": None, "gflops": None,
                                "pct_of_matmul": None},
                       "step part: a": {"ms": 11.0, "flops": None, "gflops": None,
                                        "pct_of_matmul": None, "pct_of_whole": 55.0},
                       "step part: b": {"ms": 5.5, "flops": None, "gflops": None,
                                        "pct_of_matmul": None, "pct_of_whole": 27.5},
                       "step part: c": {"ms": 5.5, "flops": None, "gflops": None,
                                        "pct_of_matmul": None, "pct_of_whole": 27.5}}}


def test_rewrites_only_the_measured_section(tmp_path):
    script = _script()
    page = tmp_path / "performance.md"
    page.write_text(f"# by hand\n\n{script.BEGIN}\nold\n{script.END}\n\nafter\n")
    assert script.main([str(_json(tmp_path)), "--page", str(page)]) == 0
    text = page.read_text()
    assert text.startswith("# by hand\n") and text.endswith("\n\nafter\n")
    assert "old" not in text and "Some CPU" in text and "load 1.5" in text
    assert "| relu fwd+bwd | 2.50 | - | - | - |" in text


def test_a_wholes_parts_are_a_breakdown_that_adds_up_to_100_percent(tmp_path):
    """The parts, each timed alone, may add up to more (or less) than the whole: the page
    shows them as shares of their sum, and says how their sum compares with the whole."""
    script = _script()
    page = tmp_path / "performance.md"
    page.write_text(f"{script.BEGIN}\n{script.END}\n")
    script.main([str(_json(tmp_path)), "--page", str(page)])
    text = page.read_text()
    assert "| step | 20.00 | - | - | - |" in text and "% of whole" not in text
    assert "step part:" not in text                  # parts only in the breakdown
    assert "the 3 stages take 22.00 ms, 110% of the 20.00 ms" in text
    assert "| a | 11.00 | 50% |" in text
    assert "| b | 5.50 | 25% |" in text and "| c | 5.50 | 25% |" in text


def test_percentages_of_a_sum_add_up_to_exactly_100():
    percents = _script().whole_percents
    assert percents([1, 1, 1]) == [34, 33, 33]
    assert percents([25.56, 15.86, 12.82, 4.22]) == [44, 27, 22, 7]
    assert sum(percents([3.3, 7.1, 0.2, 9.9, 1.0])) == 100


def test_page_in_docs_has_the_markers_and_missing_markers_fail(tmp_path):
    script = _script()
    text = (ROOT / "docs" / "performance.md").read_text()
    assert script.BEGIN in text and script.END in text
    with pytest.raises(ValueError, match="lacks the markers"):
        script.replace_section("no markers", "section")


def _json(tmp_path):
    import json

    path = tmp_path / "bench.json"
    path.write_text(json.dumps(RESULTS))
    return path
