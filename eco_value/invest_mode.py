"""``eco-value carbon-stock``: InVEST 3.20 Carbon's outputs and totals from a pool table.

Two ways, same numbers:

- totals only (:func:`carbon_stock`): each block of codes is reduced to a histogram, stock = Σ count ×
  density × pixel area; blocks are decoded in threads (GDAL releases the GIL). Memory: one block a thread.
- maps (:func:`carbon_stock_maps`): one fused task per chunk (one tile row high) reads the land-cover
  window(s), computes every map with :func:`eco_value.carbon.invest.carbon_block` and compresses its
  tiles; the calling thread appends the chunks' tiles in order to the final COGs (one pass, no temporary
  rasters). Memory: a few chunks of every map, whatever the raster size.

Threads rather than dask: the work is one pass of independent chunks, and the command starts ~0.2 s
faster without importing dask (the start-up counts in a command that runs in about a second).
"""

from __future__ import annotations

import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .carbon.invest import (CARBON_NODATA, MAX_CLASSES, NPV_NODATA, POOL_COLUMNS, BlockCounts, PoolTable, Scratch,
                            block_totals, build_lookup, carbon_block, slot_tables, valuation_constant)
from .errors import InputError, Problem
from .inputs.invest_carbon import WindowReader, check_same_grid, open_lulc, read_pool_table, windows

CHUNK_COLS = 2048             # one task: one tile row (512 px) × 2048 px = 1 Mpx (≤ 12 float32 maps → ≤ 48 MB)
IN_FLIGHT_PER_THREAD = 2      # chunks computed ahead of the (ordered) appending, per worker thread
HIST_CHUNK_PX = 4_000_000                   # totals only: ~4 Mpx of codes per task


@dataclass
class Valuation:
    """InVEST's valuation inputs: price per t C, yearly discount rate and price change in percent, the two years."""
    price_per_t_c: float
    discount_rate_pct: float
    rate_change_pct: float
    bas_year: int
    alt_year: int

    def constant(self) -> float:
        return valuation_constant(self.bas_year, self.alt_year, self.discount_rate_pct, self.rate_change_pct,
                                  self.price_per_t_c)


@dataclass
class StockResult:
    total_stock_mgc: float
    future_stock_mgc: float | None = None
    sequestration_mgc: float | None = None
    nodata_px: int = 0
    missing_codes: dict[int, int] = field(default_factory=dict)
    npv: float | None = None
    maps: dict[str, str] = field(default_factory=dict)
    summary_csv: str | None = None

    def as_json(self) -> dict:
        d = {"total_stock_mgc": self.total_stock_mgc, "sequestration_mgc": self.sequestration_mgc,
             "future_stock_mgc": self.future_stock_mgc, "nodata_px": self.nodata_px,
             "missing_codes": {str(k): v for k, v in sorted(self.missing_codes.items())}}
        if self.maps:
            d.update(npv=self.npv, maps=self.maps, summary_csv=self.summary_csv)
        return d


def _pool_table(pools) -> PoolTable:
    codes, vals = read_pool_table(pools)
    if len(codes) > MAX_CLASSES:
        raise InputError([Problem("too-many-classes", str(pools), "pools", f"{len(codes)} land-cover classes; at most "
                                  f"{MAX_CLASSES} are supported", "merge classes that share the same carbon densities")])
    return PoolTable(codes, vals)


def _threads(threads: int | None) -> int:
    return threads or min(os.cpu_count() or 1, 8)


def _open_pair(lulc, future_lulc):
    bas = open_lulc(lulc, "lulc")
    alt = None
    if future_lulc is not None:
        alt = open_lulc(future_lulc, "future_lulc")
        check_same_grid(bas, alt)
    return bas, alt


