"""tables.md and the figures of `minircnn reproduce`, from the rows' JSON results.

Each cell is the mean over seeds with the range (min-max) beside it, so a reader can
tell a real difference from seed noise; the paper's number (VGG16 "L" on VOC 2007
test, mAP in %) sits in its own column. Rows not run are shown as "not run".
"""

from __future__ import annotations

import os
import platform

import numpy as np

from minircnn.utils.fileio import write_json

# (table, row id, what the row is, the paper's number(s)) -- Girshick, Fast R-CNN, ICCV 2015.
# row id -> (what the row is, the paper's number(s)) -- Girshick, Fast R-CNN, ICCV 2015.
PAPER = {
    "table4_rcnn": ("R-CNN: context warps, fine-tuned; SVMs + box regressors on cached "
                    "features", "train 84 h, test 47.0 s/im, mAP 66.0"),
    "table4_toy_rcnn_softmax": ("R-CNN's fine-tuned network alone: softmax, no box "
                            "regression (toy only)", "not in the paper"),
    "table4_sppnet": ("SPP-net: fixed convs, {6,3,2,1} pyramid, tested on 2 scales; SVMs + "
                      "box regressors", "train 25 h, test 2.3 s/im, mAP 63.1"),
    "table4_toy_sppnet_one_scale": ("SPP-net's fine-tuned fc layers alone: softmax, one scale "
                                "(toy only)", "not in the paper"),
    "table4_fast_rcnn": ("Fast R-CNN", "train 9.5 h, test 0.32 s/im, mAP 66.9"),
    "table4_fast_rcnn_svd": ("Fast R-CNN + truncated SVD", "test 0.22 s/im, mAP 66.6"),
    "table5_fc_only": ("fine-tune fc layers only", "mAP 61.4"),
    "table5_from_block3": ("fine-tune from conv3_1 (toy: block 3) up", "mAP 66.9"),
    "table5_all": ("fine-tune from conv2_1 (toy: all blocks)", "mAP 67.2, 1.3x train time"),
    "table6_cls_only_no_box": ("classification only, no box regression", "mAP 62.6"),
    "table6_multitask_no_box": ("multi-task training, no box regression at test", "mAP 63.4"),
    "table6_stagewise": ("stage-wise: classifier, then box regressor", "mAP 64.0"),
    "table6_multitask": ("multi-task training, box regression at test", "mAP 66.9"),
    "table7_one_scale": ("one scale, in training and at test", "S 57.1, M 59.2, L 66.9"),
    "table7_pyramid_test": ("image pyramid at test only (toy only)", "not in the paper"),
    "table7_pyramid": ("image pyramid in training and at test", "S 58.4, M 60.7 (5 scales)"),
    "table8_svm": ("one-vs-rest linear SVMs (hard-negative mining)", "mAP 66.8"),
    "table8_softmax": ("softmax", "mAP 66.9"),
}
SECTIONS = (("table4", "Table 4: R-CNN vs SPP-net vs Fast R-CNN"),
            ("table5", "Table 5: which layers to fine-tune"),
            ("table6", "Table 6: multi-task training"),
            ("table7", "Table 7: scale invariance"),
            ("table8", "Table 8: softmax vs SVMs"))


