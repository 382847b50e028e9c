"""Shared types and helpers of the GEP services."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import xarray as xr

from .. import roles
from ..grid import M2_PER_HA, PIXEL_DTYPE, Grid
from ..rules import RuleSet
from ..rules.ecosystem import N_IDS, NODATA_ID, EcosystemTypes, ecosystem_types

MM_PER_M = 1000.0      # unit conversion
KG_PER_T = 1000.0      # unit conversion
KJ_PER_KWH = 3600.0    # unit conversion
DAYS_PER_YEAR = 365.0  # calendar


@dataclass(frozen=True)
class LayerSpec:
    """One input layer a service reads: its catalog key (``role`` or ``role@period``) and unit."""

    key: str
    unit: str


@dataclass(frozen=True)
class ServiceSpec:
    """What a service reads and computes; the single source of its inputs (checked when it runs, see
    :meth:`ServiceContext.bind`) and of its entry in the methods document.

    ``parameters`` are rule-set names: a name is read itself, or is the prefix of a type-keyed group
    (``gep.water_conservation.runoff_coefficient`` covers ``...runoff_coefficient.forest``).
    ``derived`` names results of other engines the service reads (``carbon_sink``: the carbon engine's
    net sink per hectare, from volume, forest type and land cover at t1 and t2 and the ``carbon.*``
    parameters).
    """

    key: str
    name_en: str
    name_zh: str
    category: str               # provisioning | regulating | cultural
    layers: tuple[LayerSpec, ...]
    parameters: tuple[str, ...]  # rule-set names (or group prefixes) the service reads
    quantity_unit: str
    equation: str
    source: str
    tables: tuple[str, ...] = ()
    derived: tuple[str, ...] = ()

    @property
    def layer_keys(self) -> tuple[str, ...]:
        return tuple(x.key for x in self.layers)

    def declares_parameter(self, name: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in self.parameters)


# parameters every service that rebases a price reads (CPI index of the rule set)
PRICE_INDEX = ("gep.price_index.years", "gep.price_index.cpi")
LAND_COVER = LayerSpec(roles.LAND_COVER_T2, "ecosystem type id")
CARBON_SINK = "carbon_sink"


class UndeclaredInput(LookupError):
    """A service read an input its :class:`ServiceSpec` does not declare (a programming error)."""


@dataclass
class Reads:
    """What a bound context handed out: layers, parameters, tables and derived inputs."""

    layers: set = field(default_factory=set)
    parameters: set = field(default_factory=set)
    tables: set = field(default_factory=set)
    derived: set = field(default_factory=set)


class _Declared(dict):
    """Read-only view of a mapping that hands out only the declared keys and logs each read."""

    def __init__(self, data, allowed, log: set, what: str, service: str):
        super().__init__({k: v for k, v in data.items() if k in allowed})
        self._allowed, self._log, self._what, self._service, self._all = set(allowed), log, what, service, data

    def __getitem__(self, key):
        if key not in self._allowed:
            raise UndeclaredInput(f"service '{self._service}' reads {self._what} '{key}' that its SPEC does not declare "
                                  f"(declared: {', '.join(sorted(self._allowed)) or 'none'})")
        self._log.add(key)
        return self._all[key]

    def get(self, key, default=None):
        return self[key] if key in self._all or key not in self._allowed else default


class DeclaredRules:
    """A rule set that answers only the parameters a service declares, logging each name read."""

    def __init__(self, rules: RuleSet, spec: ServiceSpec, log: set):
        self._rules, self._spec, self._log = rules, spec, log
        self.meta, self.sources = rules.meta, rules.sources

    @property
    def name(self) -> str:
        return self._rules.name

    def _check(self, name: str) -> str:
        if not self._spec.declares_parameter(name):
            raise UndeclaredInput(f"service '{self._spec.key}' reads parameter '{name}' that its SPEC does not declare")
        self._log.add(name)
        return name

    def value(self, name: str) -> float:
        return self._rules.value(self._check(name))

    def values(self, name: str) -> list[float]:
        return self._rules.values(self._check(name))

    def param(self, name: str):
        return self._rules.param(self._check(name))

    def has(self, name: str) -> bool:
        return self._rules.has(self._check(name))

    def group(self, prefix: str):
        return self._rules.group(self._check(prefix))


@dataclass
class ServiceContext:
    """Aligned inputs of one run: layers (lazy DataArrays keyed by role@period), tables, grid, rule
    set, the valuation year (t2 of the period). Land cover is in the engine's ecosystem-type ids."""

    layers: dict[str, xr.DataArray]
    grid: Grid
    rules: RuleSet
    year: int
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    carbon_sink_tco2e_per_ha_yr: xr.DataArray | None = None
    price_year: int | None = None
    region_coverage: xr.DataArray | None = None  # share of each pixel inside the region (exact)
    region_class_px: np.ndarray | None = None     # Σ coverage of the region's pixels by type id, if known
    types: EcosystemTypes = field(default_factory=ecosystem_types)
    # one chunk's view (the engine's per-chunk kernel): layer key -> (the layer's block with a 1-px
    # halo of its neighbours where the raster has them, (row slice, column slice) of the chunk in it)
    halos: dict = field(default_factory=dict)
    spec: ServiceSpec | None = None             # set by bind(): the service this view serves
    reads: Reads | None = None

    def bind(self, spec: ServiceSpec) -> "ServiceContext":
        """This context as seen by one service: only the layers, parameters, tables and derived inputs
        ``spec`` declares are handed out (anything else raises :class:`UndeclaredInput`), and every
        read is logged in ``.reads`` (tests compare it with the spec)."""
        if self.spec is not None:
            if self.spec.key != spec.key:
                raise UndeclaredInput(f"context bound to '{self.spec.key}' passed to '{spec.key}'")
            return self
        reads = Reads()
        return replace(self, spec=spec, reads=reads,
                       layers=_Declared(self.layers, spec.layer_keys, reads.layers, "layer", spec.key),
                       tables=_Declared(self.tables, spec.tables, reads.tables, "table", spec.key),
                       rules=DeclaredRules(self.rules, spec, reads.parameters))

    def derived(self, name: str):
        """A declared result of another engine (``carbon_sink``: t CO2e/ha/yr per pixel)."""
        if self.spec is not None:
            if name not in self.spec.derived:
                raise UndeclaredInput(f"service '{self.spec.key}' reads derived input '{name}' that its SPEC does not declare")
            self.reads.derived.add(name)
        if name == CARBON_SINK:
            if self.carbon_sink_tco2e_per_ha_yr is None:
                raise ValueError("this service needs the carbon engine's sink in the context")
            return self.carbon_sink_tco2e_per_ha_yr
        raise KeyError(name)

    def density_share(self, class_weight: np.ndarray) -> xr.DataArray:
        """Per-pixel share of a regional total allocated by land-cover class: ``w / Σ(w · coverage)``.

        ``class_weight`` maps each ecosystem-type id (index) to a weight. Zonal sums multiply by coverage
        again, so the region's parts add up to exactly the total. When the region's class counts are
        known beforehand (``region_class_px``, province-scale runs), the denominator is a number and
        no region-wide reduction enters the graph; otherwise it is a lazy sum in the same compute.
        """
        w = self.lookup(class_weight).where(self.valid, 0.0)
        if self.region_class_px is not None:
            return w / float(np.dot(class_weight[: len(self.region_class_px)], self.region_class_px))
        cov = self.region_coverage if self.region_coverage is not None else self.valid.astype("float64")
        return w / (w * cov).sum()

    def lookup(self, table: np.ndarray) -> xr.DataArray:
        """Per-pixel ``table[type id]`` (one ``np.take`` per chunk); a float table gives :data:`PIXEL_DTYPE`
        pixels, other tables (codes, positions) keep their type."""
        table = np.asarray(table)
        return take(table.astype(PIXEL_DTYPE) if table.dtype.kind == "f" else table, self.land_cover)

    def neighbourhood(self, key: str, fn) -> xr.DataArray:
        """``fn(layer)`` for a function of each pixel's 1-px neighbourhood, over layer ``key`` as float
        with nodata as NaN (:meth:`masked_float`).

        On whole (lazy) layers ``fn`` gets the whole layer (it handles chunk overlaps itself, e.g.
        dask's ``map_overlap``); on one chunk's view it gets the chunk with its halo (the neighbours the
        raster has; none beyond its outer ring) and the result is cut back to the chunk, so both give
        the same numbers.
        """
        if key not in self.halos:
            return fn(self.masked_float(key))
        _ = self.layers[key]   # a read of the layer (declared, logged)
        block, (rows, cols) = self.halos[key]
        return fn(_masked(block)).isel(dict(zip(block.dims, (rows, cols))))

    def class_table(self, prefix: str, default: float = 0.0) -> np.ndarray:
        """Lookup table type id → parameter ``prefix.<type>`` (a sub-type falls back to its parent)."""
        return self.types.table(self.rules, prefix, default)

    @property
    def land_cover(self) -> xr.DataArray:
        """Land cover of the valuation date (t2), in ecosystem-type ids."""
        return self.layers[roles.LAND_COVER_T2]

    @property
    def valid(self) -> xr.DataArray:
        lc = self.land_cover
        return lc != lc.attrs.get("nodata", NODATA_ID)

    def class_mask(self, *names: str) -> xr.DataArray:
        """Pixels of the named ecosystem types or any of their sub-types."""
        return is_in(self.land_cover, self.types.ids_under(*names))

    def has_param(self, prefix: str) -> xr.DataArray:
        """Pixels whose type has the per-type parameter ``prefix`` (its own or its parent's)."""
        return is_in(self.land_cover, self.types.ids_with(self.rules, prefix))

    def by_class(self, prefix: str, default: float = 0.0) -> xr.DataArray:
        """Per-pixel value of a type-keyed parameter group (``default`` where the type has no entry)."""
        return self.lookup(self.class_table(prefix, default))

    def masked_float(self, key: str) -> xr.DataArray:
        """Layer ``key`` as :data:`PIXEL_DTYPE` (float32) with its nodata as NaN."""
        return _masked(self.layers[key])

    @property
    def pixel_area_m2(self) -> float:
        return self.grid.pixel_area_m2

    @property
    def pixel_area_ha(self) -> float:
        return self.grid.pixel_area_m2 / M2_PER_HA

    def rebase(self, price: float, from_year: int) -> float:
        """Price in CNY of ``price_year`` (CPI rebasing; index from the rule set)."""
        return price * price_factor(self.rules, from_year, self.price_year or self.rules.meta.price_year or self.year)


