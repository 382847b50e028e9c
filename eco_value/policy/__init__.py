"""The pilots' policy instruments, built on a stored run.

* :func:`value_unit` — GEP, carbon and present value of any polygon (特定地域单元生态产品价值), with
  exact area weights at its edges, split into market-realisable and public-good value (structure of
  the Zhejiang/Lishui VEP guideline: products, recreation and creditable carbon are realisable;
  the other regulating services are public goods).
* :func:`damage` — yearly GEP lost and carbon stock lost when the land cover inside a polygon changes
  (生态环境损害赔偿), and the compensation for interim losses over a linear recovery, discounted
  (GB/T 39791.1-2020 structure).
* :func:`allocate` — initial quota of a right (energy use, emissions) split among zones by a weighted
  mix of baseline use and GEP share, rounded to whole units by largest remainder.

Each result is stored (``policy_results``) with its rule and run, so it can be shown and re-run.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from pathlib import Path

import dask
import numpy as np
import pandas as pd

from ..errors import EcoValueError, InputError, Problem
from ..inputs.catalog import load_catalog
from ..inputs.readers import read_full
from ..inputs.schemes import load_scheme
from ..roles import LAND_COVER_T2
from ..rules.ecosystem import ecosystem_types
from ..rules import RuleSet

MARKET_SERVICES = ("provisioning", "recreation")   # plus the creditable share of carbon_sequestration
CARBON_SERVICE = "carbon_sequestration"


def _now():
    return datetime.now(timezone.utc)


def _run_setup(store, run_id: str):
    from ..pipeline import stored_run_context

    run, cat, rules, opts = stored_run_context(store, run_id, "a policy calculation")
    opts.mc_draws = 0
    return run, cat, rules, opts


def read_polygons(path: str | Path, layer: str | None, crs: str):
    """Read a user's polygon file (GeoPackage, GeoJSON, Shapefile; any CRS) as one feature per row."""
    import geopandas as gpd
    import shapely

    path = Path(path)
    if not path.exists():
        raise InputError([Problem("missing-file", str(path), layer or "polygon", "the polygon file does not exist",
                                  "give a GeoPackage, GeoJSON or Shapefile")])
    try:
        gdf = gpd.read_file(path, layer=layer)
    except Exception as exc:  # noqa: BLE001
        raise InputError([Problem("unreadable", str(path), layer or "polygon", f"cannot read it ({exc})",
                                  "check the format and the --layer name")]) from None
    if gdf.crs is None:
        raise InputError([Problem("no-crs", str(path), layer or "polygon", "the polygon layer has no CRS",
                                  "assign one (QGIS, ogr2ogr -a_srs)")])
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty]
    if gdf.empty:
        raise InputError([Problem("empty", str(path), layer or "polygon", "no polygon in the layer", "draw the unit")])
    bad = ~shapely.is_valid(gdf.geometry.values)
    if bad.any():
        raise InputError([Problem("invalid-geometry", str(path), layer or "polygon", f"{int(bad.sum())} invalid polygon(s)",
                                  "repair them (QGIS 'Fix geometries')")])
    gdf = gdf.to_crs(crs)
    geom = shapely.union_all(gdf.geometry.values)
    return gpd.GeoDataFrame({"unit_id": ["unit"]}, geometry=[geom], crs=crs)


def _creditable_fraction(rules: RuleSet) -> float:
    """Share of a carbon sink that becomes credits before the uncertainty discount (baseline, leakage, buffer)."""
    return (1 - rules.value("crediting.baseline_share") - rules.value("crediting.leakage_share")) * \
        (1 - rules.value("crediting.buffer_share"))


def present_value(annual: float, years: int, rate: float) -> float:
    """PV of a constant yearly flow received at the end of years 1..N: V · (1 − (1+r)^−N) / r."""
    if years <= 0:
        raise EcoValueError("--years must be positive")
    if rate < 0:
        raise EcoValueError("--discount-rate must not be negative")
    return annual * years if rate == 0 else annual * (1 - (1 + rate) ** -years) / rate


