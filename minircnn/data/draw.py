"""Pure-NumPy drawing for the synthetic shapes data: masks, backgrounds, clutter.

Everything is computed from a ``np.random.Generator`` with plain arithmetic on a pixel
grid (no rasteriser), so the same seed gives the same pixels on every machine. Masks are
hard-edged (no anti-aliasing): a pixel belongs to a shape when its centre
``(col + 0.5, row + 0.5)`` lies inside it, which makes "tight box = mask extent" exact.
"""

from __future__ import annotations

import math

import numpy as np

ALL_SHAPES = (
    "circle", "square", "triangle", "ellipse", "diamond",
    "cross", "star", "hexagon", "ring", "rectangle",
)
BACKGROUNDS = ("textured", "plain", "stripes")


def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``xx, yy``, each (size, size) float64: xx[r, c] = c + 0.5."""
    centres = np.arange(size, dtype=np.float64) + 0.5     # (S,)
    yy, xx = np.meshgrid(centres, centres, indexing="ij")  # (S, S) each
    return xx, yy


def polygon_mask(xx: np.ndarray, yy: np.ndarray, verts: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test on the grid; verts (V, 2) as (x, y). Returns bool (S, S)."""
    inside = np.zeros(xx.shape, dtype=bool)
    for (x1, y1), (x2, y2) in zip(verts, np.roll(verts, -1, axis=0), strict=True):
        if y1 == y2:                       # a horizontal edge never crosses a scanline
            continue
        crosses = (y1 > yy) != (y2 > yy)
        x_cross = x1 + (yy - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (xx < x_cross)
    return inside


def _regular(n: int, r: float, angle: float, *, inner: float | None = None) -> np.ndarray:
    """Vertices (V, 2) of a regular n-gon (or an n-pointed star with ``inner`` radius)."""
    if inner is None:
        t = angle + 2 * np.pi * np.arange(n) / n
        radii = np.full(n, r)
    else:
        t = angle + np.pi * np.arange(2 * n) / n
        radii = np.where(np.arange(2 * n) % 2 == 0, r, inner)
    return np.stack([radii * np.cos(t), radii * np.sin(t)], axis=1)   # (V, 2)


def _rotate(verts: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, s], [-s, c]])
    return verts @ rot                     # (V, 2) @ (2, 2) -> (V, 2)


def shape_vertices(kind: str, r: float, angle: float, rng: np.random.Generator) -> np.ndarray:
    """Polygon (V, 2) centred at 0 with circumradius <= r, for the polygonal kinds."""
    if kind == "square":
        return _regular(4, r, angle + np.pi / 4)
    if kind == "rectangle":
        half = r / math.sqrt(2) * np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=float)
        half[:, 1] *= rng.uniform(0.45, 0.7)
        return _rotate(half, angle)
    if kind == "diamond":
        d = np.array([[r, 0], [0, r], [-r, 0], [0, -r]], dtype=float)
        d[:, 0] *= rng.uniform(0.55, 0.7)
        return _rotate(d, rng.uniform(-0.25, 0.25))
    if kind == "triangle":               # irregular: vertex angles jittered by up to 20 deg
        t = angle + 2 * np.pi * np.arange(3) / 3 + rng.uniform(-0.35, 0.35, size=3)
        return r * np.stack([np.cos(t), np.sin(t)], axis=1)   # (3, 2)
    if kind == "hexagon":
        return _regular(6, r, angle)
    if kind == "star":
        return _regular(5, r, angle, inner=0.45 * r)
    if kind == "cross":
        w = 0.32 * r
        arm = [(r, w), (w, w), (w, r), (-w, r), (-w, w), (-r, w),
               (-r, -w), (-w, -w), (-w, -r), (w, -r), (w, -w), (r, -w)]
        return _rotate(np.array(arm, dtype=float), angle)
    raise ValueError(f"kind: expected one of {ALL_SHAPES}, got {kind!r}")


def shape_mask(kind: str, xx: np.ndarray, yy: np.ndarray, *, cx: float, cy: float,
               r: float, angle: float, rng: np.random.Generator) -> np.ndarray:
    """Bool (S, S) mask of one shape of circumradius r centred at (cx, cy)."""
    u, v = xx - cx, yy - cy
    if kind == "circle":
        return u * u + v * v <= r * r
    if kind == "ring":
        d2 = u * u + v * v
        return (d2 <= r * r) & (d2 >= (rng.uniform(0.45, 0.6) * r) ** 2)
    if kind == "ellipse":
        c, s = math.cos(angle), math.sin(angle)
        a, b = r, r * rng.uniform(0.45, 0.65)
        pu, pv = c * u + s * v, -s * u + c * v
        return (pu / a) ** 2 + (pv / b) ** 2 <= 1.0
    verts = shape_vertices(kind, r, angle, rng) + np.array([cx, cy])
    return polygon_mask(xx, yy, verts)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """(S, S) bilinear upsampling of a (cells, cells) uniform random grid: soft blobs."""
    low = rng.uniform(-1.0, 1.0, size=(cells, cells))
    src = np.linspace(0.0, size, cells)
    dst = np.arange(size) + 0.5
    rows = np.stack([np.interp(dst, src, low[:, j]) for j in range(cells)], axis=1)  # (S, c)
    return np.stack([np.interp(dst, src, rows[i]) for i in range(size)], axis=0)     # (S, S)


