"""Felzenszwalb-Huttenlocher graph segmentation: a naive loop and a fast exact version.

FH (IJCV 2004) on a Gaussian-smoothed image: pixels are nodes, the 8-neighbourhood gives
the edges (weight = colour distance, intensities in 0..255), and the edges are visited
by increasing weight (ties by index, Kruskal's order). Each component C keeps

    tau(C) = Int(C) + k / |C|      Int(C) = the heaviest edge merged into C (0: a pixel),

and an edge (u, v) of weight w merges C(u) != C(v) when w <= min(tau(C(u)), tau(C(v))).
Components smaller than ``min_size`` are then merged into a neighbour across the lightest
edges, as in the reference code. Union by size picks each new root (ties: u's root).

``felzenszwalb_naive`` is the readable version: one Python loop over the edges.
``felzenszwalb`` gives the same labels faster. It walks the sorted edges in chunks and
settles most of a chunk with array operations, from the state at the chunk's start:
- an edge whose ends already share a root never merges (components only grow);
- an edge touching a "frozen" component, tau(C) < the chunk's lightest weight, never
  merges (C could only change through an edge no heavier than tau(C): all were visited);
- an edge that is the first of the chunk to touch both of its roots sees exactly the
  state the loop would show it (no earlier edge of the chunk changed either component),
  so all such edges are decided at once; they touch disjoint roots, so their merges are
  disjoint writes ("deterministic reservations", Blelloch et al., PPoPP 2012).
The edges left (chains: one component touched again and again) get more such rounds,
in order, while a round settles many of them (a later edge merged early is harmless: no
edge before it touches its roots, so none sees its merge). A round's merges point roots
at roots, so one hop gives the next round its roots. The last few edges go through the
same loop as the naive version, in order, on the same arrays. The labels are identical
for any CHUNK (tests/detection/test_segmentation.py checks every pixel).
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

# 8-neighbourhood as 4 forward offsets (drow, dcol); the other 4 are the same edges reversed.
_OFFSETS = ((0, 1), (1, 0), (1, 1), (1, -1))
CHUNK = 2048            # edges felzenszwalb settles together (any value: the same labels)
LOOP_BELOW = 64         # fewer unsettled edges than this go through the loop


@functools.lru_cache(maxsize=8)
def neighbour_pairs(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Endpoints a, b (E,) of the 8-neighbourhood edges of an H x W grid, E ~ 4 H W.

    Pixel (r, c) is index r * W + c; offset by offset, as ``_OFFSETS``. Read-only arrays,
    computed once per image size.
    """
    index = np.arange(h * w).reshape(h, w)
    a_list, b_list = [], []
    for dr, dc in _OFFSETS:
        c0, c1 = max(0, -dc), w - max(0, dc)        # columns where (r+dr, c+dc) exists
        a_list.append(index[0:h - dr, c0:c1].ravel())
        b_list.append(index[dr:h, c0 + dc:c1 + dc].ravel())
    a, b = np.concatenate(a_list), np.concatenate(b_list)
    a.flags.writeable = b.flags.writeable = False
    return a, b