def _differences() -> str:
    """The page's last section; its settings are read from the code that runs them."""
    from minircnn.paper.variants import (
        FIXED_FEATURES_LR,
        FULL_BASE,
        GRID_ITERS,
        GRID_SIZES,
        VARIANTS,
    )
    from minircnn.training.config import RCNN_CROP, TrainConfig

    base = TrainConfig()
    iters = FULL_BASE["epochs"] * base.num_train // base.images_per_batch
    shipped = base.epochs * base.num_train // base.images_per_batch
    grid = len([v for v in VARIANTS if v.startswith("data")])
    main = len([v for v in VARIANTS if not v.startswith("data") and v != "faster_rcnn"])
    return f"""\
## Where the toy differs from the paper, and why

- **Data and backbone.** Synthetic {base.image_size}x{base.image_size} shapes images
  (3 classes) instead of VOC (20 classes); a 4-block SmallVGG run at feature stride
  {2 ** base.num_pools}, pretrained on {RCNN_CROP}x{RCNN_CROP} shapes crops, instead of
  VGG16 (stride 16) pretrained on ImageNet. Everything runs on two CPU cores, so the
  times are seconds, not hours; compare ratios, not values.
- **Schedule.** The {main} detector variants of Tables 4-8 train for {iters:,}
  iterations ({FULL_BASE["epochs"]} epochs of {base.num_train} images), not the shipped
  detector's {shipped:,}; the {grid} variants of the data grid train for
  {GRID_ITERS:,} iterations each, whatever their number of images (the grid holds most
  of the run's detectors). Rows compare detectors trained alike.
- **Learning rate.** Layers that train on fixed features (fc only, SPP-net, stage 2 of
  stage-wise) use lr {FIXED_FEATURES_LR} instead of the recipe's {base.lr}, which stalled
  them in an earlier run. The paper used one learning rate for its rows.
- **Metric.** The headline is COCO AP@[.5:.95]; VOC AP@0.5 (area) and VOC07 (the
  paper's 11-point metric) are beside it. Objects are easy to find here, so AP@0.5 is
  near its ceiling and the differences show at the stricter IoUs.
- **Table 4.** R-CNN as the paper ran it, at the toy's scale: each proposal grown by
  16/227 of the crop on each side (the paper's 16 px of context at 227 px), warped to
  {RCNN_CROP}x{RCNN_CROP} px (the backbone's pretraining input, as 227 px is VGG16's), the
  backbone run on every crop; fine-tuned on warps with a softmax; the fc7 features of
  every training box written to disk; one linear SVM per class with hard-negative
  mining and one ridge box regressor per class trained on them (the paper's regressors
  read pool5; the toy's read fc7). SPP-net: the same later stages on a network whose
  convolutions stay fixed (only the fc layers fine-tune), a {{6, 3, 2, 1}} spatial
  pyramid (50 bins, as Fast R-CNN's 7x7 has 49), fine-tuned at one scale and tested
  on a two-scale image pyramid (the paper used five scales for both). Both use the
  same backbone and head widths as Fast R-CNN, so their times differ by where the
  backbone runs and by the stages. The "toy only" rows test the fine-tuned networks
  with their own softmax. Times are one core's, with other processes running at once
  (the section on the run gives the load); MACs are counted from the layer shapes
  (minircnn/paper/flops.py).
- **Table 5.** The toy's "from the middle" is block 3 of 4, as the paper's conv3_1 is
  in VGG16's third block of five.
- **Table 6.** Stage-wise: the classification-only detector is frozen and only its box
  layer trains, for a quarter of the iterations.
- **Table 7.** Every other Fast R-CNN row tests at one scale, as the paper does
  (s = 600). The pyramid is two scales, 1x and 2x, where the paper has five; each RoI
  is scored at the scale that brings its area closest to {base.pyramid_target:g}^2 px
  (the paper: 224^2). Multi-scale training draws one of the two scales per minibatch,
  where the paper draws one per image. The toy adds the pyramid at test time alone.
- **Figure 3.** The number of proposals varies at test time only (the detector trained
  on selective search, at most {base.max_proposals} per image); the paper retrained for
  each setting. The RPN curve is a Faster R-CNN detector (approximate joint training,
  its RPN's proposals in training too) tested with its RPN's top k proposals: the
  answer to the paper's proposal bottleneck (Ren et al., 2015), not in the Fast R-CNN
  paper.
- **Data grid (section 5.3).** The paper adds VOC 2012 to VOC 2007 (more training data)
  and always starts from ImageNet; the toy varies the number of
  training images from {min(GRID_SIZES)} to {max(GRID_SIZES)} and starts from the
  shapes-pretrained backbone (fine-tuned from block 3) or from random weights (every
  block trains), at a fixed number of iterations.
"""


def summary(values) -> dict:
    v = np.asarray([x for x in values if x is not None], float)
    return {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max()), "n": len(v)}


def _cell(runs: list, key: str, fmt: str = "{:.3f}") -> str:
    s = summary([r[key] for r in runs])
    if s["n"] == 1:
        return fmt.format(s["mean"])
    return f"{fmt.format(s['mean'])} ({fmt.format(s['min'])}-{fmt.format(s['max'])})"


