"""Max and first argmax of any rectangle of a feature map in four lookups: a 2-D sparse table.

Used by ``roi_pool_forward`` (roi_pool.py), where every bin is such a rectangle.

Level (a, b) of the table holds, for every cell (h, w), the max of the 2^a x 2^b block
whose top-left cell is (h, w), and the index of its winning cell. A level is two blocks
of a lower level side by side (or stacked), so the whole table takes one elementwise
merge per level, however large the bins are (the "doubling" of a 1-D sparse table, on
both axes). A rectangle [h0, h1) x [w0, w1) with 2^a <= h1 - h0 < 2^(a+1) and
2^b <= w1 - w0 < 2^(b+1) is exactly covered by the four 2^a x 2^b blocks in its corners;
they may overlap, which a max does not mind.

Ties follow torchvision: the first maximum in row-major order wins. The cell index
((n*C + c)*H + h)*W + w grows in row-major order, so "first" means "smallest index
among the cells holding the max", and the merge rule is: the larger value wins; on
equal values, the smaller index wins. That rule gives the same answer however the
rectangle is split into blocks, overlapping or not, so the result is exactly the loops'.
"""

from __future__ import annotations

import numpy as np

from minircnn.backend import get_array_module

LOOKUP_ENTRIES = 1 << 15   # bins x channels merged at a time (see lookup_bins)


def table_levels(size: int) -> int:
    """Highest level needed for blocks up to ``size`` cells long: floor(log2(size))."""
    return max(int(size), 1).bit_length() - 1


def sparse_max_table(x, cell, LH: int, LW: int):
    """x (N, H, W, C) -> best, arg (N*(LH+1)*(LW+1)*H*W + 1, C): the block maxima.

    Args:
        x: (N, H, W, C) values.  cell: (N, H, W, C) int index of each value (its argmax).
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
    xp = get_array_module(best)
    n = best.shape[axis] - 2 * half + 1         # starts p with the doubled block inside
    first = (slice(None),) * axis + (slice(0, n),)
    second = (slice(None),) * axis + (slice(half, half + n),)
    better = best[second] > best[first]
    out_best[first] = xp.where(better, best[second], best[first])
    out_arg[first] = xp.where(better, arg[second], arg[first])


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


def lookup_bins(best, arg, rows, out, argmax) -> None:
    """Fill out, argmax (R, PH, PW, C) with the bins' max and argmax, from four lookups each.

    On the CPU it works on blocks of about LOOKUP_ENTRIES values: small temporaries are
    reused from the cache, large ones cost fresh memory on every call (measured 2-3x
    slower). On a GPU every op is a kernel launch, so it does all RoIs in one block.

    Args:
        best, arg: (table rows, C) from sparse_max_table.  rows: (4, R, PH, PW) from
            block_rows.  out, argmax: (R, PH, PW, C) arrays (or views) to write.
    """
    R, PH, PW, C = out.shape
    budget = LOOKUP_ENTRIES if get_array_module(best) is np else out.size
    step = max(1, budget // (PH * PW * C))             # RoIs per block
    for r0 in range(0, R, step):
        out[r0:r0 + step], argmax[r0:r0 + step] = _merge_corners(best, arg,
                                                                 rows[:, r0:r0 + step])


def _merge_corners(best, arg, rows):
    """rows (4, r, PH, PW) -> out, argmax (r, PH, PW, C): each bin's winner of its corners.

    Starts from the top-left block; each other corner replaces it where it wins.
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
