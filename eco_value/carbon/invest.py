"""InVEST-compatible carbon stock mode (``eco-value carbon-stock``).

Same conventions as InVEST 3.x Carbon: a pool table with columns ``lucode,c_above,c_below,c_soil,
c_dead`` in Mg C/ha; stock = Σ pools(class) × pixel area (ha, from the raster transform in a
projected CRS); sequestration = future stock − current stock. Nodata pixels and codes missing from
the table contribute nothing, and both are counted and reported (InVEST stops on a missing code;
eco-value reports it so a user sees every missing code at once).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pandas as pd
import rasterio

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


def read_pools(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise InputError([Problem("missing-file", str(path), "pools", "the pool table does not exist", "check the path")])
    df = pd.read_csv(path)
    df.columns = [c.strip().lower() for c in df.columns]
    missing = [c for c in ("lucode",) + POOL_COLUMNS if c not in df.columns]
    if missing:
        raise InputError([Problem("missing-field", str(path), "pools", f"missing column(s) {missing}",
                                  "use InVEST's columns lucode,c_above,c_below,c_soil,c_dead (Mg C/ha)")])
    if df["lucode"].duplicated().any():
        raise InputError([Problem("duplicate-id", str(path), "pools", "duplicate lucode rows", "keep one row per code")])
    return df


def _lazy_stock(path: Path, table: np.ndarray, known: np.ndarray, chunk: int):
    with rasterio.open(path) as ds:
        if ds.crs is None or not ds.crs.is_projected:
            raise InputError([Problem("no-crs" if ds.crs is None else "crs-not-projected", str(path), "lulc",
                                      "pixel areas need a projected CRS in metres", "reproject the land-cover map (e.g. to UTM)")])
        nodata = ds.nodata
        area_ha = abs(ds.transform.a * ds.transform.e - ds.transform.b * ds.transform.d) / M2_PER_HA
        shape, dtype = (ds.height, ds.width), ds.dtypes[0]
        bh, bw = ds.block_shapes[0]
    ch = (max(chunk // bh, 1) * bh, max(chunk // bw, 1) * bw)

    def read(block_info=None):
        (r0, r1), (c0, c1) = block_info[None]["array-location"]
        with rasterio.open(path) as src:
            return src.read(1, window=((r0, r1), (c0, c1)))

    codes = da.map_blocks(read, chunks=da.core.normalize_chunks(ch, shape), dtype=dtype, meta=np.array((), dtype))

    def reduce_block(c):
        c = c.astype(np.int64).ravel()
        nod = (c == nodata) if nodata is not None else np.zeros(c.shape, bool)
        inside = (c >= 0) & (c < len(table))
        idx = np.where(inside & ~nod, c, 0)
        ok = inside & ~nod & known[idx]
        s = table[idx][ok].sum(dtype=np.float64)
        miss = c[~nod & ~ok]
        return np.array([s, nod.sum()], dtype=np.float64)[None, None, :], miss

    parts = codes.to_delayed().ravel()
    out = [dask.delayed(reduce_block)(p) for p in parts]
    return out, area_ha


def carbon_stock(lulc: str | Path, pools: str | Path, future_lulc: str | Path | None = None,
                 chunk_px: int = 2048) -> StockResult:
    """Total carbon stock (Mg C) of a land-cover map, and sequestration with a future map."""
    df = read_pools(pools)
    maxcode = int(df["lucode"].max())
    table = np.zeros(maxcode + 1)
    known = np.zeros(maxcode + 1, dtype=bool)
    codes = df["lucode"].astype(int).to_numpy()
    table[codes] = df[list(POOL_COLUMNS)].sum(axis=1).to_numpy(dtype=np.float64)
    known[codes] = True
    jobs = {}
    areas = {}
    for key, p in (("current", lulc), ("future", future_lulc)):
        if p is None:
            continue
        p = Path(p)
        if not p.exists():
            raise InputError([Problem("missing-file", str(p), key, "the land-cover raster does not exist", "check the path")])
        jobs[key], areas[key] = _lazy_stock(p, table, known, chunk_px)
    (res,) = dask.compute(jobs, scheduler="threads")
    out = {}
    missing: dict[int, int] = {}
    nodata_px = 0
    for key, parts in res.items():
        s = sum(float(a[0, 0, 0]) for a, _ in parts) * areas[key]
        nodata_px += int(sum(a[0, 0, 1] for a, _ in parts))
        allmiss = np.concatenate([m for _, m in parts]) if parts else np.zeros(0, np.int64)
        for code, n in zip(*np.unique(allmiss, return_counts=True)):
            missing[int(code)] = missing.get(int(code), 0) + int(n)
        out[key] = s
    fut = out.get("future")
    return StockResult(out["current"], fut, None if fut is None else fut - out["current"], nodata_px, missing)
