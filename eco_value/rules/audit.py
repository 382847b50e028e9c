"""Parameter audit: every parameter with its source, verified flag, evidence class, range and its
one-at-a-time share of a pilot's GEP (GEP parameters) or net carbon sink (carbon parameters).

Share = |d ln Y / d ln p|, the elasticity of the total Y (GEP, or the net sink for ``carbon.*``) to
the parameter, by a one-at-a-time change of +1 %. For a price that multiplies one service this equals
that service's share of GEP; for a class value it is the class's part of its service. Price years,
index series and list-valued parameters are not perturbed (share None).
"""

from __future__ import annotations

from dataclasses import dataclass

import dask
import dask.array as da
import xarray as xr

from . import RuleSet

STEP = 0.01
MATERIAL = 0.01   # a parameter carrying >= 1 % of GEP or sink must have a source or a derivation


@dataclass
class AuditRow:
    parameter: str
    value: float | list
    unit: str
    source: str
    derivation: str
    verified: bool
    evidence: str | None
    low: float | None
    high: float | None
    range_basis: str | None
    target: str | None          # "gep" | "sink" | None
    share: float | None

    @property
    def sourced(self) -> bool:
        """A printed source located beyond its key (table, section, clause or printed value), a stated
        derivation, or a definition (evidence "exact")."""
        located = len(self.source.split()) > 1
        return located or bool(self.derivation.strip()) or self.evidence == "exact"


def _perturbable(name: str, value) -> bool:
    return not isinstance(value, list) and not name.endswith("price_year") and not name.startswith("gep.price_index")


def _in_memory(a: xr.DataArray) -> xr.DataArray:
    """The array computed once and held as a single chunk (cheap to re-evaluate many times)."""
    out = xr.DataArray(da.from_array(a.values, chunks=a.shape), dims=a.dims, coords=a.coords)
    out.attrs = dict(a.attrs)
    return out


def audit_rows(rules: RuleSet, catalog_path=None) -> tuple[list[AuditRow], dict]:
    """Audit rows of every parameter; shares on the catalog's pilot when ``catalog_path`` is given."""
    shares: dict[str, tuple[str, float]] = {}
    totals: dict = {}
    if catalog_path is not None:
        shares, totals = one_at_a_time(rules, catalog_path)
    rows = []
    for name, p in sorted(rules.params.items()):
        low = high = basis = None
        if not isinstance(p.value, list) and (p.uncertainty is not None or p.evidence is not None):
            low, high, _dist, basis = rules.uncertainty_range(name)
        target, share = shares.get(name, (None, None))
        rows.append(AuditRow(name, p.value, p.unit, p.source, p.derivation, p.verified, p.evidence,
                             low, high, basis, target, share))
    return rows, totals