def _zone_results(store, run_id, polygons, scenario_fn=None):
    """Per-service sums inside the polygon for the run (and, optionally, a scenario), in one compute."""
    from ..inputs.readers import open_layers
    from ..pipeline import build

    run, cat, rules, opts = _run_setup(store, run_id)
    say = lambda *_: None  # noqa: E731
    layers, grid = open_layers(cat, chunk_px=opts.chunk_px)
    zl = {"unit": (polygons, "unit_id")}
    g0, c0 = build(cat, rules, opts, say, zone_layers=zl, layers=layers, grid=grid)
    graphs = {"before": g0["zones"]}
    ctxs = {"before": c0}
    if scenario_fn is not None:
        sc = scenario_fn(layers, grid, rules)
        g1, c1 = build(cat, rules, opts, say, zone_layers=zl, scenario=sc, layers=layers, grid=grid)
        graphs["after"] = g1["zones"]
        ctxs["after"] = c1
    (res,) = dask.compute(graphs, scheduler="threads")
    res = {k: v["unit"] for k, v in res.items()}   # (input checks were done by the run itself)
    return run, cat, rules, ctxs["before"], res


def _services_of(ctx, sums) -> dict:
    out = {}
    for key, r in ctx["services"].items():
        out[key] = {"quantity": float(sums[f"q:{key}"][0]), "unit": r.quantity_unit, "value_cny": float(sums[f"v:{key}"][0])}
    return out


def _store_result(store, run_id, kind, rule, params, result, geom=None) -> str:
    from ..store.models import PolicyResult

    pid = str(uuid.uuid4())
    with store.session() as s:
        s.add(PolicyResult(id=pid, run_id=run_id, kind=kind, created=_now(), rule=rule,
                           params_json=json.dumps(params, ensure_ascii=False, sort_keys=True),
                           result_json=json.dumps(result, ensure_ascii=False, sort_keys=True),
                           geometry_wkb=None if geom is None else geom.wkb))
        s.commit()
    return pid


def value_unit(store, run_id: str, polygon: str | Path, layer: str | None = None, years: int | None = None,
               discount_rate: float | None = None) -> dict:
    """GEP by service, carbon, market/public split and (optionally) present value of a land unit."""
    run = store.run(run_id)
    cat = load_catalog(run.catalog_path)
    poly = read_polygons(polygon, layer, cat.catalog.crs)
    run, cat, rules, ctx, res = _zone_results(store, run.id, poly)
    sums = res["before"]
    services = _services_of(ctx, sums)
    total = sum(v["value_cny"] for v in services.values())
    sink = float(sums["carbon:sink"][0])
    carbon_value = services.get(CARBON_SERVICE, {}).get("value_cny", 0.0)
    creditable = max(carbon_value, 0.0) * _creditable_fraction(rules)
    market = sum(services[k]["value_cny"] for k in MARKET_SERVICES if k in services) + creditable
    result = {
        "run_id": run.id, "area_ha": float(sums["area_ha"][0]), "gep_total_cny": total, "by_service": services,
        "carbon": {"stock_tc": float(sums["carbon:stock2"][0]), "net_sink_tco2e_per_yr": sink},
        "market_realisable_cny": market, "public_good_cny": total - market,
        "creditable_carbon_cny": creditable, "method": "zj_vep structure; exact area weights at the unit's edges",
    }
    if years is not None or discount_rate is not None:
        if years is None or discount_rate is None:
            raise EcoValueError("give both --years and --discount-rate for a present value")
        result["present_value_cny"] = present_value(total, years, discount_rate)
        result["present_value_market_cny"] = present_value(market, years, discount_rate)
        result["years"], result["discount_rate"] = years, discount_rate
    result["policy_result_id"] = _store_result(store, run.id, "unit_value", rules.name,
                                               {"polygon": str(polygon), "layer": layer, "years": years,
                                                "discount_rate": discount_rate}, result, poly.geometry.iloc[0])
    return result