def background(rng: np.random.Generator, size: int, style: str = "textured") -> np.ndarray:
    """(3, S, S) float64 background: a colour gradient plus texture (style-dependent)."""
    if style not in BACKGROUNDS:
        raise ValueError(f"background: expected one of {BACKGROUNDS}, got {style!r}")
    xx, yy = pixel_grid(size)
    c0, c1 = rng.uniform(0.15, 0.85, size=(2, 3, 1, 1))
    if style == "plain":
        return np.broadcast_to(c0, (3, size, size)).copy()
    a = rng.uniform(0, 2 * np.pi)
    t = (math.cos(a) * xx + math.sin(a) * yy) / size          # (S, S), roughly [-1.4, 1.4]
    t = (t - t.min()) / (t.max() - t.min())
    img = c0 + (c1 - c0) * 0.6 * t                            # (3, S, S) gentle gradient
    period = rng.uniform(4.0, 14.0) * size / 128
    b = rng.uniform(0, np.pi)
    stripes = np.sin(2 * np.pi * (math.cos(b) * xx + math.sin(b) * yy) / period)
    tint = rng.uniform(0.5, 1.0, size=(3, 1, 1))
    if style == "stripes":
        return img + 0.12 * tint * stripes
    if rng.random() < 0.5:
        texture = rng.uniform(0.03, 0.08) * stripes
    else:
        texture = rng.uniform(0.08, 0.15) * _smooth_noise(rng, size, int(rng.integers(4, 9)))
    return img + tint * texture


def draw_clutter(img: np.ndarray, rng: np.random.Generator, *, lines: int, dots: int) -> None:
    """Draw thin random lines and small dots (not objects) into img (3, S, S), in place."""
    size = img.shape[-1]
    xx, yy = pixel_grid(size)
    scale = size / 128
    for _ in range(lines):
        x0, y0 = rng.uniform(0, size, size=2)
        length, a = rng.uniform(8, 40) * scale, rng.uniform(0, 2 * np.pi)
        steps = np.linspace(0.0, length, int(4 * length) + 2)
        cols = np.clip((x0 + steps * math.cos(a)).astype(int), 0, size - 1)
        rows = np.clip((y0 + steps * math.sin(a)).astype(int), 0, size - 1)
        img[:, rows, cols] = rng.uniform(0, 1, size=(3, 1))
    for _ in range(dots):
        cx, cy = rng.uniform(0, size, size=2)
        r = rng.uniform(1.0, 2.5) * scale
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        img[:, mask] = rng.uniform(0, 1, size=(3, 1))


def pick_color(rng: np.random.Generator, against: np.ndarray, *, min_dist: float = 0.35,
               tries: int = 30) -> np.ndarray:
    """A random RGB colour (3,) at Euclidean distance >= min_dist from ``against`` (3,)."""
    best, best_d = None, -1.0
    for _ in range(tries):
        c = rng.uniform(0.0, 1.0, size=3)
        d = float(np.linalg.norm(c - against))
        if d >= min_dist:
            return c
        if d > best_d:
            best, best_d = c, d
    return best


def paint(img: np.ndarray, mask: np.ndarray, color: np.ndarray, rng: np.random.Generator) -> None:
    """Fill mask in img (3, S, S) with colour (3,) plus a faint linear shading, in place."""
    rows, cols = np.nonzero(mask)
    a = rng.uniform(0, 2 * np.pi)
    ramp = (math.cos(a) * cols + math.sin(a) * rows) / img.shape[-1]   # (M,)
    img[:, rows, cols] = color[:, None] + 0.08 * ramp[None, :]         # (3, M)


def finish(img: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    """Add Gaussian noise, clip to [0, 1] and quantise to 8 bits; returns float32 (3, S, S).

    Quantising makes the images exactly what a PNG stores, and the bytes identical
    across machines even if a libm differs in the last bit.
    """
    img = img + rng.normal(0.0, noise, size=img.shape)
    img8 = np.round(np.clip(img, 0.0, 1.0) * 255.0)
    return (img8 / 255.0).astype(np.float32)
