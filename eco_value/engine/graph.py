"""The lazy graph of one valuation: carbon, GEP services and zonal accounts over the inputs' chunks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from .. import gep_uncertainty as gep_mc
from ..accounts.zonal import class_coverage, zonal_pass, zone_weights
from ..carbon import LUCC, N_LUCC, coefficients, lucc_with_events, stock_difference
from ..grid import PIXEL_DTYPE, Grid
from ..inputs.catalog import Catalog
from ..inputs.readers import open_layers, read_full, read_table, read_vector
from ..inputs.validate import layer_checks, missing_any, region_mask
from ..policy.scenario import Scenario, apply_scenario
from ..roles import CHANGE_EVENT_T2, FOREST_TYPE_T1, FOREST_TYPE_T2, LAND_COVER_T1, LAND_COVER_T2, VOLUME_T1, VOLUME_T2
from ..rules import RuleSet
from ..rules.ecosystem import NODATA_ID, ecosystem_types, species_groups
from ..rules.events import change_events
from ..services import SERVICES, ServiceContext, compute_services
from ..services.base import take
from .options import Progress, RunOptions

M2_PER_KM2 = 1e6


def build(cat: Catalog, rules: RuleSet, opts: RunOptions, say: Progress,
          zone_layers: dict[str, tuple] | None = None, scenario: Scenario | None = None,
          layers: dict[str, xr.DataArray] | None = None, grid: Grid | None = None, map_writer=None):
    """Build the lazy graph of one valuation. Returns (graph dict, context for post-processing).

    ``zone_layers`` (kind → (GeoDataFrame, id field)) replaces the catalog's townships and parcels
    (the county is always kept: it is the region that provisioning and recreation are shared over);
    ``scenario`` values a changed land cover on the same inputs.

    The graph has a handful of tasks per raster chunk: the inputs' reads (and the DEM's 1-px halo),
    then ONE task (:class:`ChunkKernel` inside :func:`~eco_value.accounts.zonal.zonal_pass`) that
    evaluates carbon, every service and every summed channel on the chunk's numpy blocks, sums them
    per zone, runs the input checks and writes the map windows. The per-pixel arrays never enter
    the graph. The context's services, carbon and maps are the same recipe on the whole lazy layers
    (never computed; their units, details and names serve the callers).
    """
    if layers is None:
        layers, grid = open_layers(cat, chunk_px=opts.chunk_px)
    y1, y2 = cat.catalog.period
    coef = coefficients(rules)
    say("carbon: stock difference", None)
    before = None
    if scenario is not None:
        before = {k: layers[k] for k in (VOLUME_T2, FOREST_TYPE_T2, LAND_COVER_T2)}
        layers = apply_scenario(layers, scenario)
    tables = {k: read_table(cat, k) for k in cat.tables}
    say("zone weights (exact coverage at polygon edges)", None)
    template = str(cat.path_of(cat.layers[cat.catalog.reference_layer].path))
    wanted = {"county": (read_vector(cat, "boundary", grid.crs), cat.vectors["boundary"].id_field)}
    if zone_layers is None:
        wanted["township"] = (read_vector(cat, "townships", grid.crs), cat.vectors["townships"].id_field)
        wanted["parcel"] = (read_vector(cat, "parcels", grid.crs), cat.vectors["parcels"].id_field)
    else:
        wanted.update(zone_layers)
    zones: dict[str, tuple] = {}
    for kind, (gdf, id_field) in wanted.items():
        if gdf.crs is not None and gdf.crs.to_string() != grid.crs:
            gdf = gdf.to_crs(grid.crs)
        zones[kind] = (gdf, zone_weights(gdf, id_field, grid, template), id_field)
    # the region's land-cover extent (exact coverage) from the uint8 land cover (type ids), read
    # outside the graph: the provisioning and tourism shares then need no region-wide reduction inside it
    if scenario is not None and scenario.lulc_after_np is not None:
        lc_np = scenario.lulc_after_np
    else:
        lc_np = read_full(cat, LAND_COVER_T2, grid)
    if lc_np is None:   # not a file on the grid (a source, a scenario): its uint8 type ids, computed
        lc_np = np.asarray(layers[LAND_COVER_T2].values)
    region_class_px = class_coverage(zones["county"][1], lc_np)
    region_class_px[int(layers[LAND_COVER_T2].attrs.get("nodata", NODATA_ID))] = 0.0
    kernel = ChunkKernel(grid=grid, rules=rules, tables=tables, coef=coef, period=(y1, y2), price_year=opts.price_year,
                         region_class_px=region_class_px,
                         attrs={k: _scalar_attrs(a) for k, a in layers.items()}, with_maps=map_writer is not None)
    say("GEP services", None)
    # the same recipe on the whole lazy layers: the services' units and details and the map names
    # for the callers (nothing of it is computed)
    changed = scenario.changed if scenario is not None else None
    services, carbon, _values, _coded, _by_class, maps = valuation(layers, kernel, before, changed)
    # input value checks ride along in the same per-chunk tasks (no separate pass over the inputs)
    region = region_mask(zones["county"][0].geometry, grid, layers[cat.catalog.reference_layer])
    stats = layer_checks(layers, cat, region)
    inputs = dict(layers)
    if before is not None:
        inputs.update({BEFORE + k: v for k, v in before.items()})
        inputs[CHANGED] = scenario.changed
    halos = {k: inputs[k] for k in HALO_LAYERS if k in inputs}
    # county: every by-type sum; townships: the GEP Monte Carlo sums too (read back by types.ZoneSums.gep_mc_sums)
    only = {"county": COUNTY_ONLY, **gep_mc.zone_sums(zones, ("cls:" + gep_mc.PREFIX,))}
    graph = {"zones": zonal_pass({k: z[1] for k, z in zones.items()}, grid, inputs, halos, kernel, only,
                                 stats, map_writer(maps, grid) if map_writer is not None else None)}
    return graph, {"grid": grid, "zones": zones, "services": services, "maps": maps, "layers": layers,
                   "carbon": carbon}


BEFORE = "before:"             # input key prefix: the t2 layers before a scenario changed them
CHANGED = "scenario:changed"   # input key: the scenario's changed pixels
HALO_LAYERS = ("dem",)         # layers read with a 1-px halo (the soil service's slope)
COUNTY_ONLY = ("cls:",)        # coded sums made for the county only (by type; GEP Monte Carlo channels)


def _scalar_attrs(a: xr.DataArray) -> dict:
    return {k: v for k, v in a.attrs.items() if isinstance(v, (int, float, str, np.number))}


@dataclass
class ChunkKernel:
    """What one chunk's task needs besides its blocks; calling it evaluates the valuation's recipe
    (:func:`valuation`) on numpy blocks: ``kernel(blocks, halos, window) -> (values, coded, maps)``."""

    grid: Grid
    rules: RuleSet
    tables: dict
    coef: object
    period: tuple
    price_year: int | None
    region_class_px: np.ndarray
    attrs: dict
    with_maps: bool = True   # per-pixel maps made (only when they are written)
    by_type: bool = True     # the sums by type (COUNTY_ONLY channels) made; False when no zone layer sums them

    def __call__(self, blocks: dict, halos: dict, window: tuple):
        r0, c0, h, w = window
        dims = ("y", "x")

        def arr(key, a):
            return xr.DataArray(np.asarray(a), dims=dims, attrs=self.attrs.get(key.removeprefix(BEFORE), {}))

        layers = {k: arr(k, a) for k, a in blocks.items() if not k.startswith(BEFORE) and k != CHANGED}
        before = {k[len(BEFORE):]: arr(k, a) for k, a in blocks.items() if k.startswith(BEFORE)} or None
        changed = arr(CHANGED, blocks[CHANGED]) if CHANGED in blocks else None
        top, left = int(r0 > 0), int(c0 > 0)
        hal = {k: (arr(k, a), (slice(top, top + h), slice(left, left + w))) for k, a in halos.items()}
        _s, _c, values, coded, by_class, maps = valuation(layers, self, before, changed, hal, self.with_maps)
        coded.update(by_class)
        return ({k: v.data for k, v in values.items()},
                {k: (c.data, None if v is None else v.data, n) for k, (c, v, n) in coded.items()},
                {k: v.data for k, v in maps.items()})


def valuation(layers: dict[str, xr.DataArray], k: ChunkKernel, before: dict | None = None,
              changed: xr.DataArray | None = None, halos: dict | None = None, with_maps: bool = True):
    """Carbon, every service and every channel the pass sums or maps, from aligned layers: lazy on
    dask-backed layers, the numbers of one chunk on numpy-backed ones (the same code either way).

    ``before`` (t2 layers before a scenario) and ``changed`` (its pixels): the sink of changed pixels
    becomes 0. Returns (services, carbon, values, coded, by_class, maps).
    """
    y1, y2 = k.period
    coef = k.coef

    def carbon_of(v2, sp2, lc2):
        return stock_difference(layers[VOLUME_T1], layers[FOREST_TYPE_T1], layers[LAND_COVER_T1], v2, sp2, lc2,
                                (y1, y2), coef)

    carbon = carbon_of(layers[VOLUME_T2], layers[FOREST_TYPE_T2], layers[LAND_COVER_T2])
    if before is not None:
        before_sink = carbon_of(before[VOLUME_T2], before[FOREST_TYPE_T2], before[LAND_COVER_T2])["sink_tco2e_per_ha_yr"]
        carbon["sink_tco2e_per_ha_yr"] = xr.where(changed, 0.0, before_sink).where(before_sink.notnull())
    if CHANGE_EVENT_T2 in layers:   # recorded change events (小班 change reasons) override the differencing
        carbon["lucc"] = lucc_with_events(carbon["lucc"], layers[CHANGE_EVENT_T2], change_events().lucc_lut(LUCC))
    ctx = ServiceContext(layers=layers, grid=k.grid, rules=k.rules, year=y2, tables=k.tables,
                         carbon_sink_tco2e_per_ha_yr=carbon["sink_tco2e_per_ha_yr"], price_year=k.price_year,
                         region_class_px=k.region_class_px, halos=halos or {})
    services = compute_services(ctx)
    grid = k.grid
    a_ha = grid.pixel_area_ha
    values: dict[str, xr.DataArray] = {}
    lc_ok, gaps = ctx.valid, {}
    for key, res in services.items():
        values[f"q:{key}"] = res.quantity
        values[f"v:{key}"] = res.value_cny
        # pixels of valid land cover whose result lacks one of the layers the service declares (types.ZoneSums.nodata_px)
        values[f"nd:{key}"] = (lc_ok & missing_any(layers, SERVICES[key].SPEC.layer_keys, gaps)).astype(PIXEL_DTYPE)
    values["carbon:sink"] = carbon["sink_tco2e_per_ha_yr"] * a_ha
    values["carbon:stock1"] = carbon["stock_t1_tc_per_ha"] * a_ha
    values["carbon:stock2"] = carbon["stock_t2_tc_per_ha"] * a_ha
    lc1, lc2 = layers[LAND_COVER_T1], layers[LAND_COVER_T2]
    valid = (lc1 != lc1.attrs["nodata"]) & (lc2 != lc2.attrs["nodata"])
    area = xr.where(valid, a_ha, 0.0)
    values["area_ha"] = area
    types = ecosystem_types()
    n_species = species_groups().n_ids
    n_types = types.n_positions

    def codes(a):
        return xr.where(valid, a, NODATA_ID)

    def positions(a):  # type id → dense position (sums by type stay small matrices)
        c = codes(a)
        return take(types.position_lut, c)

    # volume x area by species in float64: the carbon Monte Carlo differences the t2 and t1 sums (the
    # sink cancels as in carbon.stock_difference); float32 products move a parcel's CI by ~2e-6
    coded = {
        "sv1": (codes(layers[FOREST_TYPE_T1]), xr.where(valid, layers[VOLUME_T1].astype("float64"), 0.0).clip(min=0) * a_ha, n_species),
        "sv2": (codes(layers[FOREST_TYPE_T2]), xr.where(valid, layers[VOLUME_T2].astype("float64"), 0.0).clip(min=0) * a_ha, n_species),
        "sa1": (codes(layers[FOREST_TYPE_T1]), area, n_species),
        "sa2": (codes(layers[FOREST_TYPE_T2]), area, n_species),
        "ca1": (positions(lc1), area, n_types),
        "ca2": (positions(lc2), area, n_types),
        "lucc_sink": (carbon["lucc"], values["carbon:sink"], N_LUCC),
        "lucc_area": (carbon["lucc"], area, N_LUCC),
    }
    lc = positions(lc2)
    by_class = {f"cls:{k}": (lc, v, n_types) for k, v in values.items() if k.startswith(("v:", "q:"))}
    # GEP Monte Carlo sums (eco_value.gep_uncertainty), read back by types.ZoneSums.gep_mc_sums: county, townships
    if k.by_type:
        by_class.update({f"cls:{k}": v for k, v in gep_mc.channels(ctx, services).items()})
    else:
        by_class = {}
    if not with_maps:
        return services, carbon, values, coded, by_class, {}
    maps = {
        f"carbon_stock_{y2}_tc_per_ha": carbon["stock_t2_tc_per_ha"],
        "carbon_sink_tco2e_per_ha_yr": carbon["sink_tco2e_per_ha_yr"],
    }
    km2 = grid.pixel_area_m2 / M2_PER_KM2
    gep_total = sum(r.value_cny for r in services.values())
    maps["gep_cny_per_km2"] = gep_total / km2
    for key, r in services.items():
        maps[f"{key}_value_cny_per_km2"] = r.value_cny / km2
        maps[f"{key}_quantity_per_km2"] = r.quantity / km2
    return services, carbon, values, coded, by_class, maps
