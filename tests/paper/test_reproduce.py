"""`minircnn reproduce --quick`: every row runs, results are saved per row and reused."""

import json
import os

import numpy as np
import pytest

from minircnn.cli.main import main
from minircnn.models.pretrained import VGG_FILE
from minircnn.paper.reproduce import reproduce
from minircnn.paper.rows import ROWS, NoBoxRegression, variants_of
from minircnn.paper.variants import ReproduceConfig

pytestmark = pytest.mark.skipif(not os.path.isfile(VGG_FILE), reason="shipped weights missing")


@pytest.fixture(autouse=True)
def _restore_blas_env(monkeypatch):
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(var, os.environ.get(var, "1"))


def test_every_row_names_the_detectors_it_loads():
    from minircnn.paper.variants import VARIANTS

    for row in ROWS:
        assert variants_of(row) and set(variants_of(row)) <= set(VARIANTS), row.id


def test_every_variant_trains_in_one_pass_per_minibatch():
    """Its detectors train in worker processes, a core each, and its recorded rows were
    trained in one pass per minibatch: ``train_workers`` 1 keeps them reproducible."""
    from minircnn.paper.variants import VARIANTS, variant_config

    for quick in (True, False):
        config = ReproduceConfig(quick=quick)
        assert {variant_config(config, v, 0).train_workers for v in VARIANTS} == {1}


AP_KEYS = ("coco_AP", "voc_mAP", "voc07_mAP")


def test_quick_run_writes_every_row_the_tables_and_figures(tmp_path, capsys):
    assert main(["reproduce", "--quick", "--out", str(tmp_path), "--workers", "2"]) == 0
    models = sorted(os.listdir(tmp_path / "models"))      # trained first, two at a time
    assert models == sorted(f"{v}_s0" for v in {v for r in ROWS for v in variants_of(r)})
    assert f"{len(ROWS)} rows" in capsys.readouterr().out
    for row in ROWS:
        saved = json.loads((tmp_path / "rows" / f"{row.id}.json").read_text())
        assert saved["seeds"] == [0] and len(saved["runs"]) == 1
    text = (tmp_path / "tables.md").read_text()
    assert "QUICK MODE" in text and "mAP 66.9" in text and "not run" not in text
    assert "Where the toy differs from the paper" in text and "Table 4's claims" in text
    assert "COCO AP, RPN (Faster R-CNN)" in text and "COCO AP, selective search" in text
    rpn = json.loads((tmp_path / "rows" / "figure3_rpn.json").read_text())["runs"][0]["rpn"]
    assert [p["k"] for p in rpn] == [p["k"] for p in json.loads(
        (tmp_path / "rows" / "figure3_proposals.json").read_text())["runs"][0][
        "selective_search"]]
    assert all(0 <= p["recall"] <= 1 and 0 <= p["coco_AP"] <= 1 for p in rpn)
    for name in ("figure2_svd.png", "figure3_proposals.png", "data_grid.png", "results.json",
                 "run.json", "detectors.json"):
        assert (tmp_path / name).is_file(), name
    # what the run cost: every detector's CPU time, its tests' and the rows' own
    detectors = json.loads((tmp_path / "detectors.json").read_text())
    assert sorted(detectors) == models
    assert all(d["cpu_s"] > 0 and d["evals_cpu_s"] is not None for d in detectors.values())
    assert "Testing the detectors and measuring the rows took" in text
    # rows that test one detector alike read one evaluation, run once before the rows
    evals = tmp_path / "models" / "fast_rcnn_s0" / "evals"
    assert sorted(os.listdir(evals)) == ["scales_1-2.json", "scales_own.json",
                                         "scales_own_svd0.25_svd0.0625.json"]
    shared = json.loads((evals / "scales_own.json").read_text())
    for r in ("table4_fast_rcnn", "table5_from_block3", "table8_softmax"):
        run = json.loads((tmp_path / "rows" / f"{r}.json").read_text())["runs"][0]
        assert {k: run[k] for k in AP_KEYS} == {k: shared[k] for k in AP_KEYS}, r
    assert not json.loads((tmp_path / "models" / "fast_rcnn_s0" / "metrics.json")
                          .read_text()).get("eval")      # reproduce tests its detectors itself
    # R-CNN's later stages wrote every training box's features to disk
    rcnn = json.loads((tmp_path / "rows" / "table4_rcnn.json").read_text())["runs"][0]
    features = tmp_path / "models" / "rcnn_s0" / "stages" / "features.npy"
    assert rcnn["feature_bytes"] == features.stat().st_size > 0
    fast = json.loads((tmp_path / "rows" / "table4_fast_rcnn.json").read_text())["runs"][0]
    assert rcnn["backbone_passes"] > fast["backbone_passes"] == 1
    assert rcnn["test_macs"] > fast["test_macs"]

    # resumable: a finished row is read back, not recomputed
    row = tmp_path / "rows" / "table5_all.json"
    saved = json.loads(row.read_text())
    saved["runs"][0]["coco_AP"] = 0.123
    row.write_text(json.dumps(saved))
    again = reproduce(ReproduceConfig(out_dir=str(tmp_path), quick=True, seeds=(0,)),
                      progress=False)
    assert again["rows"]["table5_all"]["runs"][0]["coco_AP"] == 0.123
    assert "0.123" in (tmp_path / "tables.md").read_text()
    # a row measured with other seeds is measured again
    saved["seeds"] = [5]
    row.write_text(json.dumps(saved))
    again = reproduce(ReproduceConfig(out_dir=str(tmp_path), quick=True, seeds=(0,),
                                      rows=("table5_all",)), progress=False)
    assert again["rows"]["table5_all"]["seeds"] == [0]
    assert again["rows"]["table5_all"]["runs"][0]["coco_AP"] != 0.123
    assert list(again["rows"]) == ["table5_all"]
    text = (tmp_path / "tables.md").read_text()      # the other saved rows still shown
    assert "not run" not in text and "RPN (Faster R-CNN)" in text
    assert len(json.loads((tmp_path / "run.json").read_text())) == 3   # every invocation