def neighbour_edges(smooth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """8-neighbourhood edges of a (C, H, W) image: endpoints a, b (E,) and weights (E,)."""
    _, h, w = smooth.shape
    a, b = neighbour_pairs(h, w)
    weight = np.empty(len(a))                     # (E,) filled offset by offset
    start = 0
    for dr, dc in _OFFSETS:
        c0, c1 = max(0, -dc), w - max(0, dc)
        diff = smooth[:, 0:h - dr, c0:c1] - smooth[:, dr:h, c0 + dc:c1 + dc]   # (C, h', w')
        diff *= diff
        square = diff[0]                          # (h', w') squared Euclidean distance,
        for channel in diff[1:]:                  # summed as .sum(axis=0) does, in order
            square += channel
        stop = start + square.size
        np.sqrt(square, out=weight[start:stop].reshape(square.shape))
        start = stop
    return a, b, weight


def _smoothed_edges(image: np.ndarray, sigma: float):
    smooth = ndimage.gaussian_filter(image * 255.0, sigma=(0, sigma, sigma), truncate=4.0)
    return neighbour_edges(smooth)


def roots(parent: np.ndarray) -> np.ndarray:
    """Pointer jumping: the root of every node of a union-find forest, vectorized."""
    while True:
        nxt = parent[parent]
        if np.array_equal(nxt, parent):
            return parent
        parent = nxt


def _labels(parent: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Labels 0..R-1 numbered in the order of their roots' pixel indices, (H, W)
    (``np.unique(roots, return_inverse=True)[1]``, without its sort)."""
    r = roots(parent)                             # (n,) each pixel's root
    is_root = r == np.arange(len(r))              # (n,)
    label_of = np.cumsum(is_root) - 1             # root p -> how many roots come before p
    return label_of[r].reshape(shape)


# ----------------------------------------------------------------- the naive loop


def _merge_loop(parent, size, threshold, ea: list, eb: list, ew: list, scale: float) -> None:
    """FH's merge loop over edges sorted by weight, updating the union-find in place.

    ``parent``, ``size``, ``threshold`` (tau per root): lists, or arrays' memoryviews
    (felzenszwalb's leftovers, on the same arrays as its vectorized steps).
    """
    for u, v, wt in zip(ea, eb, ew, strict=True):
        while parent[u] != u:                     # u, v -> their roots, halving the path
            parent[u] = u = parent[parent[u]]
        while parent[v] != v:
            parent[v] = v = parent[parent[v]]
        if u != v and wt <= threshold[u] and wt <= threshold[v]:
            if size[u] < size[v]:
                u, v = v, u
            parent[v] = u                         # union by size
            size[u] += size[v]
            threshold[u] = wt + scale / size[u]   # edges come sorted: Int(C) is this weight


def _absorb_small(parent, size, ea: np.ndarray, eb: np.ndarray, min_size: int) -> None:
    """Merge components under min_size across edges in weight order (FH's post-processing).

    ``parent`` and ``size``: lists, or arrays' memoryviews (felzenszwalb's leftovers).
    """
    for ru, rv in zip(ea.tolist(), eb.tolist(), strict=True):
        while parent[ru] != ru:                   # u, v -> their roots, halving the path
            parent[ru] = ru = parent[parent[ru]]
        while parent[rv] != rv:
            parent[rv] = rv = parent[parent[rv]]
        if ru != rv and (size[ru] < min_size or size[rv] < min_size):
            parent[rv] = ru                       # no union by size here (reference code)
            size[ru] += size[rv]


def felzenszwalb_naive(image: np.ndarray, *, scale: float = 100.0, sigma: float = 0.8,
                       min_size: int = 20) -> np.ndarray:
    """Felzenszwalb-Huttenlocher segmentation of a (C, H, W) image in [0, 1], one loop.

    ``scale`` is the paper's k, for intensities in 0..255 (larger k, larger regions);
    ``sigma`` the Gaussian pre-smoothing (0: none). Returns int64 labels (H, W), 0..R-1.
    """
    _, h, w = image.shape
    a, b, weight = _smoothed_edges(image, sigma)
    order = np.argsort(weight, kind="stable")     # Kruskal order: lightest edge first
    ea, eb = a[order], b[order]                   # (E,) each, E ~ 4 H W
    n = h * w
    parent, size, threshold = list(range(n)), [1] * n, [scale] * n   # tau = 0 + k / 1
    _merge_loop(parent, size, threshold, ea.tolist(), eb.tolist(), weight[order].tolist(), scale)
    small = np.asarray(size)[roots(np.asarray(parent))] < min_size     # (n,) per pixel
    touching = small[ea] | small[eb]              # components only grow, so other edges
    _absorb_small(parent, size, ea[touching], eb[touching], min_size)  # never merge
    return _labels(np.asarray(parent), (h, w))


# ----------------------------------------------------------------- the fast version


def kruskal_order(weight: np.ndarray) -> np.ndarray:
    """``np.argsort(weight, kind="stable")`` (ties by index) of weights >= 0, from one
    SIMD ``np.sort`` of integer keys (an argsort is several times slower).

    A float64 >= 0 orders as its bit pattern read as an unsigned integer. Each key keeps
    the high bits of that pattern and puts the edge index in the low bits, so the sorted
    keys give the order by (weight, index), except within runs of weights that agree in
    those high bits (equal, or within ~1e-11 of each other): only those positions are
    sorted again, by (run, weight, index).
    """
    n = len(weight)
    if n and not weight.min() >= 0:
        raise ValueError(f"kruskal_order: expected weights >= 0, got {weight.min()}")
    shift = np.uint64(max(1, (n - 1).bit_length()))       # bits that hold an index
    as64 = np.add(weight, 0.0, dtype=np.float64)  # float64 (exact), -0.0 becomes 0.0
    key = as64.view(np.uint64) >> shift << shift
    key |= np.arange(n, dtype=np.uint64)          # (E,) high bits of weight | index
    key.sort()
    order = (key & ((np.uint64(1) << shift) - np.uint64(1))).astype(np.intp)
    high = key >> shift                           # (E,) what the sort compared first
    same = high[1:] == high[:-1]                  # (E-1,) a sorted neighbour agrees
    tied = np.zeros(n, bool)
    tied[1:] |= same
    tied[:-1] |= same
    pos = np.flatnonzero(tied)                    # (T,) positions inside such runs
    if len(pos):
        hp = high[pos]
        run = np.cumsum(np.r_[True, hp[1:] != hp[:-1]])   # (T,) 1, 1, 2, 2, 2, 3, ...
        edges = order[pos]                        # in index order within each run
        order[pos] = edges[np.lexsort((weight[edges], run))]   # stable: ties keep index order
    return order


def _find(parent: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """Roots of ``nodes`` (any shape) by pointer jumping; each node then points at its root."""
    r = parent[nodes]
    while True:
        up = parent[r]
        if (up == r).all():
            break
        r = up
    parent[nodes] = r                             # path compression
    return r


class _Forest:
    """The union-find of FH as arrays (parent, size, tau per root), and memoryviews of them
    for the loop, which reads and writes them one element at a time as fast as lists."""

    def __init__(self, n: int, scale: float):
        self.parent, self.size = np.arange(n), np.ones(n, np.int64)
        self.tau = np.full(n, float(scale))       # tau = 0 + k / 1 for a pixel
        self.seen = np.full(n, n * 4 + 1)         # scratch for first_touches: "never"
        self.views = memoryview(self.parent), memoryview(self.size), memoryview(self.tau)

    def first_touches(self, r: np.ndarray) -> np.ndarray:
        """(L,) True for each edge of roots r (2, L), in order, the first to touch both."""
        pos = np.arange(r.shape[1])               # (L,) edge positions
        np.minimum.at(self.seen, r[0], pos)       # seen[root] = its first edge's position
        np.minimum.at(self.seen, r[1], pos)
        first_u, first_v = self.seen[r] == pos    # (2, L): first at u's root, at v's root
        self.seen[r] = len(self.seen) * 4 + 1
        return first_u & first_v


def _merge_round(f: _Forest, r: np.ndarray, w: np.ndarray, scale: float):
    """One vectorized pass of FH's loop over unsettled edges in order: their components'
    roots r (2, L), weights w (L,). Returns the edges it could not settle (chains), in
    order, with their roots after its merges, and none whose ends now share a root.

    (``take(i, axis=1)`` is ``[:, i]`` and ``mask.nonzero()[0]`` ``np.flatnonzero(mask)``,
    both with less overhead per call: this runs ~70 times per image.)
    """
    tau_u, tau_v = f.tau[r]                       # (2, L) tau of each end's component
    first = f.first_touches(r)
    m = (first & (w <= np.minimum(tau_u, tau_v))).nonzero()[0]   # decided now, as the
    (u, v), wm = r.take(m, axis=1), w[m]          # loop would: (M,) each, the merges
    su, sv = f.size[u], f.size[v]
    swap = su < sv                                # union by size, ties: u's root stays
    big, small = np.where(swap, v, u), np.where(swap, u, v)
    f.parent[small] = big                         # disjoint roots: no write collides
    f.size[big] = su + sv
    f.tau[big] = wm + scale / (su + sv)           # tau = Int + k / |C|, Int = this weight
    rest = (~first).nonzero()[0]
    r, w = f.parent[r.take(rest, axis=1)], w[rest]   # roots now: one hop (a root merged
    apart = (r[0] != r[1]).nonzero()[0]           # this round points at its new root)
    return r.take(apart, axis=1), w[apart]


def _absorb_round(f: _Forest, r: np.ndarray, min_size: int) -> np.ndarray:
    """_merge_round for _absorb_small: returns the edges (2, L') it could not settle."""
    first = f.first_touches(r)
    small = np.minimum(f.size[r[0]], f.size[r[1]]) < min_size
    u, v = r.take((first & small).nonzero()[0], axis=1)   # these merge, as in the loop
    f.parent[v] = u
    f.size[u] += f.size[v]
    r = f.parent[r.take((~first).nonzero()[0], axis=1)]   # roots now: one hop
    return r.take((r[0] != r[1]).nonzero()[0], axis=1)


def _merge_chunk(f: _Forest, ends: np.ndarray, w: np.ndarray, scale: float) -> None:
    """FH's loop over one chunk of sorted edges (2, L), weights (L,): vectorized rounds
    while they settle many edges, then the loop for the last few, in order."""
    r = _find(f.parent, ends)                     # (2, L) roots at the chunk's start
    tau = np.minimum(*f.tau[r])                   # (L,) min(tau(C(u)), tau(C(v)))
    live = ((r[0] != r[1]) & (tau >= w[0])).nonzero()[0]   # the others never merge
    r, w = r.take(live, axis=1), w[live]
    while len(w) >= LOOP_BELOW:
        before = len(w)
        r, w = _merge_round(f, r, w, scale)
        if before - len(w) < LOOP_BELOW:
            break
    _merge_loop(*f.views, *r.tolist(), w.tolist(), scale)


def _absorb_chunk(f: _Forest, ends: np.ndarray, min_size: int) -> None:
    """_absorb_small over one chunk of edges (2, L), settled as _merge_chunk's."""
    r = _find(f.parent, ends)                     # (2, L) roots at the chunk's start
    small = np.minimum(f.size[r[0]], f.size[r[1]]) < min_size
    r = r.take(((r[0] != r[1]) & small).nonzero()[0], axis=1)   # sizes only grow: the
    while r.shape[1] >= LOOP_BELOW:                             # others never merge
        before = r.shape[1]
        r = _absorb_round(f, r, min_size)
        if before - r.shape[1] < LOOP_BELOW:
            break
    _absorb_small(*f.views[:2], *r, min_size)


def felzenszwalb(image: np.ndarray, *, scale: float = 100.0, sigma: float = 0.8,
                 min_size: int = 20) -> np.ndarray:
    """felzenszwalb_naive's labels (H, W), identical, with most edges settled in arrays."""
    _, h, w = image.shape
    n = h * w
    a, b, weight = _smoothed_edges(image, sigma)
    order = kruskal_order(weight)
    ends, weight = np.stack([a, b]).take(order, axis=1), weight[order]   # (2, E), (E,)
    forest = _Forest(n, scale)
    for i in range(0, len(weight), CHUNK):
        _merge_chunk(forest, ends[:, i:i + CHUNK], weight[i:i + CHUNK], scale)
    small = forest.size[roots(forest.parent)] < min_size   # (n,) per pixel
    ends = ends.compress(small[ends[0]] | small[ends[1]], axis=1)   # edges touching a
                                                                    # small component
    for i in range(0, ends.shape[1], CHUNK):
        _absorb_chunk(forest, ends[:, i:i + CHUNK], min_size)
    return _labels(forest.parent, (h, w))
