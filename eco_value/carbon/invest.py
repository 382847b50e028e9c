"""InVEST-compatible carbon stock mode: pure array functions (no files; the command's file work is in
``eco_value.inputs.invest_carbon`` and ``eco_value.outputs.invest_maps``, orchestrated by
``eco_value.invest_mode``).

Same model as InVEST 3.20 Carbon (``natcap.invest.carbon``): a pool table with columns
``lucode,c_above,c_below,c_soil,c_dead`` in Mg C/ha; per pixel

- ``c_<pool>_<scenario>`` = the pool's density of the pixel's class (float32, Mg C/ha);
- ``c_storage_<scenario>`` = c_above + c_below + c_soil + c_dead, added in that order in float32;
- ``c_change_bas_alt`` = c_storage_alt − c_storage_bas (float32) where both are valid;
- ``npv_alt`` = c_change_bas_alt × K (float32), with InVEST's valuation constant
  K = price / n · Σ_{k=0}^{n-1} r^k, r = 1 / ((1 + discount/100)(1 + rate_change/100)),
  n = alternate year − baseline year (K = price when r = 1);

nodata is −1 for the carbon maps and float32's largest value for ``npv_alt`` (pygeoprocessing's
choice for a float32 ``raster_map`` output). As in pygeoprocessing, a float value "is nodata" when it
is ``numpy.isclose`` to the nodata value, so a change of exactly −1 Mg C/ha reads as nodata in the
change map and gets no NPV (InVEST's behaviour, kept so the maps are the same).

Where eco-value differs: a land-cover code missing from the pool table stops InVEST; here its pixels
are nodata in every map and every missing code is reported with its pixel count.

Totals (Mg C) are Σ pixel value × pixel area (ha). Every map value depends only on the pixel's class
(or its pair of classes), so a block is reduced to a histogram of class slots (pairs with a future
map) and each map is one table lookup; the totals come from the histogram, with or without maps.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np

POOL_COLUMNS = ("c_above", "c_below", "c_soil", "c_dead")
# InVEST 3.20 carbon.py ``_CARBON_NODATA`` ("-1.0 since carbon stocks are 0 or greater")
CARBON_NODATA = -1.0
# pygeoprocessing.choose_nodata(float32), the nodata raster_map gives InVEST's npv_alt.tif
NPV_NODATA = float(np.finfo(np.float32).max)
# numpy.isclose defaults, which pygeoprocessing.array_equals_nodata uses for float rasters
_ISCLOSE_RTOL, _ISCLOSE_ATOL = 1e-5, 1e-8
# a lookup table over every code of the raster's data type up to this many bits (else over the table's range)
_FULL_LUT_MAX_BITS = 16


@dataclass(frozen=True)
class PoolTable:
    """Carbon densities (Mg C/ha) by land-cover code; ``pools[i]`` holds POOL_COLUMNS of ``codes[i]``."""
    codes: np.ndarray            # int64, unique
    pools: np.ndarray            # float64, shape (n, 4)

    def totals_f32(self) -> np.ndarray:
        """Per-code c_storage as InVEST writes it: the four float32 pools added in order, in float32."""
        p = self.pools.astype(np.float32)
        return ((p[:, 0] + p[:, 1]) + p[:, 2]) + p[:, 3]


@dataclass(frozen=True)
class Lookup:
    """Maps one land-cover raster's codes to slots: 0..m-1 the pool table's rows, m nodata, m+1 any other code.

    Every map value depends only on the slot (one scenario) or the pair of slots (change, NPV), so each
    map is one ``np.take`` from a table of a few hundred values, and every total is a histogram of slots.
    """
    lo: int
    n: int
    slot: np.ndarray             # (n + 1) slots by code − lo; index n: any code outside [lo, lo + n)
    nodata: int | None
    identity: bool               # uint8 codes: the code is the index, no arithmetic
    m: int                       # number of pool-table rows

    @property
    def n_slots(self) -> int:
        return self.m + 2

    def slots(self, block: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if self.identity:
            return np.take(self.slot, block, out=out, mode="clip")      # every uint8 code is an index
        idx = block.astype(np.int64) - self.lo
        idx[(idx < 0) | (idx >= self.n)] = self.n
        return np.take(self.slot, idx, out=out, mode="clip")


_BYTE_SLOTS = 256   # slots (classes + 2) that fit in uint8
MAX_CLASSES = 1022   # slot-pair tables of (MAX_CLASSES + 2)^2 float32 values (4 MB) at most


def build_lookup(table: PoolTable, dtype, nodata: float | None) -> Lookup:
    dtype = np.dtype(dtype)
    info = np.iinfo(dtype)
    m = len(table.codes)
    if m > MAX_CLASSES:
        raise ValueError(f"the pool table has {m} classes; at most {MAX_CLASSES} are supported")
    if dtype.itemsize * 8 <= _FULL_LUT_MAX_BITS:
        lo, n = int(info.min), int(info.max) - int(info.min) + 1
    else:
        lo = int(table.codes.min()) if m else 0
        n = int(table.codes.max()) - lo + 1 if m else 1
    sdt = np.uint8 if m + 2 <= _BYTE_SLOTS else np.uint16
    slot = np.full(n + 1, m + 1, dtype=sdt)
    inside = (table.codes >= lo) & (table.codes < lo + n)
    slot[table.codes[inside] - lo] = np.flatnonzero(inside).astype(sdt)
    nd = None
    if nodata is not None and float(nodata).is_integer() and info.min <= nodata <= info.max:
        nd = int(nodata)
        if lo <= nd < lo + n:
            slot[nd - lo] = m
    identity = dtype == np.uint8 and lo == 0 and n == 256
    return Lookup(lo, n, slot, nd, identity, m)


@dataclass(frozen=True)
class SlotTables:
    """Every map's value by slot (or pair of slots), as InVEST computes it per pixel in float32."""
    total: np.ndarray            # (S,)   c_storage
    pools: np.ndarray            # (4, S) c_above, c_below, c_soil, c_dead
    change: np.ndarray           # (S, S) c_change_bas_alt, [bas slot, alt slot]
    npv: np.ndarray | None       # (S, S) npv_alt
    # the same values by pixel pair when slots are bytes (S <= 256), see _pixel_pair_table
    pair_total: np.ndarray | None = None
    pair_pools: tuple[np.ndarray, ...] | None = None


