"""Procedural dSprites: 64x64 binary sprites with known ground-truth factors."""

import numpy as np

DSPRITES_FACTORS = ("shape", "scale", "orientation", "x", "y")
DSPRITES_SIZES = (3, 6, 40, 32, 32)  # number of values of each factor, as in dSprites


def dsprites(n, *, seed=0):
    """Renders `n` random 64x64 binary sprites and returns `(images, factors)`.

    The factors are drawn uniformly from the dSprites grid: 3 shapes (square, ellipse, heart),
    6 scales in [0.5, 1], 40 orientations in [0, 2pi), 32 x and 32 y positions in [0, 1].
    """
    rng = np.random.default_rng(seed)
    factors = np.stack([rng.integers(0, k, size=n) for k in DSPRITES_SIZES], axis=1)
    grid = (np.arange(64) + 0.5) / 64.0
    gy, gx = np.meshgrid(grid, grid, indexing="ij")
    images = np.zeros((n, 64, 64, 1), np.float32)
    for i, (shape, scale, angle, px, py) in enumerate(factors):
        s = 0.5 + 0.5 * scale / 5
        theta = 2 * np.pi * angle / 40
        cx, cy = 0.2 + 0.6 * px / 31, 0.2 + 0.6 * py / 31  # keep sprites inside the frame
        # Pixel coordinates in the sprite's own frame (unit size = 0.1 of the image).
        dx, dy = (gx - cx) / (0.1 * s), (gy - cy) / (0.1 * s)
        u = np.cos(theta) * dx + np.sin(theta) * dy
        v = -np.sin(theta) * dx + np.cos(theta) * dy
        if shape == 0:
            inside = (np.abs(u) <= 0.9) & (np.abs(v) <= 0.9)
        elif shape == 1:
            inside = (u / 1.2) ** 2 + (v / 0.6) ** 2 <= 1
        else:
            hu, hv = u / 1.1, -v / 1.1 + 0.2
            inside = (hu**2 + hv**2 - 1) ** 3 - hu**2 * hv**3 <= 0
        images[i, ..., 0] = inside
    return images, factors.astype(np.int64)
