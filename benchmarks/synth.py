"""Synthetic benchmark inputs: patchy land-cover maps of any size, written tile by tile (bounded memory)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

POOLS = """lucode,c_above,c_below,c_soil,c_dead
1,5.0,1.0,60.7,0.0
2,105.5,25.9,88.0,13.0
3,9.4,3.0,88.0,5.0
4,6.4,2.0,88.0,0.0
5,0,0,0,0
8,0,0,70.4,0
"""
CLASSES = np.array([1, 2, 2, 2, 3, 4, 5, 8], dtype=np.uint8)


def patchy_lulc(path: Path, n: int, seed: int, tile: int = 256, compress: str = "DEFLATE", change: float = 0.0) -> Path:
    """An n x n uint8 land-cover GeoTIFF (30 m, UTM 48N) of patches ~ 8-32 px, nodata 255 at the corners."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    prof = dict(driver="GTiff", width=n, height=n, count=1, dtype="uint8", crs="EPSG:32648", nodata=255,
                transform=Affine(30.0, 0, 300000.0, 0, -30.0, 3400000.0), tiled=True, blockxsize=tile, blockysize=tile,
                compress=compress)
    band = 1024
    with rasterio.open(path, "w", **prof) as dst:
        for r0 in range(0, n, band):
            h = min(band, n - r0)
            rng = np.random.default_rng([seed, r0])
            coarse = rng.integers(0, len(CLASSES), size=(h // 16 + 2, n // 16 + 2))
            a = CLASSES[np.repeat(np.repeat(coarse, 16, 0), 16, 1)[:h, :n]]
            if change:
                flip = rng.random((h, n)) < change
                a = np.where(flip, CLASSES[rng.integers(0, len(CLASSES), (h, n))], a)
            rows = np.arange(r0, r0 + h)[:, None]
            cols = np.arange(n)[None, :]
            a = np.where((rows + cols) < n // 20, np.uint8(255), a)   # a nodata corner
            dst.write(a.astype(np.uint8), 1, window=((r0, r0 + h), (0, n)))
    return path


def pools_csv(path: Path) -> Path:
    path.write_text(POOLS, encoding="utf-8")
    return path
