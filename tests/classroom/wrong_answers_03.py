"""Wrong answers to lesson 03's graded exercises, graded by the real judge in
tests/classroom/test_exercises.py: grade_id -> {name: (the points it keeps, its source)}.

A wrong answer is appended to the teacher's solution cell (so helpers defined there stay)
and redefines the graded function; it must not call another exercise's function, since
one submission carries a wrong answer to several exercises at once.
"""

LESSON = "03_roi_pooling"

# The SPP answers route with their own copy of an honest RoI pooling backward.
_ROUTE = '''
def _route(dout, argmax, batch_index, features_shape):
    d = np.zeros(features_shape)
    W = features_shape[3]
    for (r, c, ph, pw), idx in np.ndenumerate(argmax):
        if idx >= 0:
            d[int(batch_index[r]), c, idx // W, idx % W] += dout[r, c, ph, pw]
    return d
'''

# RoI max pooling backward: each wrong answer scores 0 on the exercise.
ROI_POOL_WRONG = {
    "assigns instead of adding (misses the overlap)": (0, '''
def roi_pool_backward_loops(dout, argmax, batch_index, features_shape):
    N, C, H, W = features_shape
    d = np.zeros(features_shape)
    R, _, PH, PW = argmax.shape
    for r in range(R):
        for c in range(C):
            for ph in range(PH):
                for pw in range(PW):
                    idx = int(argmax[r, c, ph, pw])
                    if idx >= 0:
                        d[int(batch_index[r]), c, idx // W, idx % W] = dout[r, c, ph, pw]
    return d
'''),
    # the worked example's map is square: 2 points for it
    "unravels with H instead of W (a transposed axis)": (2, '''
def roi_pool_backward_loops(dout, argmax, batch_index, features_shape):
    N, C, H, W = features_shape
    d = np.zeros(features_shape)
    R, _, PH, PW = argmax.shape
    for r in range(R):
        for c in range(C):
            for ph in range(PH):
                for pw in range(PW):
                    idx = int(argmax[r, c, ph, pw])
                    if idx >= 0:
                        h, w = divmod(idx, H)
                        d[int(batch_index[r]), c, h % H, w % W] += dout[r, c, ph, pw]
    return d
'''),
    # no empty bin in the worked example nor among the random RoIs inside the map
    "routes empty bins (-1) to the last cell": (5, '''
def roi_pool_backward_loops(dout, argmax, batch_index, features_shape):
    N, C, H, W = features_shape
    d = np.zeros(features_shape)
    R, _, PH, PW = argmax.shape
    for r in range(R):
        for c in range(C):
            for ph in range(PH):
                for pw in range(PW):
                    h, w = divmod(int(argmax[r, c, ph, pw]), W)
                    d[int(batch_index[r]), c, h, w] += dout[r, c, ph, pw]
    return d
'''),
    "ignores the batch index": (0, '''
def roi_pool_backward_loops(dout, argmax, batch_index, features_shape):
    N, C, H, W = features_shape
    d = np.zeros(features_shape)
    for (r, c, ph, pw), idx in np.ndenumerate(argmax):
        if idx >= 0:
            d[0, c, idx // W, idx % W] += dout[r, c, ph, pw]
    return d
'''),
}