def carbon_stock(lulc: str | Path, pools: str | Path, future_lulc: str | Path | None = None,
                 threads: int | None = None) -> StockResult:
    """Total carbon stock (Mg C) of a land-cover map, and sequestration with a future map (no maps written)."""
    table = _pool_table(pools)
    bas, alt = _open_pair(lulc, future_lulc)
    threads = _threads(threads)
    totals = {}
    counts = BlockCounts()
    tables = slot_tables(table)
    for scen, r in (("bas", bas), ("alt", alt)):
        if r is None:
            continue
        lk = build_lookup(table, r.dtype, r.nodata)
        bh = r.block_shape[0]
        rows = max(bh, (HIST_CHUNK_PX // max(r.width, 1)) // bh * bh)
        reader = WindowReader({scen: r.path})
        try:
            with ThreadPoolExecutor(max_workers=threads) as ex:
                parts = list(ex.map(lambda w: block_totals(reader.read(scen, w), lk, tables, scen),
                                    windows(r.height, r.width, rows, r.width)))
        finally:
            reader.close()
        for p in parts:
            counts.add(p)
        totals[scen] = counts.sums[f"c_storage_{scen}"] * r.pixel_area_ha
    fut = totals.get("alt")
    return StockResult(totals["bas"], fut, None if fut is None else fut - totals["bas"], counts.nodata_px, counts.missing)


def carbon_stock_maps(lulc: str | Path, pools: str | Path, out: str | Path, future_lulc: str | Path | None = None, *,
                      valuation: Valuation | None = None, intermediate: bool = False, overviews: bool = False,
                      threads: int | None = None) -> StockResult:
    """Write InVEST 3.20 Carbon's maps (COGs, Mg C/ha; NPV in currency/ha) and ``raster_values_summary.csv``
    into ``out``; return the totals. Inputs are checked before anything is written."""
    from .outputs.invest_maps import MapSet, write_summary_csv

    table = _pool_table(pools)
    bas, alt = _open_pair(lulc, future_lulc)
    k = None
    if valuation is not None:
        problems = []
        if alt is None:
            problems.append(Problem("missing-input", "", "future_lulc", "valuation needs the future land-cover map",
                                    "give --future-lulc, or leave out --price"))
        if valuation.alt_year <= valuation.bas_year:
            problems.append(Problem("bad-value", "", "future_year", f"the future year ({valuation.alt_year}) must be after "
                                    f"the current year ({valuation.bas_year})", "give --lulc-year < --future-year"))
        if problems:
            raise InputError(problems)
        k = valuation.constant()
    threads = _threads(threads)
    lk_bas = build_lookup(table, bas.dtype, bas.nodata)
    lk_alt = build_lookup(table, alt.dtype, alt.nodata) if alt is not None else None
    tables = slot_tables(table, k)
    scen = ["bas"] + (["alt"] if alt is not None else [])
    names = {f"c_storage_{s}": CARBON_NODATA for s in scen}
    if alt is not None:
        names["c_change_bas_alt"] = CARBON_NODATA
        if k is not None:
            names["npv_alt"] = NPV_NODATA
    if intermediate:
        names.update({f"{p}_{s}": CARBON_NODATA for s in scen for p in POOL_COLUMNS})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    maps = MapSet(out, names, width=bas.width, height=bas.height, transform=bas.transform, crs=bas.crs,
                  tags={"source": "eco-value carbon-stock (InVEST 3.20 Carbon outputs)"}, threads=threads)
    reader = WindowReader({"bas": bas.path, **({"alt": alt.path} if alt is not None else {})})

    local = threading.local()

    def task(win):
        scratch = getattr(local, "scratch", None)
        if scratch is None:
            scratch = local.scratch = Scratch()
        # land cover as groups of contiguous tiles: the maps' tiles are then compressed without a copy
        a = maps.tile_groups(reader.read("bas", win))
        b = maps.tile_groups(reader.read("alt", win)) if alt is not None else [None] * len(a)
        tiles: dict[str, list[bytes]] = {}
        counts = BlockCounts()
        for ga, gb in zip(a, b):
            m, c = carbon_block(ga, lk_bas, tables, gb, lk_alt, intermediate=intermediate, scratch=scratch)
            for n, t in maps.encode_group(win, m).items():    # compressed before the next call reuses the scratch arrays
                tiles.setdefault(n, []).extend(t)
            counts.add(c)
        return (win, tiles), counts

    counts = BlockCounts()
    pending: deque = deque()

    def append_oldest():
        encoded, c = pending.popleft().result()
        maps.append(encoded)
        counts.add(c)

    try:
        with ThreadPoolExecutor(max_workers=threads) as ex:
            try:
                for win in maps.windows(CHUNK_COLS):          # in order: the maps' tiles are appended in order
                    pending.append(ex.submit(task, win))
                    if len(pending) >= IN_FLIGHT_PER_THREAD * threads:
                        append_oldest()
                while pending:
                    append_oldest()
            finally:
                for f in pending:
                    f.cancel()
    except BaseException:
        maps.discard()
        raise
    finally:
        reader.close()
    paths = maps.finish(threads, overviews=overviews)
    area = bas.pixel_area_ha
    summary = write_summary_csv(out, counts.sums, area)
    tot = counts.sums["c_storage_bas"] * area
    fut = counts.sums["c_storage_alt"] * area if alt is not None else None
    return StockResult(tot, fut, None if fut is None else fut - tot, counts.nodata_px, counts.missing,
                       npv=counts.sums["npv_alt"] * area if k is not None else None,
                       maps={n: str(p) for n, p in paths.items()}, summary_csv=str(summary))