def one_at_a_time(rules: RuleSet, catalog_path) -> tuple[dict[str, tuple[str, float]], dict]:
    """Elasticity of GEP (gep.*) and of the net sink (carbon.*, constants.*) to each scalar parameter."""
    import numpy as np

    from ..carbon.uncertainty import SufficientStats, param_draws, sink_from_stats
    from ..inputs.catalog import load_catalog
    from ..inputs.readers import open_layers, read_table
    from ..services import SERVICES, ServiceContext

    cat = load_catalog(catalog_path)
    raw, grid = open_layers(cat, chunk_px=4096)
    layers = {k: _in_memory(v) for k, v in raw.items()}
    y1, y2 = cat.catalog.period
    a_ha = grid.pixel_area_ha
    tables = {k: read_table(cat, k) for k in cat.tables}

    # the stock-difference sink is linear in per-species and per-class sums (carbon.uncertainty):
    # the region's sums are taken once and every perturbed sink is exact without touching a pixel
    from ..roles import FOREST_TYPE_T1, FOREST_TYPE_T2, LAND_COVER_T1, LAND_COVER_T2, VOLUME_T1, VOLUME_T2
    from .ecosystem import NODATA_ID, ecosystem_types, species_groups

    types = ecosystem_types()
    n_species, n_types = species_groups().n_ids, types.n_positions
    npl = {k: v.values for k, v in layers.items()}
    valid = (npl[LAND_COVER_T1] != NODATA_ID) & (npl[LAND_COVER_T2] != NODATA_ID)

    def sums(codes, weights, n):
        c = codes[valid].astype(np.int64)
        keep = c < n
        return np.bincount(c[keep], weights=np.broadcast_to(weights, codes.shape)[valid][keep], minlength=n)[None, :n]

    vol = {t: np.clip(np.nan_to_num(npl[k].astype("float64")), 0, None) * a_ha for t, k in (("t1", VOLUME_T1), ("t2", VOLUME_T2))}
    pos = {k: np.take(types.position_lut, npl[k]) for k in (LAND_COVER_T1, LAND_COVER_T2)}
    stats = SufficientStats(sums(npl[FOREST_TYPE_T1], vol["t1"], n_species), sums(npl[FOREST_TYPE_T2], vol["t2"], n_species),
                            sums(npl[FOREST_TYPE_T1], a_ha, n_species), sums(npl[FOREST_TYPE_T2], a_ha, n_species),
                            sums(pos[LAND_COVER_T1], a_ha, n_types), sums(pos[LAND_COVER_T2], a_ha, n_types), float(y2 - y1))

    def sink_of(r: RuleSet) -> float:
        d = param_draws(r, 1, np.random.default_rng(0), True)
        return float(sink_from_stats(stats, *d, r.value("carbon.soil_transition_years"),
                                     r.value("constants.molar_ratio_co2_c"))[0, 0])

    from ..carbon import coefficients, stock_difference
    c = stock_difference(layers[VOLUME_T1], layers[FOREST_TYPE_T1], layers[LAND_COVER_T1],
                         layers[VOLUME_T2], layers[FOREST_TYPE_T2], layers[LAND_COVER_T2], (y1, y2), coefficients(rules))
    sink_px = _in_memory(c["sink_tco2e_per_ha_yr"])

    def services_total(r: RuleSet, keys) -> dict[str, float]:
        ctx = ServiceContext(layers=layers, grid=grid, rules=r, year=y2, tables=tables, carbon_sink_tco2e_per_ha_yr=sink_px)
        wanted = r.meta.services or list(SERVICES)
        # float32 pixels (the kernel's), summed in float64: the elasticity divides a difference of totals by STEP
        lazy = {k: SERVICES[k].compute(ctx).value_cny.astype("float64").sum() for k in keys if k in wanted}
        (vals,) = dask.compute(lazy, scheduler="synchronous")
        return {k: float(v) for k, v in vals.items()}

    base = services_total(rules, list(SERVICES))
    gep = sum(base.values())
    sink0 = sink_of(rules)
    sink_raster = float((sink_px.fillna(0.0) * a_ha).sum().compute(scheduler="synchronous"))
    out: dict[str, tuple[str, float]] = {}
    for name, p in rules.params.items():
        target = "gep" if name.startswith("gep.") else "sink" if name.startswith(("carbon.", "constants.molar_ratio_co2")) else None
        if target is None:
            continue
        if not _perturbable(name, p.value):
            out[name] = (target, None)
            continue
        if float(p.value) == 0.0:
            out[name] = (target, 0.0)
            continue
        r2 = rules.with_value(name, float(p.value) * (1 + STEP))
        if target == "gep":
            keys = [k for k, m in SERVICES.items() if any(name.startswith(pre) for pre in m.SPEC.parameters)]
            after = services_total(r2, keys)
            d = sum(after[k] - base[k] for k in after)
            out[name] = ("gep", abs(d) / abs(gep) / STEP if gep else 0.0)
        else:
            out[name] = ("sink", abs(sink_of(r2) - sink0) / abs(sink0) / STEP if sink0 else 0.0)
    return out, {"gep_cny": gep, "by_service_cny": base, "sink_tco2e_per_yr": sink0,
                 "sink_tco2e_per_yr_raster": sink_raster}