SPP_WRONG = {
    "flattens each block channel-last (a transposed axis)": (0, _ROUTE + '''
def spp_backward_loops(dout, argmaxes, batch_index, features_shape, levels):
    R, C = dout.shape[0], features_shape[1]
    d, col = np.zeros(features_shape), 0
    for lv, argmax in zip(levels, argmaxes):
        block = dout[:, col:col + C * lv * lv].reshape(R, lv, lv, C).transpose(0, 3, 1, 2)
        col += C * lv * lv
        d += _route(block, argmax, batch_index, features_shape)
    return d
'''),
    # the pyramid (4, 2, 1) is sorted largest first: 2 points for it
    "reads the levels largest first (assumes sorted levels)": (2, _ROUTE + '''
def spp_backward_loops(dout, argmaxes, batch_index, features_shape, levels):
    R, C = dout.shape[0], features_shape[1]
    d, col = np.zeros(features_shape), 0
    order = sorted(range(len(levels)), key=lambda k: -levels[k])
    for k in order:
        lv = levels[k]
        block = dout[:, col:col + C * lv * lv].reshape(R, C, lv, lv)
        col += C * lv * lv
        d += _route(block, argmaxes[k], batch_index, features_shape)
    return d
'''),
    "keeps the last level instead of summing them": (0, _ROUTE + '''
def spp_backward_loops(dout, argmaxes, batch_index, features_shape, levels):
    R, C = dout.shape[0], features_shape[1]
    d, col = np.zeros(features_shape), 0
    for lv, argmax in zip(levels, argmaxes):
        block = dout[:, col:col + C * lv * lv].reshape(R, C, lv, lv)
        col += C * lv * lv
        d = _route(block, argmax, batch_index, features_shape)
    return d
'''),
}

_ALIGN = '''
def roi_align_backward_loops(dout, rois, features_shape, *, spatial_scale, sampling_ratio,
                             aligned):
    N, C, H, W = features_shape
    R, _, PH, PW = dout.shape
    S = sampling_ratio
    d = np.zeros(features_shape)
    offset = OFFSET
    for r in range(R):
        n = int(rois[r, 0])
        sw, sh = rois[r, 1] * spatial_scale - offset, rois[r, 2] * spatial_scale - offset
        rw = rois[r, 3] * spatial_scale - offset - sw
        rh = rois[r, 4] * spatial_scale - offset - sh
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / PH, rw / PW
        for ph in range(PH):
            for pw in range(PW):
                for iy in range(S):
                    y = sh + ph * bh + (iy + 0.5) * bh / S
                    for ix in range(S):
                        x = sw + pw * bw + (ix + 0.5) * bw / S
                        for h, w, weight in NEIGHBOURS(y, x, H, W):
                            d[n, :, h, w] += weight / DIVISOR * dout[r, :, ph, pw]
    return d


def swapped_neighbours(y, x, H, W):
    return [(h, w, weight) for (h, w, _), (_, _, weight) in
            zip(bilinear_neighbours(y, x, H, W), bilinear_neighbours(y, x, H, W)[::-1])]


def unclamped_neighbours(y, x, H, W):
    y_low, x_low = int(np.floor(y)), int(np.floor(x))
    ly, lx = y - y_low, x - x_low
    cells = [(y_low, x_low, (1 - ly) * (1 - lx)), (y_low, x_low + 1, (1 - ly) * lx),
             (y_low + 1, x_low, ly * (1 - lx)), (y_low + 1, x_low + 1, ly * lx)]
    return [(h, w, v) for h, w, v in cells if 0 <= h < H and 0 <= w < W]
'''
ALIGN_WRONG = {
    # a single sample (S = 1): 1 point
    "forgets the mean over the S x S samples": (1,
        _ALIGN.replace("OFFSET", "0.5 if aligned else 0.0").replace("DIVISOR", "1")
              .replace("NEIGHBOURS", "bilinear_neighbours")),
    "swaps the weights of near and far neighbours": (0,
        _ALIGN.replace("OFFSET", "0.5 if aligned else 0.0").replace("DIVISOR", "S**2")
              .replace("NEIGHBOURS", "swapped_neighbours")),
    "ignores aligned's half-cell offset": (0,
        _ALIGN.replace("OFFSET", "0.0").replace("DIVISOR", "S**2")
              .replace("NEIGHBOURS", "bilinear_neighbours")),
    # the single sample lies inside the map: 1 point
    "no border rules (drops, never clamps, samples off the map)": (1,
        _ALIGN.replace("OFFSET", "0.5 if aligned else 0.0").replace("DIVISOR", "S**2")
              .replace("NEIGHBOURS", "unclamped_neighbours")),
}

CASES = {"roi_pool_backward": ROI_POOL_WRONG, "spp_backward": SPP_WRONG,
         "roi_align_backward": ALIGN_WRONG}
