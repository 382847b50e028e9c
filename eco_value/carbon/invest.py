"""InVEST-compatible carbon stock mode (``eco-value carbon-stock``).

Same conventions as InVEST 3.x Carbon: a pool table with columns ``lucode,c_above,c_below,c_soil,
c_dead`` in Mg C/ha; stock = Σ pools(class) × pixel area (ha, from the raster transform in a
projected CRS); sequestration = future stock − current stock. Nodata pixels and codes missing from
the table contribute nothing, and both are counted and reported (InVEST stops on a missing code;
eco-value reports every missing code at once).

Fast path: the stock is linear in the class counts, so each raster block is reduced to a histogram
of its codes (``np.bincount``), blocks are decoded in parallel threads (GDAL releases the GIL), and
stock = Σ count(code) × pools(code) × area. Memory is one block per thread, whatever the raster size.
This module imports only numpy and rasterio, so the command starts fast.
"""

from __future__ import annotations

import csv
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from ..errors import InputError, Problem
from ..grid import M2_PER_HA

POOL_COLUMNS = ("c_above", "c_below", "c_soil", "c_dead")


@dataclass
class StockResult:
    total_stock_mgc: float
    future_stock_mgc: float | None = None
    sequestration_mgc: float | None = None
    nodata_px: int = 0
    missing_codes: dict[int, int] = field(default_factory=dict)

    def as_json(self) -> dict:
        return {"total_stock_mgc": self.total_stock_mgc, "sequestration_mgc": self.sequestration_mgc,
                "future_stock_mgc": self.future_stock_mgc, "nodata_px": self.nodata_px,
                "missing_codes": {str(k): v for k, v in sorted(self.missing_codes.items())}}


def read_pools(path: str | Path) -> dict[int, float]:
    """Pool table → {lucode: total Mg C/ha}."""
    path = Path(path)
    if not path.exists():
        raise InputError([Problem("missing-file", str(path), "pools", "the pool table does not exist", "check the path")])
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    cols = {c.strip().lower() for c in (rows[0].keys() if rows else [])}
    missing = [c for c in ("lucode",) + POOL_COLUMNS if c not in cols]
    if missing:
        raise InputError([Problem("missing-field", str(path), "pools", f"missing column(s) {missing}",
                                  "use InVEST's columns lucode,c_above,c_below,c_soil,c_dead (Mg C/ha)")])
    table: dict[int, float] = {}
    for r in rows:
        r = {k.strip().lower(): v for k, v in r.items()}
        code = int(float(r["lucode"]))
        if code in table:
            raise InputError([Problem("duplicate-id", str(path), "pools", f"lucode {code} appears twice", "keep one row per code")])
        table[code] = sum(float(r[c]) for c in POOL_COLUMNS)
    return table


def _histogram(path: Path, threads: int) -> tuple[np.ndarray, float, float | None]:
    with rasterio.open(path) as ds:
        if ds.crs is None or not ds.crs.is_projected:
            raise InputError([Problem("no-crs" if ds.crs is None else "crs-not-projected", str(path), "lulc",
                                      "pixel areas need a projected CRS in metres", "reproject the land-cover map (e.g. to UTM)")])
        if np.dtype(ds.dtypes[0]).kind not in "iu":
            raise InputError([Problem("not-categorical", str(path), "lulc", f"data type {ds.dtypes[0]} is not an integer class map",
                                      "give an integer land-cover raster")])
        area_ha = abs(ds.transform.a * ds.transform.e - ds.transform.b * ds.transform.d) / M2_PER_HA
        nodata = ds.nodata
        bh, bw = ds.block_shapes[0]
        h, w = ds.height, ds.width
    # windows of whole blocks, about 4 Mpx each
    rows_per = max(bh, (4_000_000 // max(w, 1)) // bh * bh)
    windows = [Window(0, r, w, min(rows_per, h - r)) for r in range(0, h, rows_per)]
    local = __import__("threading").local()

    def work(win):
        if not hasattr(local, "ds"):
            local.ds = rasterio.open(path)
        a = local.ds.read(1, window=win)
        return np.bincount(a.ravel().astype(np.int64) - _offset(a.dtype), minlength=0)

    with ThreadPoolExecutor(max_workers=threads) as ex:
        parts = list(ex.map(work, windows))
    n = max(len(p) for p in parts)
    hist = np.zeros(n, dtype=np.int64)
    for p in parts:
        hist[: len(p)] += p
    return hist, area_ha, nodata


def _offset(dtype) -> int:
    return int(np.iinfo(dtype).min) if np.dtype(dtype).kind == "i" else 0


def carbon_stock(lulc: str | Path, pools: str | Path, future_lulc: str | Path | None = None,
                 threads: int | None = None) -> StockResult:
    """Total carbon stock (Mg C) of a land-cover map, and sequestration with a future map."""
    table = read_pools(pools)
    threads = threads or min(os.cpu_count() or 1, 8)
    out: dict[str, float] = {}
    missing: dict[int, int] = {}
    nodata_px = 0
    for key, p in (("current", lulc), ("future", future_lulc)):
        if p is None:
            continue
        p = Path(p)
        if not p.exists():
            raise InputError([Problem("missing-file", str(p), key, "the land-cover raster does not exist", "check the path")])
        with rasterio.open(p) as ds:
            off = _offset(ds.dtypes[0])
        hist, area_ha, nodata = _histogram(p, threads)
        total = 0.0
        for i in np.flatnonzero(hist):
            code = int(i) + off
            if nodata is not None and code == nodata:
                nodata_px += int(hist[i])
            elif code in table:
                total += float(hist[i]) * table[code]
            else:
                missing[code] = missing.get(code, 0) + int(hist[i])
        out[key] = total * area_ha
    fut = out.get("future")
    return StockResult(out["current"], fut, None if fut is None else fut - out["current"], nodata_px, missing)