def damage(store, run_id: str, after_lulc: str | Path, polygon: str | Path, layer: str | None = None,
           recovery_years: int = 10, discount_rate: float | None = None) -> dict:
    """Yearly GEP and carbon stock lost when the land cover inside ``polygon`` becomes ``after_lulc``."""
    import rasterio
    import rioxarray
    import xarray as xr
    from rasterio.features import rasterize

    run = store.run(run_id)
    cat = load_catalog(run.catalog_path)
    poly = read_polygons(polygon, layer, cat.catalog.crs)
    after_path = Path(after_lulc)
    if not after_path.exists():
        raise InputError([Problem("missing-file", str(after_path), "after_lulc", "the land-cover raster does not exist", "check the path")])

    def scenario(layers, grid, rules):
        from ..pipeline import Scenario

        with rasterio.open(after_path) as ds:
            same = ds.crs is not None and ds.crs.to_string() == grid.crs and ds.transform == grid.transform \
                and (ds.width, ds.height) == (grid.width, grid.height)
        if not same:
            raise InputError([Problem("grid-mismatch", str(after_path), "after_lulc",
                                      "the changed land cover is not on the run's grid",
                                      f"resample it onto the grid of {cat.catalog.reference_layer} (nearest)")])
        # the changed land cover is in the product codes of the run's land cover; the engine sees type ids
        name = cat.layers[LAND_COVER_T2].scheme
        translate = load_scheme(name).translate if name else (lambda a, _nod: a)
        after = rioxarray.open_rasterio(after_path, chunks={"band": 1, **grid.chunks}).sel(band=1, drop=True)
        with rasterio.open(after_path) as ds:
            a_nod = ds.nodata if ds.nodata is not None else cat.layers[LAND_COVER_T2].nodata
        after = after.copy(data=after.data.map_blocks(translate, a_nod, dtype="uint8"))
        after = after.assign_coords(layers[LAND_COVER_T2].coords)
        mask = rasterize([(poly.geometry.iloc[0], 1)], out_shape=grid.shape, transform=grid.transform, fill=0,
                         all_touched=True, dtype="uint8").astype(bool)
        inside = xr.DataArray(dask.array.from_array(mask, chunks=layers[LAND_COVER_T2].data.chunks), dims=after.dims,
                              coords=after.coords)
        lc = layers[LAND_COVER_T2]
        nod = lc.attrs["nodata"]
        changed = inside & (after != lc) & (after != nod) & (lc != nod)
        fvc = ecosystem_types().table(rules, "policy.damage.fvc_after")
        with rasterio.open(after_path) as a_src:
            a_np = translate(a_src.read(1), a_nod)
        l_np = read_full(cat, LAND_COVER_T2, grid)
        ch_np = mask & (a_np != l_np) & (a_np != nod) & (l_np != nod)
        return Scenario(changed=changed, lulc_after=after.astype(lc.dtype), fvc_by_class=fvc,
                        lulc_after_np=np.where(ch_np, a_np, l_np))

    run, cat, rules, ctx, res = _zone_results(store, run.id, poly, scenario)
    before, after = _services_of(ctx, res["before"]), None
    after_sums = res["after"]
    after = {k: {"quantity": float(after_sums[f"q:{k}"][0]), "value_cny": float(after_sums[f"v:{k}"][0])} for k in before}
    lost = {k: {"quantity": before[k]["quantity"] - after[k]["quantity"], "unit": before[k]["unit"],
                "value_cny": before[k]["value_cny"] - after[k]["value_cny"]} for k in before}
    yearly = sum(v["value_cny"] for v in lost.values())
    stock_lost_tc = float(res["before"]["carbon:stock2"][0]) - float(after_sums["carbon:stock2"][0])
    co2 = rules.value("constants.molar_ratio_co2_c")
    price = ctx["services"][CARBON_SERVICE].details.get("price_cny_per_tco2") if CARBON_SERVICE in ctx["services"] else None
    stock_lost_co2 = stock_lost_tc * co2
    r = rules.value("policy.damage.discount_rate") if discount_rate is None else discount_rate
    n = int(recovery_years)
    if n <= 0:
        raise EcoValueError("--recovery-years must be positive")
    # interim loss: linear recovery from full loss in year 1 to none after N years, discounted to today
    interim = sum(yearly * (1 - t / n) / (1 + r) ** t for t in range(n))
    stock_value = stock_lost_co2 * (price or 0.0)
    result = {
        "run_id": run.id, "area_ha": float(res["before"]["area_ha"][0]),
        "yearly_gep_loss_cny": yearly, "by_service": lost,
        "carbon_stock_lost_tco2e": stock_lost_co2, "carbon_stock_lost_value_cny": stock_value,
        "recovery_years": n, "discount_rate": r, "interim_loss_cny": interim,
        "compensation_cny": interim + stock_value,
        "method": "GB/T 39791.1-2020 structure: interim losses until recovery (linear), discounted, plus the one-off carbon stock loss",
    }
    result["policy_result_id"] = _store_result(store, run.id, "damage", rules.name,
                                               {"polygon": str(polygon), "after_lulc": str(after_lulc),
                                                "recovery_years": n, "discount_rate": r}, result, poly.geometry.iloc[0])
    return result


