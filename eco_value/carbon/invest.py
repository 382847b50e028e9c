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

Totals (Mg C) are Σ pixel value × pixel area (ha); for the fast totals without maps each block is
reduced to a histogram of its codes, and the stock is linear in the class counts.
"""

from __future__ import annotations

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

KNOWN, NODATA, UNKNOWN = 0, 1, 2


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
    """Lookup tables of one land-cover raster: index = code − lo; the last slot is any code outside."""
    lo: int
    n: int
    pools: np.ndarray            # float32 (4, n + 1), CARBON_NODATA where not a known code
    total: np.ndarray            # float32 (n + 1)
    state: np.ndarray            # uint8 (n + 1): KNOWN, NODATA or UNKNOWN
    nodata: int | None
    identity: bool               # uint8 codes: the code is the index, no arithmetic

    def index(self, block: np.ndarray) -> np.ndarray:
        if self.identity:
            return block
        idx = block.astype(np.int64) - self.lo
        idx[(idx < 0) | (idx >= self.n)] = self.n
        return idx


def build_lookup(table: PoolTable, dtype, nodata: float | None) -> Lookup:
    dtype = np.dtype(dtype)
    info = np.iinfo(dtype)
    if dtype.itemsize * 8 <= _FULL_LUT_MAX_BITS:
        lo, n = int(info.min), int(info.max) - int(info.min) + 1
    else:
        lo = int(table.codes.min()) if len(table.codes) else 0
        n = int(table.codes.max()) - lo + 1 if len(table.codes) else 1
    pools = np.full((len(POOL_COLUMNS), n + 1), CARBON_NODATA, dtype=np.float32)
    total = np.full(n + 1, CARBON_NODATA, dtype=np.float32)
    state = np.full(n + 1, UNKNOWN, dtype=np.uint8)
    inside = (table.codes >= lo) & (table.codes < lo + n)
    at = table.codes[inside] - lo
    pools[:, at] = table.pools[inside].T.astype(np.float32)
    total[at] = table.totals_f32()[inside]
    state[at] = KNOWN
    nd = None
    if nodata is not None and float(nodata).is_integer() and info.min <= nodata <= info.max:
        nd = int(nodata)
        if lo <= nd < lo + n:
            pools[:, nd - lo] = CARBON_NODATA
            total[nd - lo] = CARBON_NODATA
            state[nd - lo] = NODATA
    identity = dtype == np.uint8 and lo == 0 and n == 256
    return Lookup(lo, n, pools, total, state, nd, identity)


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


def _valid_values(lut: np.ndarray, lk: Lookup) -> np.ndarray:
    """A lookup table's values where a pixel of that code reads as valid, else 0 (float64, for sums)."""
    return np.where((lk.state == KNOWN) & ~is_nodata(lut, CARBON_NODATA), lut, 0.0)


def _count_codes(block: np.ndarray, idx: np.ndarray, hist: np.ndarray, lk: Lookup, counts: BlockCounts) -> None:
    for i in np.flatnonzero(hist[: lk.n] * (lk.state[: lk.n] != KNOWN)):
        if lk.state[i] == NODATA:
            counts.nodata_px += int(hist[i])
        else:
            counts.missing[int(i) + lk.lo] = counts.missing.get(int(i) + lk.lo, 0) + int(hist[i])
    if hist[lk.n]:          # codes outside the lookup range: the nodata code or codes missing from the table
        vals, cnt = np.unique(block[idx == lk.n], return_counts=True)
        for v, c in zip(vals.tolist(), cnt.tolist()):
            if lk.nodata is not None and v == lk.nodata:
                counts.nodata_px += c
            else:
                counts.missing[int(v)] = counts.missing.get(int(v), 0) + c


def block_totals(block: np.ndarray, lk: Lookup, scen: str = "bas") -> BlockCounts:
    """Σ c_storage of a block from the histogram of its codes (no maps): the fast totals."""
    counts = BlockCounts()
    idx = lk.index(block)
    hist = np.bincount(idx.ravel(), minlength=lk.n + 1)
    counts.sums[f"c_storage_{scen}"] = float(hist @ _valid_values(lk.total, lk))
    _count_codes(block, idx, hist, lk, counts)
    return counts


def _scenario(block: np.ndarray, lk: Lookup, scen: str, intermediate: bool, maps: dict, counts: BlockCounts):
    idx = lk.index(block)
    hist = np.bincount(idx.ravel(), minlength=lk.n + 1)
    storage = lk.total[idx]
    maps[f"c_storage_{scen}"] = storage
    counts.sums[f"c_storage_{scen}"] = float(hist @ _valid_values(lk.total, lk))
    if intermediate:
        for k, pool in enumerate(POOL_COLUMNS):
            maps[f"{pool}_{scen}"] = lk.pools[k][idx]
            counts.sums[f"{pool}_{scen}"] = float(hist @ _valid_values(lk.pools[k], lk))
    _count_codes(block, idx, hist, lk, counts)
    return storage


def carbon_block(bas: np.ndarray, lk_bas: Lookup, alt: np.ndarray | None = None, lk_alt: Lookup | None = None, *,
                 intermediate: bool = False, npv_constant: float | None = None) -> tuple[dict[str, np.ndarray], BlockCounts]:
    """All of InVEST's carbon maps for one block of land-cover codes, and what the block adds to the totals.

    Returns float32 maps named as InVEST names its files (without ``.tif``) and the block's sums of
    valid map values (Mg C/ha × pixels; × pixel area in ha gives Mg C), nodata and missing-code counts.
    """
    maps: dict[str, np.ndarray] = {}
    counts = BlockCounts()
    s_bas = _scenario(bas, lk_bas, "bas", intermediate, maps, counts)
    if alt is None:
        return maps, counts
    s_alt = _scenario(alt, lk_alt, "alt", intermediate, maps, counts)
    valid = ~(is_nodata(s_bas, CARBON_NODATA) | is_nodata(s_alt, CARBON_NODATA))
    change = np.where(valid, s_alt - s_bas, np.float32(CARBON_NODATA))
    maps["c_change_bas_alt"] = change
    ok = ~is_nodata(change, CARBON_NODATA)
    counts.sums["c_change_bas_alt"] = float(np.sum(change, where=ok, dtype=np.float64))
    if npv_constant is not None:
        npv = np.where(ok, change * np.float32(npv_constant), np.float32(NPV_NODATA))
        maps["npv_alt"] = npv
        counts.sums["npv_alt"] = float(np.sum(npv, where=ok, dtype=np.float64))
    return maps, counts