def _masked(a: xr.DataArray) -> xr.DataArray:
    nod = a.attrs.get("nodata")
    if isinstance(a.data, np.ndarray):   # one chunk's block: one numpy pass, no xarray alignment
        x = a.data.astype(PIXEL_DTYPE, copy=False)   # np.where below makes the new array
        if nod is not None:
            x = np.where(a.data != nod, x, np.nan)
        return xr.DataArray(x, dims=a.dims, coords=a.coords, attrs=a.attrs)
    x = a.astype(PIXEL_DTYPE)
    return x.where(a != nod) if nod is not None else x


def _where_valid(x: xr.DataArray, valid: xr.DataArray) -> xr.DataArray:
    """``x.where(valid)`` (NaN elsewhere); on numpy blocks without xarray's alignment machinery."""
    if isinstance(x.data, np.ndarray) and isinstance(valid.data, np.ndarray) and x.shape == valid.shape \
            and x.dims == valid.dims and x.dtype.kind == "f":
        return xr.DataArray(np.where(valid.data, x.data, np.nan), dims=x.dims, coords=x.coords)
    return x.where(valid)


# 8-byte table items (float64, int64): gathered ~2x faster by indexing than by np.take (same values)
_ITEM_BYTES_8 = np.dtype(np.float64).itemsize


