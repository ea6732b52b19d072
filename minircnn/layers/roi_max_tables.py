"""The advanced RoI max pooling engine: bins answered from precomputed max tables.

``roi_pool_forward`` (roi_pool.py) calls :func:`roi_max_pool_tables`. It gives exactly
the loops' result (``roi_pool_forward_naive``), like the readable
``roi_pool_forward_vectorized``, but spends its work differently: instead of visiting
each bin's cells, it builds once a table of the max (and argmax) of rectangles of
cells, then answers every bin by looking rows up in it. Read the vectorized tier first;
this file is for when you want to see how far the same result can be pushed in NumPy.

**Box table** (``box_max_table``): for every cell (h, w) and every box size up to the
largest bin, KH x KW, the max of the box whose top-left cell is (h, w). Built by a row
pass then a column pass with a strict ``>``, so the first max in row-major order wins.
KH*KW entries per cell, then one lookup per bin: cheapest while bins are small.

**Sparse table** (``sparse_max_table``): level (a, b) holds, for every cell (h, w), the
max of the 2^a x 2^b block whose top-left cell is (h, w), and the index of its winning
cell. A level is two blocks of a lower level side by side (or stacked), so the whole
table takes one elementwise merge per level, however large the bins are (the "doubling"
of a 1-D sparse table, on both axes). A rectangle [h0, h1) x [w0, w1) with
2^a <= h1 - h0 < 2^(a+1) and 2^b <= w1 - w0 < 2^(b+1) is exactly covered by the four
2^a x 2^b blocks in its corners; they may overlap, which a max does not mind.
(log2(KH) + 1)*(log2(KW) + 1) entries per cell, then four lookups and three merges per
bin: cheapest once bins are large (SPP's 1x1 level, big maps).

``plan_table`` picks the cheaper table per call from a cost model; timings of both are
in docs/performance.md.

Which cells can win follows torchvision's loop, which starts every non-empty bin at
-FLT_MAX (the lowest finite float32) and keeps a cell only if it is ``>`` the max so
far: NaN, -inf and anything <= -FLT_MAX never win, and a bin holding only such cells
outputs -FLT_MAX with argmax -1 (no gradient). The tables get the same answer by first
replacing every such cell with -FLT_MAX itself (``candidates_only``), so no NaN reaches
a merge, and afterwards giving every bin whose max is -FLT_MAX the argmax -1.

Ties follow torchvision: the first maximum in row-major order wins. The cell index
((n*C + c)*H + h)*W + w grows in row-major order, so "first" means "smallest index
among the cells holding the max", and the merge rule is: the larger value wins; on
equal values, the smaller index wins. That rule gives the same answer however the
rectangle is split into blocks, overlapping or not, so the result is exactly the loops'.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from minircnn.backend import get_array_module

TABLE_ENTRIES = 1 << 22   # table entries per pass; more channels are done in chunks
LOOKUP_ENTRIES = 1 << 15   # bins x channels merged at a time (see lookup_bins)
FLT_MAX = float(np.finfo(np.float32).max)   # C's FLT_MAX: torchvision's start of a bin's max
BOX_BIN_COST = 0.25        # one box-table bin (1 lookup) per channel, in table entries
SPARSE_BIN_COST = 1.5      # one sparse-table bin (4 lookups + 3 merges), in table entries


def roi_max_pool_tables(features, bins, *, table: str | None = None,
                        table_entries: int = TABLE_ENTRIES, lookup_entries: int = LOOKUP_ENTRIES):
    """Max and first argmax of every bin, from a box or a sparse table.

    Args:
        features: (N, C, H, W).  bins: RoIBins (roi_pool.py) with R RoIs, PH x PW bins.
        table: "box", "sparse" or None (the cheaper by ``plan_table``'s cost model).
        table_entries: table entries per pass; more channels are pooled in chunks.
        lookup_entries: bins x channels merged at a time on the CPU (see lookup_bins).
    Returns:
        out (R, C, PH, PW) in features' dtype (0 in empty bins) and argmax (R, C, PH, PW)
        integers (int32 for maps under 2**31 values): index of the winner in
        features.ravel(), -1 for an empty bin or one without a cell > -FLT_MAX (whose
        out is -FLT_MAX, as torchvision's). Both are channel-last views.
    """
    xp = get_array_module(features)
    N, C, H, W = features.shape
    R, PH = bins.hstart.shape
    PW = bins.wstart.shape[1]
    if R == 0 or C == 0 or H == 0 or W == 0:               # nothing to pool: every bin is empty
        return (xp.zeros((R, C, PH, PW), dtype=features.dtype),
                xp.full((R, C, PH, PW), -1, dtype=np.int64))
    plan = plan_table(bins, (N, H, W), table=table)        # rows (k, R, PH, PW)
    index_dtype = np.int32 if N * C * H * W < 2**31 else np.int64   # int32: half the traffic
    features, replaced = candidates_only(features)
    step = max(1, table_entries // (N * H * W * plan.per_cell))   # channels per table
    out = xp.empty((R, PH, PW, C), dtype=features.dtype)   # channel-last: a bin's C values
    argmax = xp.empty((R, PH, PW, C), dtype=index_dtype)   # are one table row
    for c in range(0, C, step):
        x, cell = channels_last(features, c, min(c + step, C), index_dtype)  # (N, H, W, c)
        best, arg = build_table(plan, x, cell)
        lookup_bins(best, arg, plan.rows, out[..., c:c + step], argmax[..., c:c + step],
                    lookup_entries)
    if replaced:                                           # a bin of replaced cells only: its
        argmax[out == bin_start(features.dtype)] = -1      # max is the start, no cell won
    return out.transpose(0, 3, 1, 2), argmax.transpose(0, 3, 1, 2)   # -> (R, C, PH, PW)


def bin_start(dtype):
    """Where torchvision starts a non-empty bin's max: -FLT_MAX in ``dtype`` (float16,
    which cannot hold it, converts it to -inf, as torchvision's CUDA kernel in half)."""
    dtype = np.dtype(dtype)
    return dtype.type(-FLT_MAX if float(np.finfo(dtype).max) >= FLT_MAX else -np.inf)


def candidates_only(features):
    """features with every cell that cannot win a bin replaced by -FLT_MAX, and whether
    any was.

    torchvision starts a bin's max at -FLT_MAX and takes a cell only if it is ``>``, so
    NaN, -inf and values <= -FLT_MAX never win. As -FLT_MAX they still never win (a
    candidate is larger), and the map holds no NaN for the merges. The common case, all
    cells candidates, costs one comparison and no copy.
    """
    xp = get_array_module(features)
    lowest = bin_start(features.dtype)
    candidate = features > lowest                   # False for NaN, -inf, <= -FLT_MAX
    if bool(candidate.all()):
        return features, False
    return xp.where(candidate, features, lowest), True


def channels_last(features, c0: int, c1: int, index_dtype):
    """Channels c0..c1-1 of features (N, C, H, W) as a contiguous (N, H, W, c) array,
    and the index of each value in features.ravel(), same shape: what a table is built
    from (each table row then holds c contiguous values)."""
    xp = get_array_module(features)
    N, C, H, W = features.shape
    x = xp.ascontiguousarray(features[:, c0:c1].transpose(0, 2, 3, 1))  # (N, H, W, c)
    n = xp.arange(N, dtype=index_dtype)[:, None, None, None]          # (N, 1, 1, 1)
    h = xp.arange(H, dtype=index_dtype)[:, None, None]                # (H, 1, 1)
    w = xp.arange(W, dtype=index_dtype)[:, None]                      # (W, 1)
    c = xp.arange(c0, c1, dtype=index_dtype)                           # (c,)
    cell = ((n * C + c) * H + h) * W + w    # ((n C + c) H + h) W + w: (N, H, W, c)
    return x, cell


# --------------------------------------------------------------------------------------
# Which table: a cost model in "table entries" per channel.
# --------------------------------------------------------------------------------------
class TablePlan(NamedTuple):
    """The chosen table, its size and the table rows every bin reads."""

    method: str         # "box" or "sparse"
    KH: int             # box: largest bin height; sparse: highest row level LH
    KW: int             # box: largest bin width; sparse: highest column level LW
    per_cell: int       # table entries per map cell and channel
    rows: np.ndarray    # (k, R, PH, PW) table rows: k = 1 (box) or 4 corners (sparse)


def plan_table(bins, shape: tuple, *, table: str | None = None) -> TablePlan:
    """Pick the cheaper table for these bins and compute the rows each bin reads.

    Cost per channel, in table entries, with M = N*H*W map cells and B = R*PH*PW bins:
    box = M*KW*(KH + 1) (row pass, then the boxes) + BOX_BIN_COST*B (one lookup per bin);
    sparse = M*(LH + 1)*(LW + 1) + SPARSE_BIN_COST*B (four lookups, three merges).
    The two bin costs are a lookup's time relative to building one table entry, as
    measured with NumPy in float32 (docs/performance.md).

    Args:
        bins: RoIBins (roi_pool.py).  shape: (N, H, W) of the feature map.
        table: "box" or "sparse" to force one, None to pick by cost.
    """
    N, H, W = shape
    R, PH = bins.hstart.shape
    PW = bins.wstart.shape[1]
    KH = max(int((bins.hend - bins.hstart).max()), 1) if R else 1
    KW = max(int((bins.wend - bins.wstart).max()), 1) if R else 1
    LH, LW = table_levels(KH), table_levels(KW)
    cells, n_bins = N * H * W, R * PH * PW
    box_cost = cells * KW * (KH + 1) + BOX_BIN_COST * n_bins
    sparse_cost = cells * (LH + 1) * (LW + 1) + SPARSE_BIN_COST * n_bins
    if table not in (None, "box", "sparse"):
        raise ValueError(f"table must be 'box', 'sparse' or None, got {table!r}")
    if table == "box" or (table is None and box_cost <= sparse_cost):
        return TablePlan("box", KH, KW, KH * KW, box_rows(bins, KH, KW, shape))
    return TablePlan("sparse", LH, LW, (LH + 1) * (LW + 1), block_rows(bins, LH, LW, shape))


def build_table(plan: TablePlan, x, cell):
    """x, cell (N, H, W, C) contiguous, without NaN -> best, arg (table rows, C) of the
    planned table."""
    table = box_max_table if plan.method == "box" else sparse_max_table
    return table(x, cell, plan.KH, plan.KW)


# --------------------------------------------------------------------------------------
# Box table: every box up to KH x KW, one lookup per bin.
# --------------------------------------------------------------------------------------
def box_max_table(x, cell, KH: int, KW: int):
    """x (N, H, W, C) -> best, arg (N*KH*KW*H*W + 1, C): box max and its cell index.

    Row ((((n*KH + kh)*KW + kw)*H + h)*W + w) describes the box of rows h..h+kh and
    columns w..w+kw of image n; ``arg`` holds the ``cell`` value (N, H, W, C) of its
    winning input. Each (kh, kw) is one contiguous (N, H, W, C) plane, built from the
    plane one column (or row) smaller by slices; boxes that stick out of the map are
    never read, so they are not computed. The extra last row (0, -1) is what empty
    bins look up. x holds no NaN (see candidates_only).
    """
    xp = get_array_module(x)
    N, H, W, C = x.shape
    best = xp.empty((N * KH * KW * H * W + 1, C), dtype=x.dtype)
    arg = xp.empty((N * KH * KW * H * W + 1, C), dtype=cell.dtype)
    planes = best[:-1].reshape(N, KH, KW, H, W, C)   # views: writing them fills the table
    arg_planes = arg[:-1].reshape(N, KH, KW, H, W, C)
    planes[:, 0, 0], arg_planes[:, 0, 0] = x, cell    # 1 x 1 boxes: the cells themselves
    for k in range(1, KW):                    # 1 x (k+1): box 1 x k, then column w + k
        _merge_first_max(planes[:, 0, k - 1, :, :W - k], arg_planes[:, 0, k - 1, :, :W - k],
                         x[:, :, k:], cell[:, :, k:],
                         planes[:, 0, k, :, :W - k], arg_planes[:, 0, k, :, :W - k])
    for k in range(1, KH):                    # (k+1) x any: box k x any, then row h + k
        _merge_first_max(planes[:, k - 1, :, :H - k], arg_planes[:, k - 1, :, :H - k],
                         planes[:, 0, :, k:], arg_planes[:, 0, :, k:],
                         planes[:, k, :, :H - k], arg_planes[:, k, :, :H - k])
    best[-1], arg[-1] = 0, -1                 # the empty bin: output 0, no gradient
    return best, arg


def _merge_first_max(best, arg, new, new_arg, out_best, out_arg) -> None:
    """out = max(best, new); the argmax moves to new_arg only where new > best.

    The comparison is strict, so on a tie the earlier cell keeps the max: scanning
    columns left to right, then rows top to bottom, the first maximum in row-major order
    wins, as in torchvision's loops. The inputs hold no NaN (candidates_only), so the
    merge is arithmetic (a select by ``where`` on a random mask is several times slower
    on the CPU):

    out = maximum(new, best)                  (on a tie it returns ``best``, its second)
    out_arg = arg + [new > best] (new_arg - arg)   (integers: exact)
    """
    xp = get_array_module(best)
    better = new > best                       # computed before out_* is written (they
    xp.maximum(new, best, out=out_best)       # may be best itself)
    xp.subtract(new_arg, arg, out=out_arg)
    out_arg *= better
    out_arg += arg


def box_rows(bins, KH: int, KW: int, shape: tuple):
    """Table row of every bin's box: (1, R, PH, PW) ints (empty bins: the last row).

    Args:
        bins: RoIBins: batch (R,), hstart/hend (R, PH), wstart/wend (R, PW).
        KH, KW: the box table's largest box.  shape: (N, H, W) of the feature map.
    """
    xp = get_array_module(bins.hstart)
    N, H, W = shape
    bin_h, bin_w = bins.hend - bins.hstart, bins.wend - bins.wstart   # (R, PH), (R, PW)
    n = bins.batch[:, None, None]                          # (R, 1, 1)
    h0 = xp.minimum(bins.hstart, H - 1)[:, :, None]        # (R, PH, 1)
    w0 = xp.minimum(bins.wstart, W - 1)[:, None, :]        # (R, 1, PW)
    kh = xp.maximum(bin_h - 1, 0)[:, :, None]              # box height - 1, (R, PH, 1)
    kw = xp.maximum(bin_w - 1, 0)[:, None, :]              # (R, 1, PW)
    row = (((n * KH + kh) * KW + kw) * H + h0) * W + w0    # (R, PH, PW) table row
    empty = (bin_h <= 0)[:, :, None] | (bin_w <= 0)[:, None, :]
    return xp.where(empty, N * H * KH * W * KW, row)[None]  # (1, R, PH, PW)


# --------------------------------------------------------------------------------------
# Sparse table: 2^a x 2^b blocks, four corner lookups per bin.
# --------------------------------------------------------------------------------------
def table_levels(size: int) -> int:
    """Highest level needed for blocks up to ``size`` cells long: floor(log2(size))."""
    return max(int(size), 1).bit_length() - 1


def sparse_max_table(x, cell, LH: int, LW: int):
    """x (N, H, W, C) -> best, arg (N*(LH+1)*(LW+1)*H*W + 1, C): the block maxima.

    Args:
        x: (N, H, W, C) values, no NaN.  cell: (N, H, W, C) int index of each value.
        LH, LW: highest row and column levels (blocks up to 2^LH x 2^LW cells).
    Returns:
        best, arg: row (((n*(LH+1) + a)*(LW+1) + b)*H + h)*W + w holds the max of the
        2^a x 2^b block at (h, w) of image n and the ``cell`` of its winner (only blocks
        inside the map are filled). The extra last row (0, -1) is what empty bins read.
    """
    xp = get_array_module(x)
    N, H, W, C = x.shape
    rows = N * (LH + 1) * (LW + 1) * H * W
    best = xp.empty((rows + 1, C), dtype=x.dtype)
    arg = xp.empty((rows + 1, C), dtype=cell.dtype)
    best[-1], arg[-1] = 0, -1                   # the empty bin: output 0, no gradient
    level_best = best[:-1].reshape(N, LH + 1, LW + 1, H, W, C)   # views: writing fills the table
    level_arg = arg[:-1].reshape(N, LH + 1, LW + 1, H, W, C)
    level_best[:, 0, 0], level_arg[:, 0, 0] = x, cell
    for b in range(1, LW + 1):                  # 1 x 2^b: two 1 x 2^(b-1) blocks side by side
        _double(level_best[:, 0, b - 1], level_arg[:, 0, b - 1],
                level_best[:, 0, b], level_arg[:, 0, b], axis=2, half=2 ** (b - 1))
    for a in range(1, LH + 1):                  # 2^a x 2^b: two 2^(a-1) x 2^b blocks stacked
        for b in range(LW + 1):
            cols = slice(0, W - 2**b + 1)       # only blocks that fit in the map's width
            _double(level_best[:, a - 1, b, :, cols], level_arg[:, a - 1, b, :, cols],
                    level_best[:, a, b, :, cols], level_arg[:, a, b, :, cols],
                    axis=1, half=2 ** (a - 1))
    return best, arg


def _double(best, arg, out_best, out_arg, *, axis: int, half: int) -> None:
    """out[p] = merge(block at p, block at p + half) along ``axis``, for blocks in the map.

    The two halves are disjoint and the first (left or upper) holds only smaller cell
    indices, so a strict ``>`` is the tie rule here: on equal values the first keeps it.
    """
    n = best.shape[axis] - 2 * half + 1         # starts p with the doubled block inside
    first = (slice(None),) * axis + (slice(0, n),)
    second = (slice(None),) * axis + (slice(half, half + n),)
    _merge_first_max(best[first], arg[first], best[second], arg[second], out_best[first],
                     out_arg[first])


def block_rows(bins, LH: int, LW: int, shape: tuple):
    """Table rows of the four corner blocks of every bin: (4, R, PH, PW) ints.

    Args:
        bins: RoIBins (roi_pool.py): batch (R,), hstart/hend (R, PH), wstart/wend (R, PW).
        LH, LW: the table's highest levels (as passed to sparse_max_table).
        shape: (N, H, W) of the feature map.
    Returns:
        rows: corners in the order top-left, top-right, bottom-left, bottom-right; every
        corner of an empty bin is the table's last row (value 0, argmax -1).
    """
    xp = get_array_module(bins.hstart)
    N, H, W = shape
    a, top, bottom = _axis_blocks(bins.hstart, bins.hend, LH)    # (R, PH) each
    b, left, right = _axis_blocks(bins.wstart, bins.wend, LW)    # (R, PW) each
    n = bins.batch[:, None, None]                                # (R, 1, 1)
    level = (n * (LH + 1) + a[:, :, None]) * (LW + 1) + b[:, None, :]   # (R, PH, PW)
    rows = xp.stack([(level * H + h[:, :, None]) * W + w[:, None, :]
                     for h in (top, bottom) for w in (left, right)])  # (4, R, PH, PW)
    empty = ((bins.hend <= bins.hstart)[:, :, None]
             | (bins.wend <= bins.wstart)[:, None, :])           # (R, PH, PW)
    return xp.where(empty, N * (LH + 1) * (LW + 1) * H * W, rows)  # empty: the last row


def lookup_bins(best, arg, rows, out, argmax, lookup_entries: int = LOOKUP_ENTRIES) -> None:
    """Fill out, argmax (R, PH, PW, C) with the bins' max and argmax: k lookups each, merged.

    On the CPU it works on blocks of about ``lookup_entries`` values: small temporaries
    are reused from the cache, large ones cost fresh memory on every call. On a GPU
    every op is a kernel launch, so it does all RoIs in one block.

    Args:
        best, arg: (table rows, C) from build_table.  rows: (k, R, PH, PW) from
            plan_table: 4 corners (sparse table) or 1 box (box table).
        out, argmax: (R, PH, PW, C) arrays (or views) to write.
        lookup_entries: bins x channels per block on the CPU.
    """
    R, PH, PW, C = out.shape
    if rows.shape[0] == 1:               # a box table: each bin's answer is one table row
        xp = get_array_module(best)
        unchecked = {"mode": "clip"} if xp is np else {}   # rows are valid: NumPy then
        xp.take(best, rows[0], axis=0, out=out, **unchecked)   # writes out unbuffered
        xp.take(arg, rows[0], axis=0, out=argmax, **unchecked)  # out[r, ph, pw] = best[row]
        return
    budget = lookup_entries if get_array_module(best) is np else out.size
    step = max(1, budget // (PH * PW * C))             # RoIs per block
    for r0 in range(0, R, step):
        out[r0:r0 + step], argmax[r0:r0 + step] = _merge_corners(best, arg,
                                                                 rows[:, r0:r0 + step])


def _merge_corners(best, arg, rows):
    """rows (k, r, PH, PW) -> out, argmax (r, PH, PW, C): each bin's winner of its corners.

    Starts from the top-left block; each other corner replaces it where it wins (a box
    table gives one "corner", the whole bin, and nothing to merge).
    """
    xp = get_array_module(best)
    out, argmax = best[rows[0]], arg[rows[0]]       # (r, PH, PW, C): top-left blocks
    for corner in rows[1:]:
        value, index = best[corner], arg[corner]    # (r, PH, PW, C)
        wins = beats(value, index, out, argmax)
        xp.copyto(out, value, where=wins)
        xp.copyto(argmax, index, where=wins)
    return out, argmax


def _axis_blocks(start, end, top_level: int):
    """Along one axis: level k (2^k <= length < 2^(k+1)) and the two block starts.

    ``start`` .. ``end`` (exclusive) is covered by the blocks at ``start`` and at
    ``end - 2^k``; for an empty range (length <= 0) k is 0 and the starts are unused.
    """
    xp = get_array_module(start)
    length = end - start                                         # (R, P)
    powers = 2 ** xp.arange(1, top_level + 1)                    # 2, 4, ..., 2^top_level
    k = (length[..., None] >= powers).sum(axis=-1)               # (R, P): powers that fit
    return k, start, end - 2**k


def beats(value, index, best, best_index):
    """Where (value, index) beats (best, best_index): a larger value, or an equal value at
    a smaller cell index (the first max in row-major order).

    Exact for overlapping blocks too (see the module docstring). All arrays one shape.
    """
    return (value > best) | ((value == best) & (index < best_index))