def largest_remainder(total: int, weights: dict[str, float]) -> dict[str, int]:
    """Whole units summing exactly to ``total``, proportional to ``weights`` (Hamilton's method).

    Ties in the remainder go to the lower zone id, so the result does not depend on the input order.
    """
    if total < 0 or int(total) != total:
        raise EcoValueError(f"--total must be a whole non-negative number, got {total}")
    keys = sorted(weights)
    w = np.array([max(float(weights[k]), 0.0) for k in keys])
    if w.sum() <= 0:
        raise EcoValueError("every zone has zero weight; nothing to allocate by")
    exact = total * w / w.sum()
    base = np.floor(exact).astype(int)
    rest = int(total - base.sum())
    rema = exact - base
    order = sorted(range(len(keys)), key=lambda i: (-rema[i], keys[i]))
    for i in order[:rest]:
        base[i] += 1
    return {k: int(v) for k, v in zip(keys, base)}


def allocation_scores(baseline: dict[str, float], gep: dict[str, float], w_baseline: float, w_gep: float) -> dict[str, float]:
    """score = w_b · b_i / Σ b + w_g · g_i / Σ g (each part a share; weights from the rule set)."""
    zones = sorted(set(baseline) | set(gep))
    sb = sum(max(baseline.get(z, 0.0), 0.0) for z in zones)
    sg = sum(max(gep.get(z, 0.0), 0.0) for z in zones)
    out = {}
    for z in zones:
        b = max(baseline.get(z, 0.0), 0.0) / sb if sb > 0 else 0.0
        g = max(gep.get(z, 0.0), 0.0) / sg if sg > 0 else 0.0
        out[z] = w_baseline * b + w_gep * g
    return out


def allocate(store, run_id: str, total: int, unit: str, by: str = "township", rule: str = "gep_linked",
             baseline_file: str | Path | None = None) -> dict:
    """Split ``total`` units of a right among zones by baseline use and GEP (weights from the rule set)."""
    run = store.run(run_id)
    rules = RuleSet.from_canonical(store.rules_json(run.ruleset_hash))
    if f"policy.allocation.{rule}.w_gep" not in rules.params:
        names = sorted({k.split(".")[2] for k in rules.params if k.startswith("policy.allocation.")})
        raise EcoValueError(f"no allocation rule '{rule}' in rule set {rules.name}; choose one of {', '.join(names)}")
    wb, wg = rules.value(f"policy.allocation.{rule}.w_baseline"), rules.value(f"policy.allocation.{rule}.w_gep")
    services = store.table("services", run.id)
    zones = store.table("zones", run.id)
    if by in ("township", "parcel"):
        s = services[services.zone_kind == by]
        gep = s.groupby("zone_id").value_cny.sum().to_dict()
        z = zones[zones.kind == by].set_index("zone_id")
        default_base = "population" if by == "township" else "area_ha"
        baseline = {k: float(z.loc[k, default_base]) for k in gep}
        source = f"{by}s of run {run.id}"
    else:
        f = Path(by)
        if not f.exists():
            raise InputError([Problem("missing-file", str(f), "zones", "the zone table does not exist",
                                      "give township, parcel or a CSV with zone_id, baseline and gep_cny")])
        df = pd.read_csv(f)
        miss = [c for c in ("zone_id", "baseline", "gep_cny") if c not in df.columns]
        if miss:
            raise InputError([Problem("missing-field", str(f), "zones", f"missing column(s) {miss}",
                                      "columns: zone_id, baseline (last year's use), gep_cny")])
        gep = dict(zip(df.zone_id.astype(str), df.gep_cny.astype(float)))
        baseline = dict(zip(df.zone_id.astype(str), df.baseline.astype(float)))
        default_base = "baseline column"
        source = str(f)
    if baseline_file is not None:
        bdf = pd.read_csv(baseline_file)
        baseline = dict(zip(bdf.zone_id.astype(str), bdf.baseline.astype(float)))
        default_base = str(baseline_file)
    if any(v < 0 for v in list(baseline.values()) + list(gep.values())):
        raise EcoValueError("baseline and GEP must not be negative")
    scores = allocation_scores(baseline, gep, wb, wg)
    quota = largest_remainder(int(total), scores)
    lines = [{"zone_id": k, "baseline": baseline.get(k, 0.0), "gep_cny": gep.get(k, 0.0), "score": scores[k], "quota": quota[k]}
             for k in sorted(quota)]
    result = {"run_id": run.id, "total": int(total), "unit": unit, "by": by, "rule": rule,
              "weights": {"w_baseline": wb, "w_gep": wg}, "baseline_from": default_base, "zones_from": source,
              "allocation": lines}
    result["policy_result_id"] = _store_result(store, run.id, "allocation", rule,
                                               {"total": int(total), "unit": unit, "by": by, "rule": rule}, result)
    return result