def test_unknown_row_prefix_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no row matches.*table4_rcnn"):
        reproduce(ReproduceConfig(out_dir=str(tmp_path), quick=True, rows=("nope",)))


class _Fixed:
    """A stand-in detector: scores and deltas from the RoI coordinates."""
    num_classes = 2
    training = False

    def forward(self, images, rois):
        cls = np.stack([rois[:, 3] - rois[:, 1], rois[:, 0], np.ones(len(rois))], axis=1)
        return cls, np.ones((len(rois), 12)) * images.shape[-1]


def test_no_box_regression_scores_the_proposals_themselves():
    images = np.zeros((1, 3, 16, 16))
    rois = np.array([[0, 0, 0, 4, 4], [0, 2, 2, 14, 14]], float)
    cls, deltas = NoBoxRegression(_Fixed()).forward(images, rois)
    assert not deltas.any() and cls[1, 0] == 12


def test_the_committed_run_is_what_the_report_makes_of_its_results(tmp_path):
    """docs/reproduce holds one run: rows in the table order, every row with the run's
    seeds, Table 4 among them, and the tables.md that write_report makes of its
    results.json, run.json and detectors.json (all but the line naming the machine)."""
    from minircnn.paper.report import write_report

    committed = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "reproduce")
    with open(os.path.join(committed, "results.json")) as f:
        results = json.load(f)
    order = [row.id for row in ROWS]
    assert list(results) == [r for r in order if r in results]
    assert {"table4_rcnn", "table4_sppnet", "table4_fast_rcnn"} <= set(results)
    seeds = results["table4_fast_rcnn"]["seeds"]
    assert all(r["seeds"] == seeds and len(r["runs"]) == len(seeds) for r in results.values())
    with open(os.path.join(committed, "tables.md")) as f:
        expected = f.read().splitlines()
    config = ReproduceConfig(out_dir=str(tmp_path), seeds=tuple(seeds),
                             quick=any("QUICK MODE" in line for line in expected))
    saved = {}
    for name in ("run.json", "detectors.json"):
        path = os.path.join(committed, name)
        if os.path.isfile(path):
            with open(path) as f:
                saved[name] = json.load(f)
    write_report(config, results, saved.get("run.json"), saved.get("detectors.json"))
    made = (tmp_path / "tables.md").read_text().splitlines()
    assert [line for line in made if "Machine:" not in line] == \
        [line for line in expected if "Machine:" not in line]


def test_figure3_table_puts_each_method_curve_side_by_side():
    from minircnn.paper.report import _figure3_table

    def point(k, ap):
        return {"k": k, "coco_AP": ap, "recall": ap / 2}
    results = {
        "figure3_proposals": {"runs": [{"selective_search": [point(10, 0.2), point(300, 0.4)],
                                        "dense": [point(1000, 0.1)]}]},
        "figure3_rpn": {"runs": [{"rpn": [point(10, 0.3), point(300, 0.5)]}]}}
    lines = _figure3_table(results)
    assert "COCO AP, RPN (Faster R-CNN)" in lines[0] and "recall, dense" in lines[0]
    assert lines[2:] == ["| 10 | 0.200 | 0.100 |  |  | 0.300 | 0.150 |",
                         "| 300 | 0.400 | 0.200 |  |  | 0.500 | 0.250 |",
                         "| 1000 |  |  | 0.100 | 0.050 |  |  |"]
    assert _figure3_table({}) == []