def _table(results: dict, prefix: str) -> list[str]:
    """One table: a row per PAPER entry of ``prefix``; Table 4 adds its MAC counts."""
    work = prefix == "table4"
    extra = " test MACs/im | backbone passes/im |" if work else ""
    lines = [f"| row | COCO AP | VOC AP@0.5 | VOC07 | train (s) | test (ms/im) |{extra} paper |",
             "|---|---|---|---|---|---|" + ("---|---|" if work else "") + "---|"]
    for row_id, (what, paper) in PAPER.items():
        if not row_id.startswith(prefix):
            continue
        if row_id not in results:
            lines.append(f"| {what} | not run | | | | |{' | |' if work else ''} {paper} |")
            continue
        runs = results[row_id]["runs"]
        ms = [{"t": 1e3 * r["test_s_per_image"]} for r in runs]
        cells = (f"| {what} | {_cell(runs, 'coco_AP')} | {_cell(runs, 'voc_mAP')} | "
                 f"{_cell(runs, 'voc07_mAP')} | {_cell(runs, 'train_s', '{:.0f}')} | "
                 f"{_cell(ms, 't', '{:.1f}')} |")
        if work:
            cells += (f" {runs[0]['test_macs'] / 1e6:,.0f} M | "
                      f"{runs[0]['backbone_passes']} |")
        lines.append(f"{cells} {paper} |")
    return lines


def _grid_table(results: dict) -> list[str]:
    """Training-set size x {pretrained, from scratch}: COCO AP and training time."""
    from minircnn.paper.variants import GRID_KINDS, GRID_SIZES

    lines = ["| training images | " + " | ".join(f"COCO AP, {k} | train (s), {k}"
                                                 for k, _ in GRID_KINDS) + " |",
             "|---|" + "---|---|" * len(GRID_KINDS)]
    for n in GRID_SIZES:
        cells = []
        for kind, _ in GRID_KINDS:
            row = results.get(f"data{n}_{kind}")
            cells += (["not run", ""] if row is None else
                      [_cell(row["runs"], "coco_AP"), _cell(row["runs"], "train_s", "{:.0f}")])
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return lines


def _grid_figure(results: dict, out_dir: str) -> str | None:
    """COCO AP against the number of training images, pretrained and from scratch:
    the mean of the seeds, their range shaded."""
    from minircnn.paper.variants import GRID_KINDS, GRID_SIZES

    if not all(f"data{n}_{k}" in results for n in GRID_SIZES for k, _ in GRID_KINDS):
        return None
    from matplotlib.figure import Figure

    from minircnn.viz import save_figure

    fig = Figure(figsize=(6, 3.6), layout="constrained")
    ax = fig.subplots()
    for (kind, _), marker in zip(GRID_KINDS, ("o-", "s--"), strict=True):
        v = np.array([[r["coco_AP"] for r in results[f"data{n}_{kind}"]["runs"]]
                      for n in GRID_SIZES])                          # (sizes, seeds)
        ax.plot(GRID_SIZES, v.mean(1), marker, label=kind.replace("scratch", "from scratch"))
        ax.fill_between(GRID_SIZES, v.min(1), v.max(1), alpha=0.25)
    ax.set(xscale="log", xlabel="training images", ylabel="COCO AP (held-out)",
           xticks=GRID_SIZES, xticklabels=[str(n) for n in GRID_SIZES])
    ax.minorticks_off()          # a log axis labels its minor ticks too: they overlap ours
    ax.legend()
    fig.suptitle("Training-set size x pretraining (mean of seeds, range shaded)")
    return save_figure(fig, os.path.join(out_dir, "data_grid.png"))