def _pixel_pair_table(values: np.ndarray) -> np.ndarray:
    """``values`` (float32 by slot) for two adjacent pixels at once: indexed by their two byte slots read
    as one native uint16, each entry holds the pair's two float32 values as one uint64, so one ``np.take``
    of 8-byte items writes two pixels (bytes are copied, never converted). Per 1 Mpx: 0.30 ms a map and
    0.09 ms for the pair index, vs 0.50 ms and 0.21 ms pixel by pixel; 256² entries (512 KB), of which
    the S² used fit in cache."""
    n = len(values)
    t = np.zeros((_BYTE_SLOTS, _BYTE_SLOTS, 2), np.float32)
    first, second = (values[None, :], values[:, None]) if sys.byteorder == "little" else (values[:, None], values[None, :])
    t[:n, :n, 0] = first          # little-endian: the uint16 is slot0 + 256 slot1, i.e. t[slot1, slot0]
    t[:n, :n, 1] = second
    return t.reshape(-1, 2).view(np.uint64).ravel()


def slot_tables(table: PoolTable, npv_constant: float | None = None) -> SlotTables:
    m = len(table.codes)
    total = np.full(m + 2, CARBON_NODATA, dtype=np.float32)
    total[:m] = table.totals_f32()
    pools = np.full((len(POOL_COLUMNS), m + 2), CARBON_NODATA, dtype=np.float32)
    pools[:, :m] = table.pools.T.astype(np.float32)
    ok = ~is_nodata(total, CARBON_NODATA)
    change = np.where(ok[:, None] & ok[None, :], total[None, :] - total[:, None], np.float32(CARBON_NODATA))
    npv = None
    if npv_constant is not None:
        npv = np.where(is_nodata(change, CARBON_NODATA), np.float32(NPV_NODATA), change * np.float32(npv_constant))
    pair_total = pair_pools = None
    if m + 2 <= _BYTE_SLOTS:
        pair_total = _pixel_pair_table(total)
        pair_pools = tuple(_pixel_pair_table(p) for p in pools)
    return SlotTables(total, pools, change.astype(np.float32), None if npv is None else npv.astype(np.float32),
                      pair_total, pair_pools)


def is_nodata(a: np.ndarray, nodata: float) -> np.ndarray:
    """``numpy.isclose(a, nodata)``, pygeoprocessing's test for float nodata, without float64 temporaries."""
    return np.abs(a - np.float32(nodata)) <= np.float32(_ISCLOSE_ATOL + _ISCLOSE_RTOL * abs(nodata))