def take(table: np.ndarray, codes: xr.DataArray) -> xr.DataArray:
    """Per-pixel ``table[code]`` of an integer-coded DataArray, lazily on dask (one ``np.take`` per chunk)
    or at once on numpy."""
    data = codes.data
    if hasattr(data, "map_blocks"):
        out = data.map_blocks(lambda c: np.take(table, c), dtype=table.dtype)
    else:   # 8-byte items (positions): indexing gathers ~2x faster than np.take (same values)
        out = table[np.asarray(data)] if table.itemsize == _ITEM_BYTES_8 else np.take(table, data)
    return xr.DataArray(out, dims=codes.dims, coords=codes.coords)


def is_in(codes: xr.DataArray, ids) -> xr.DataArray:
    """``codes.isin(ids)`` of a uint8-coded DataArray as one lookup in a 256-entry table (``isin`` sorts
    and searches: ~7x the time on a chunk); other integer types through ``isin``."""
    if codes.dtype != np.uint8:
        return codes.isin(list(ids))
    table = np.zeros(N_IDS, dtype=bool)
    table[list(ids)] = True
    return take(table, codes)


def price_factor(rules: RuleSet, from_year: int, to_year: int) -> float:
    years = [int(y) for y in rules.values("gep.price_index.years")]
    idx = rules.values("gep.price_index.cpi")
    if from_year == to_year:
        return 1.0
    for y in (from_year, to_year):
        if not years[0] <= y <= years[-1]:
            raise ValueError(f"price year {y} outside the price index {years[0]}..{years[-1]} of rule set {rules.name}")
    return float(np.interp(to_year, years, idx) / np.interp(from_year, years, idx))


@dataclass
class ServiceResult:
    key: str
    quantity: xr.DataArray           # per pixel, unit in attrs
    value_cny: xr.DataArray          # CNY per pixel
    quantity_unit: str
    details: dict = field(default_factory=dict)


def finish(spec: ServiceSpec, ctx: ServiceContext, quantity: xr.DataArray, value: xr.DataArray, **details) -> ServiceResult:
    valid = ctx.valid
    q = _where_valid(quantity, valid)
    v = _where_valid(value, valid)
    q.attrs = {"units": f"{spec.quantity_unit} per pixel", "service": spec.key}
    v.attrs = {"units": "CNY per pixel", "service": spec.key}
    return ServiceResult(spec.key, q, v, spec.quantity_unit, details)


def nan_to_zero(x):
    """NaN → 0 on a numpy array or a (dask-backed) DataArray, staying lazy."""
    if isinstance(x, xr.DataArray):
        return x.fillna(0.0)
    x = np.asarray(x, dtype="float64")
    return np.where(np.isnan(x), 0.0, x)
