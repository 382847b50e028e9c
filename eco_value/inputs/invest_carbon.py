"""Files of the InVEST-compatible carbon mode: the pool table and the land-cover rasters (checked), read
by windows from any thread."""

from __future__ import annotations

import csv
import math
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

from ..errors import InputError, Problem
from ..grid import M2_PER_HA

POOL_COLUMNS = ("c_above", "c_below", "c_soil", "c_dead")   # InVEST's pool table columns, Mg C/ha


def read_pool_table(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """InVEST pool table → (codes int64, pools float64 of shape (n, 4) in POOL_COLUMNS order).

    Column names are matched without case or surrounding spaces (as InVEST does); other columns are ignored.
    """
    path = Path(path)
    if not path.exists():
        raise InputError([Problem("missing-file", str(path), "pools", "the pool table does not exist", "check the path")])
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    cols = {c.strip().lower() for c in (rows[0].keys() if rows else []) if c is not None}
    missing = [c for c in ("lucode",) + POOL_COLUMNS if c not in cols]
    if missing:
        raise InputError([Problem("missing-field", str(path), "pools", f"missing column(s) {missing}",
                                  "use InVEST's columns lucode,c_above,c_below,c_soil,c_dead (Mg C/ha)")])
    codes: list[int] = []
    pools: list[list[float]] = []
    bad: dict[str, list[str]] = {}
    for line, r in enumerate(rows, start=2):
        r = {k.strip().lower(): (v or "").strip() for k, v in r.items() if k is not None}
        try:
            code = float(r["lucode"])
            if not code.is_integer():
                raise ValueError
        except ValueError:
            bad.setdefault("lucode", []).append(f"line {line}: {r['lucode']!r}")
            continue
        vals = []
        for c in POOL_COLUMNS:
            try:
                v = float(r[c])
                if not math.isfinite(v):
                    raise ValueError
                vals.append(v)
            except ValueError:
                bad.setdefault(c, []).append(f"line {line}: {r[c]!r}")
        codes.append(int(code))
        pools.append(vals)
    if bad:
        raise InputError([Problem("bad-value", str(path), f"pools.{c}", f"{len(v)} value(s) are not numbers: {', '.join(v[:5])}",
                                  "give every lucode as an integer and every pool as a number in Mg C/ha") for c, v in bad.items()])
    seen: dict[int, int] = {}
    for c in codes:
        seen[c] = seen.get(c, 0) + 1
    dup = {c: n for c, n in seen.items() if n > 1}
    if dup:
        raise InputError([Problem("duplicate-id", str(path), "pools.lucode", f"lucode(s) appear more than once: {dup}",
                                  "keep one row per code")])
    return np.array(codes, dtype=np.int64), np.array(pools, dtype=np.float64).reshape(len(codes), len(POOL_COLUMNS))


@dataclass(frozen=True)
class LulcRaster:
    path: Path
    role: str
    dtype: str
    nodata: float | None
    width: int
    height: int
    transform: Affine
    crs: object
    block_shape: tuple[int, int]

    @property
    def pixel_area_ha(self) -> float:
        t = self.transform
        return abs(t.a * t.e - t.b * t.d) / M2_PER_HA


def open_lulc(path: str | Path, role: str) -> LulcRaster:
    """Check a land-cover raster (exists, opens, integer classes, projected CRS) and describe it."""
    path = Path(path)
    if not path.exists():
        raise InputError([Problem("missing-file", str(path), role, "the land-cover raster does not exist", "check the path")])
    try:
        ds = rasterio.open(path)
    except rasterio.errors.RasterioIOError as e:
        raise InputError([Problem("unreadable", str(path), role, f"cannot be opened as a raster ({e})",
                                  "give a GeoTIFF land-cover map")]) from None
    with ds:
        if ds.crs is None or not ds.crs.is_projected:
            raise InputError([Problem("no-crs" if ds.crs is None else "crs-not-projected", str(path), role,
                                      "pixel areas need a projected CRS in metres", "reproject the land-cover map (e.g. to UTM)")])
        if np.dtype(ds.dtypes[0]).kind not in "iu":
            raise InputError([Problem("not-categorical", str(path), role, f"data type {ds.dtypes[0]} is not an integer class map",
                                      "give an integer land-cover raster")])
        return LulcRaster(path, role, ds.dtypes[0], ds.nodata, ds.width, ds.height, ds.transform, ds.crs,
                          tuple(ds.block_shapes[0]))


def check_same_grid(a: LulcRaster, b: LulcRaster) -> None:
    """InVEST requires the baseline and alternate maps to have the same pixel size and dimensions; eco-value
    also requires the same origin and CRS (else pixel i of one is not pixel i of the other)."""
    diffs = []
    if (a.width, a.height) != (b.width, b.height):
        diffs.append(f"size {a.width}x{a.height} vs {b.width}x{b.height}")
    if a.transform != b.transform:
        diffs.append(f"transform {tuple(a.transform)[:6]} vs {tuple(b.transform)[:6]}")
    if a.crs != b.crs:
        diffs.append(f"CRS {a.crs} vs {b.crs}")
    if diffs:
        raise InputError([Problem("grid-mismatch", str(b.path), b.role, f"not on the grid of {a.path.name}: {'; '.join(diffs)}",
                                  "resample the future land-cover map onto the current one's grid (nearest neighbour)")])


def windows(height: int, width: int, rows: int, cols: int) -> list[Window]:
    """Row-major windows of at most rows × cols pixels covering the raster."""
    return [Window(c, r, min(cols, width - c), min(rows, height - r)) for r in range(0, height, rows) for c in range(0, width, cols)]


class WindowReader:
    """Reads windows of several rasters from any thread (one open dataset per thread and raster)."""

    def __init__(self, paths: dict[str, Path]):
        self.paths = paths
        self._local = threading.local()
        self._all: list = []
        self._lock = threading.Lock()

    def read(self, key: str, win: Window) -> np.ndarray:
        ds = getattr(self._local, "ds", None)
        if ds is None:
            ds = self._local.ds = {}
        if key not in ds:
            ds[key] = rasterio.open(self.paths[key])
            with self._lock:
                self._all.append(ds[key])
        return ds[key].read(1, window=win)

    def close(self) -> None:
        for d in self._all:
            d.close()
        self._all.clear()