def _figure2(results: dict, out_dir: str) -> str | None:
    if "figure2_svd" not in results:
        return None
    from matplotlib.figure import Figure

    from minircnn.viz import save_figure

    runs = [r["points"] for r in results["figure2_svd"]["runs"]]
    ranks = [p["rank"] or "full" for p in runs[0]]
    fig = Figure(figsize=(8, 3.2), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    for key, ax, label in (("head_ms", ax1, "head time per image (ms)"),
                           ("coco_AP", ax2, "COCO AP")):
        v = np.array([[p[key] for p in pts] for pts in runs])           # (seeds, ranks)
        ax.errorbar(range(len(ranks)), v.mean(0), yerr=[v.mean(0) - v.min(0),
                    v.max(0) - v.mean(0)], marker="o", capsize=3)
        ax.set(xticks=range(len(ranks)), xticklabels=[str(r) for r in ranks],
               xlabel="fc6 rank (truncated SVD)", ylabel=label)
    fig.suptitle("Figure 2 (toy): truncated SVD of fc6")
    return save_figure(fig, os.path.join(out_dir, "figure2_svd.png"))


def _figure3_curves(results: dict) -> dict:
    """Figure 3's curves that ran: method -> the seeds' lists of points (k, AP, recall)."""
    curves = {}
    if "figure3_proposals" in results:
        for method in ("selective_search", "dense"):
            curves[method] = [r[method] for r in results["figure3_proposals"]["runs"]]
    if "figure3_rpn" in results:
        curves["rpn"] = [r["rpn"] for r in results["figure3_rpn"]["runs"]]
    return curves


def _figure3(results: dict, out_dir: str) -> str | None:
    curves = _figure3_curves(results)
    if not curves:
        return None
    from matplotlib.figure import Figure

    from minircnn.viz import save_figure

    fig = Figure(figsize=(8, 3.2), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    markers = {"selective_search": "o-", "dense": "s--", "rpn": "^-"}
    for method, runs in curves.items():
        ks = [p["k"] for p in runs[0]]
        for key, ax in (("coco_AP", ax1), ("recall", ax2)):
            v = np.array([[p[key] for p in r] for r in runs]).mean(0)    # (ks,)
            ax.plot(ks, v, markers[method], label=_METHOD_NAMES[method])
    ax1.set(xscale="log", xlabel="proposals per image (test)", ylabel="COCO AP")
    ax2.set(xscale="log", xlabel="proposals per image", ylabel="recall at IoU 0.5")
    ax1.legend()
    fig.suptitle("Figure 3 (toy): number of proposals, mean of seeds")
    return save_figure(fig, os.path.join(out_dir, "figure3_proposals.png"))


_METHOD_NAMES = {"selective_search": "selective search", "dense": "dense",
                 "rpn": "RPN (Faster R-CNN)"}


def _figure3_table(results: dict) -> list[str]:
    """COCO AP and recall at IoU 0.5 against k, one column pair per method that ran."""
    curves = _figure3_curves(results)
    if not curves:
        return []
    names = [_METHOD_NAMES[m] for m in curves]
    lines = ["| proposals per image | " + " | ".join(f"COCO AP, {n} | recall, {n}"
                                                   for n in names) + " |",
             "|---|" + "---|---|" * len(curves)]
    points = {m: {p["k"]: i for i, p in enumerate(runs[0])} for m, runs in curves.items()}
    for k in sorted({k for ks in points.values() for k in ks}):
        cells = []
        for m, runs in curves.items():
            i = points[m].get(k)
            cells += (["", ""] if i is None else
                      [_cell([r[i] for r in runs], key) for key in ("coco_AP", "recall")])
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return lines


def _cpu_name() -> str:
    """The processor's model name (Linux: /proc/cpuinfo), or what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _machine_line() -> str:
    """The line naming the machine (not compared by tests: it differs between machines)."""
    return (f"Machine: {_cpu_name()} ({platform.machine()}), {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}, NumPy {np.__version__}.")


def write_report(config, results: dict, runs: list | None = None,
                 detectors: dict | None = None) -> str:
    """Write tables.md, the figures and results.json into ``config.out_dir``.

    ``runs`` (run.json: each invocation's rows, seconds, loads) are the invocations that
    measured them, ``detectors`` (detectors.json) the trained detectors' wall-clock and
    CPU times (minircnn/paper/budget.py)."""
    from minircnn.paper.budget import run_lines
    from minircnn.paper.claims import data_claims, table4_claims
    from minircnn.paper.variants import GRID_KINDS, GRID_SIZES

    out = config.out_dir
    lines = ["# Fast R-CNN's tables and figures, toy version", "",
             f"Seeds {list(config.seeds)}; each cell: mean (min-max) over seeds. "
             f"{'QUICK MODE: tiny settings, the numbers mean nothing. ' if config.quick else ''}"
             + _machine_line(), "", "## The run: wall clock, load, CPU time", "",
             *run_lines(runs, detectors, results), ""]
    for prefix, title in SECTIONS:
        lines += [f"## {title}", "", *_table(results, prefix), ""]
        if prefix == "table4":
            lines += ["Table 4's claims, measured in this run:", "",
                      *(table4_claims(results, detectors) or ["- not run"]), ""]
    for name, path in (("Figure 2", _figure2(results, out)), ("Figure 3", _figure3(results, out))):
        lines += [f"## {name}", "", f"![{name}]({os.path.basename(path)})" if path
                  else "not run", ""]
    figure3 = _figure3_table(results)                  # its numbers, beside the picture
    lines += [*figure3, ""] if figure3 else []
    grid = _grid_figure(results, out)
    lines += ["## Section 5.3, more training data, and pretraining: training-set size x "
              "pretraining", "",
              *_grid_table(results), "",
              f"![data grid]({os.path.basename(grid)})" if grid else "figure: not run", "",
              *data_claims(results, GRID_SIZES, [k for k, _ in GRID_KINDS]), ""]
    lines.append(_differences())
    path = os.path.join(out, "tables.md")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    write_json(os.path.join(out, "results.json"), results)
    return path
