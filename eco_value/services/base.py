"""Shared types and helpers of the GEP services."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from ..grid import M2_PER_HA, Grid
from ..inputs.classes import CLCD
from ..rules import RuleSet

MM_PER_M = 1000.0      # unit conversion
KG_PER_T = 1000.0      # unit conversion
KJ_PER_KWH = 3600.0    # unit conversion
DAYS_PER_YEAR = 365.0  # calendar


@dataclass(frozen=True)
class ServiceSpec:
    key: str
    name_en: str
    name_zh: str
    category: str               # provisioning | regulating | cultural
    layers: tuple[str, ...]
    parameters: tuple[str, ...]  # rule-set prefixes the service reads
    quantity_unit: str
    equation: str
    source: str


@dataclass
class ServiceContext:
    """Aligned inputs of one run: layers (lazy DataArrays), tables, grid, rule set, years."""

    layers: dict[str, xr.DataArray]
    grid: Grid
    rules: RuleSet
    year: int
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    carbon_sink_tco2e_per_ha_yr: xr.DataArray | None = None
    price_year: int | None = None
    region_coverage: xr.DataArray | None = None  # share of each pixel inside the region (exact)
    region_class_px: np.ndarray | None = None     # Σ coverage of the region's pixels by class code, if known

    def density_share(self, class_weight: np.ndarray) -> xr.DataArray:
        """Per-pixel share of a regional total allocated by land-cover class: ``w / Σ(w · coverage)``.

        ``class_weight`` maps each class code (index) to a weight. Zonal sums multiply by coverage
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
        data = self.lulc.data.map_blocks(lambda c: table[c.astype(np.intp)], dtype="float64")
        return xr.DataArray(data, dims=self.lulc.dims, coords=self.lulc.coords)

    def class_table(self, prefix: str) -> np.ndarray:
        table = np.zeros(256)
        for name, p in self.rules.group(prefix).items():
            if name in CLCD:
                table[CLCD[name]] = float(p.value)
        return table

    @property
    def lulc(self) -> xr.DataArray:
        return self.layers["lulc_2023"]

    @property
    def valid(self) -> xr.DataArray:
        lc = self.lulc
        return lc != lc.attrs.get("nodata", 255)

    def class_mask(self, *names: str) -> xr.DataArray:
        return self.lulc.isin([CLCD[n] for n in names])

    def by_class(self, prefix: str) -> xr.DataArray:
        """Per-pixel value of a class-keyed parameter group (0 where the class has no entry)."""
        return self.lookup(self.class_table(prefix))

    def masked_float(self, key: str) -> xr.DataArray:
        a = self.layers[key]
        nod = a.attrs.get("nodata")
        x = a.astype("float64")
        return x.where(a != nod) if nod is not None else x

    @property
    def pixel_area_m2(self) -> float:
        return self.grid.pixel_area_m2

    @property
    def pixel_area_ha(self) -> float:
        return self.grid.pixel_area_m2 / M2_PER_HA

    def rebase(self, price: float, from_year: int) -> float:
        """Price in CNY of ``price_year`` (CPI rebasing; index from the rule set)."""
        return price * price_factor(self.rules, from_year, self.price_year or self.rules.meta.price_year or self.year)


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
    q = quantity.where(valid)
    v = value.where(valid)
    q.attrs = {"units": f"{spec.quantity_unit} per pixel", "service": spec.key}
    v.attrs = {"units": "CNY per pixel", "service": spec.key}
    return ServiceResult(spec.key, q, v, spec.quantity_unit, details)