def valuation_constant(bas_year: int, alt_year: int, discount_rate_pct: float, rate_change_pct: float,
                       price_per_t_c: float) -> float:
    """InVEST's NPV multiplier of the change map (currency per Mg C); rates are percentages per year."""
    n = alt_year - bas_year
    ratio = 1 / ((1 + discount_rate_pct / 100) * (1 + rate_change_pct / 100))
    k = price_per_t_c / n
    return k * n if ratio == 1 else k * (1 - ratio ** n) / (1 - ratio)


class Scratch:
    """Arrays reused by one thread from block to block: fresh arrays of a few MB are page-faulted in at
    every block (measured: ~0.15 s of system time for 4 maps of 16 Mpx, ~a third of the maps' CPU)."""

    def __init__(self):
        self._arrays: dict[tuple, np.ndarray] = {}

    def get(self, key: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        k = (key, tuple(shape), np.dtype(dtype).str)
        a = self._arrays.get(k)
        if a is None:
            a = self._arrays[k] = np.empty(shape, dtype=dtype)
        return a


def _index(idx: np.ndarray, scratch: Scratch | None, key: str, uses: int) -> np.ndarray:
    """The slots as ``intp`` when ``uses`` maps are taken from them, converted once for all: ``np.take``
    converts narrower indices at every call (measured per 1 Mpx map: 0.95 ms from uint8 with mode="clip",
    0.76 ms with mode="wrap", 0.50 ms from intp + 0.21 ms for the one conversion; --intermediate takes 5
    maps from each scenario's slots: 16 Mpx carbon_block CPU 0.235 → 0.189 s)."""
    if uses < 2:
        return idx
    out = np.empty(idx.shape, np.intp) if scratch is None else scratch.get(key, idx.shape, np.intp)
    np.copyto(out, idx)
    return out


def _take(table: np.ndarray, idx: np.ndarray, scratch: Scratch | None, key: str) -> np.ndarray:
    """``table[idx]``, indices known to be in range (so mode="wrap" never wraps and skips the clipping
    test), into a reused array when ``scratch`` is given."""
    out = np.empty(idx.shape, table.dtype) if scratch is None else scratch.get(key, idx.shape, table.dtype)
    return np.take(table, idx, out=out, mode="wrap")


def _pair_index(sl: np.ndarray, scratch: Scratch | None, key: str) -> np.ndarray:
    """Byte slots of a contiguous block with an even number of pixels as one index per pixel pair (intp)."""
    pairs = sl.reshape(-1).view(np.uint16)
    out = np.empty(pairs.shape, np.intp) if scratch is None else scratch.get(key, pairs.shape, np.intp)
    np.copyto(out, pairs)
    return out


def _take_pairs(pair_table: np.ndarray, pair_ix: np.ndarray, shape: tuple, scratch: Scratch | None,
                key: str) -> np.ndarray:
    """A float32 map of ``shape`` from a :func:`_pixel_pair_table`, two pixels per element taken."""
    out = np.empty(shape, np.float32) if scratch is None else scratch.get(key, shape, np.float32)
    np.take(pair_table, pair_ix, out=out.reshape(-1).view(np.uint64), mode="wrap")
    return out


@dataclass
class BlockCounts:
    """What one block adds to the run's totals: Σ valid map values (float64) and code counts."""
    sums: dict[str, float] = field(default_factory=dict)
    nodata_px: int = 0
    missing: dict[int, int] = field(default_factory=dict)

    def add(self, other: "BlockCounts") -> None:
        for k, v in other.sums.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.nodata_px += other.nodata_px
        for k, v in other.missing.items():
            self.missing[k] = self.missing.get(k, 0) + v


def _valid_sum(hist: np.ndarray, values: np.ndarray, nodata: float) -> float:
    """Σ values over pixels (given by a histogram of their slots) whose value does not read as nodata."""
    return float(np.sum(hist * np.where(is_nodata(values, nodata), 0.0, values.astype(np.float64))))


def _count_codes(block: np.ndarray, slots: np.ndarray, hist: np.ndarray, lk: Lookup, counts: BlockCounts) -> None:
    counts.nodata_px += int(hist[lk.m])
    if hist[lk.m + 1]:       # codes missing from the pool table (or a nodata code outside the lookup range)
        vals, cnt = np.unique(block[slots == lk.m + 1], return_counts=True)
        for v, c in zip(vals.tolist(), cnt.tolist()):
            if v == lk.nodata:
                counts.nodata_px += c
            else:
                counts.missing[int(v)] = counts.missing.get(int(v), 0) + c


def block_totals(block: np.ndarray, lk: Lookup, tables: SlotTables, scen: str = "bas") -> BlockCounts:
    """Σ c_storage of a block from the histogram of its slots (no maps): the fast totals."""
    counts = BlockCounts()
    s = lk.slots(block)
    hist = np.bincount(s.ravel(), minlength=lk.n_slots)
    counts.sums[f"c_storage_{scen}"] = _valid_sum(hist, tables.total, CARBON_NODATA)
    _count_codes(block, s, hist, lk, counts)
    return counts


def carbon_block(bas: np.ndarray, lk_bas: Lookup, tables: SlotTables, alt: np.ndarray | None = None,
                 lk_alt: Lookup | None = None, *, intermediate: bool = False,
                 scratch: Scratch | None = None) -> tuple[dict[str, np.ndarray], BlockCounts]:
    """All of InVEST's carbon maps for one block of land-cover codes, and what the block adds to the totals.

    Returns float32 maps named as InVEST names its files (without ``.tif``): c_storage_bas (and _alt,
    c_change_bas_alt, npv_alt when ``tables.npv`` is set), with ``intermediate`` the pool maps; and the
    block's sums of valid map values (Mg C/ha × pixels; × pixel area in ha gives Mg C), nodata and
    missing-code counts. One slot lookup per land-cover block, one ``np.take`` per map.
    With ``scratch`` the maps are written into the thread's reused arrays: valid until its next call.
    """
    maps: dict[str, np.ndarray] = {}
    counts = BlockCounts()
    S = lk_bas.n_slots

    def slots(lk, block, key):
        return lk.slots(block, None if scratch is None else scratch.get(key, block.shape, lk.slot.dtype))

    sb = slots(lk_bas, bas, "slots_bas")
    scen = [("bas", bas, sb, lk_bas)]
    if alt is None:
        hist2 = None
        hists = {"bas": np.bincount(sb.ravel(), minlength=S)}
    else:
        sa = slots(lk_alt, alt, "slots_alt")
        scen.append(("alt", alt, sa, lk_alt))
        pdt = np.uint16 if S * S <= 1 << 16 else np.uint32
        pair = np.empty(sb.shape, pdt) if scratch is None else scratch.get("pair", sb.shape, pdt)
        np.copyto(pair, sb)          # widen first: sb * S in the slots' own type would overflow
        pair *= S
        pair += sa
        hist2 = np.bincount(pair.ravel(), minlength=S * S).reshape(S, S)
        hists = {"bas": hist2.sum(axis=1), "alt": hist2.sum(axis=0)}
    for name, block, sl, lk in scen:
        if tables.pair_total is not None and sl.dtype == np.uint8 and sl.size % 2 == 0 and sl.flags.c_contiguous:
            pix = _pair_index(sl, scratch, f"pairs_{name}")

            def take(values, pair_table, key, pix=pix, shape=sl.shape):
                return _take_pairs(pair_table, pix, shape, scratch, key)
        else:
            ix = _index(sl, scratch, f"index_{name}", 1 + len(POOL_COLUMNS) * intermediate)

            def take(values, pair_table, key, ix=ix):
                return _take(values, ix, scratch, key)
        maps[f"c_storage_{name}"] = take(tables.total, tables.pair_total, f"c_storage_{name}")
        counts.sums[f"c_storage_{name}"] = _valid_sum(hists[name], tables.total, CARBON_NODATA)
        if intermediate:
            for k, pool in enumerate(POOL_COLUMNS):
                maps[f"{pool}_{name}"] = take(tables.pools[k], tables.pair_pools and tables.pair_pools[k],
                                              f"{pool}_{name}")
                counts.sums[f"{pool}_{name}"] = _valid_sum(hists[name], tables.pools[k], CARBON_NODATA)
        _count_codes(block, sl, hists[name], lk, counts)
    if hist2 is not None:
        pair = _index(pair, scratch, "index_pair", 1 + (tables.npv is not None))
        maps["c_change_bas_alt"] = _take(tables.change.ravel(), pair, scratch, "c_change_bas_alt")
        counts.sums["c_change_bas_alt"] = _valid_sum(hist2, tables.change, CARBON_NODATA)
        if tables.npv is not None:
            maps["npv_alt"] = _take(tables.npv.ravel(), pair, scratch, "npv_alt")
            counts.sums["npv_alt"] = _valid_sum(hist2, tables.npv, NPV_NODATA)
    return maps, counts
