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
import math
import uuid
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path

import dask
import numpy as np
import pandas as pd

from ..errors import EcoValueError, InputError, Problem
from ..grid import M2_PER_HA
from ..inputs.catalog import load_catalog
from ..inputs.readers import read_full
from ..inputs.schemes import load_scheme
from ..roles import LAND_COVER_T2
from ..rules.ecosystem import ecosystem_types
from ..rules import RuleSet

MARKET_SERVICES = ("provisioning", "recreation")   # plus the creditable share of carbon_sequestration
CARBON_SERVICE = "carbon_sequestration"
LIMITS = "policy.limits"
MAX_LISTED = 20            # offending ids shown in one message (the count is always given)
NEGATIVE_GEP_RULE = ("a zone with negative GEP (a net source, e.g. more carbon lost than other services give) takes "
                     "no GEP-linked share: GEP shares are of max(GEP, 0); its baseline share is unchanged")


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


def _limit(rules: RuleSet, key: str) -> tuple[float, str]:
    """A limit on a user's option (``policy.limits.KEY``) with its source.

    Runs stored before the limits existed carry a rule set without them: their shipped rule set (or
    the default one) gives the limit, since limits check options and do not change any account.
    """
    name = f"{LIMITS}.{key}"
    if not rules.has(name):
        from ..rules import available, load_rules
        from ..pipeline import RunOptions

        rules = load_rules(rules.name if rules.name in available() else RunOptions().rules)
    p = rules.param(name)
    return float(p.value), f"{name} of rule set {rules.name}: {p.source}"


def check_discount_rate(rules: RuleSet, rate: float) -> float:
    """A finite discount rate inside the rule set's limits (a fraction: 0.03 is 3 %)."""
    lo, src_lo = _limit(rules, "discount_rate_min")
    hi, src_hi = _limit(rules, "discount_rate_max")
    try:
        r = float(rate)
    except (TypeError, ValueError):
        r = math.nan
    if not (math.isfinite(r) and lo <= r <= hi):
        raise EcoValueError(f"--discount-rate must be a finite fraction between {lo:g} and {hi:g} (0.03 means 3 %), "
                            f"got {rate}; limits: {src_lo}; {src_hi}")
    return r


def check_years(rules: RuleSet, years, option: str) -> int:
    """A whole number of years from 1 to ``policy.limits.recovery_years_max``."""
    hi, src = _limit(rules, "recovery_years_max")
    if isinstance(years, bool) or not isinstance(years, (int, np.integer)) or not 1 <= years <= hi:
        raise EcoValueError(f"{option} must be a whole number of years between 1 and {hi:g}, got {years}; limit: {src}")
    return int(years)


def clip_to_region(poly, cat, path: str | Path, layer: str | None):
    """The unit's part inside the run's region (the catalog's boundary outline), and the areas cut off.

    Values of the region are shared over the region only (provisioning and recreation are the
    county's statistics spread over its pixels), so a unit is valued on its part inside the region:
    a unit never exceeds the region's totals, and the whole region gives exactly them.
    """
    import shapely

    from ..inputs.readers import read_vector

    region = read_vector(cat, "boundary", cat.catalog.crs)
    outline = shapely.union_all(region.geometry.values)
    g = poly.geometry.iloc[0]
    inside = shapely.intersection(g, outline)
    if not inside.is_empty and inside.geom_type == "GeometryCollection":   # keep the polygonal parts
        inside = shapely.union_all([p for p in shapely.get_parts(inside) if p.geom_type in ("Polygon", "MultiPolygon")])
    if inside.is_empty or inside.area <= 0:
        raise InputError([Problem("no-overlap", str(path), layer or "polygon",
                                  f"the unit does not overlap the run's region ({cat.catalog.region}, outline "
                                  f"{cat.vectors['boundary'].path}); nothing to value",
                                  "draw the unit inside the region, or check the CRS of the layer")])
    info = {"unit_ha": g.area / M2_PER_HA, "inside_ha": inside.area / M2_PER_HA,
            "outside_ha": max(g.area - inside.area, 0.0) / M2_PER_HA,
            "region": cat.catalog.region, "outline": str(cat.vectors["boundary"].path)}
    import geopandas as gpd

    return gpd.GeoDataFrame({"unit_id": ["unit"]}, geometry=[inside], crs=poly.crs), info


def _creditable_fraction(rules: RuleSet) -> float:
    """Share of a carbon sink that becomes credits before the uncertainty discount (baseline, leakage, buffer)."""
    return (1 - rules.value("crediting.baseline_share") - rules.value("crediting.leakage_share")) * \
        (1 - rules.value("crediting.buffer_share"))


def present_value(annual: float, years: int, rate: float) -> float:
    """PV of a constant yearly flow received at the end of years 1..N: V · (1 − (1+r)^−N) / r."""
    if years <= 0:
        raise EcoValueError("--years must be positive")
    if not (math.isfinite(rate) and rate >= 0):
        raise EcoValueError(f"--discount-rate must be a finite fraction not below 0, got {rate}")
    return annual * years if rate == 0 else annual * (1 - (1 + rate) ** -years) / rate


UNIT = "unit"   # the zone kind of a policy polygon


def _zone_results(store, run_id, polygons, scenario_fn=None, setup=None):
    """The engine's sums inside the polygon for the run (and, optionally, a scenario), in one compute:
    (run, catalog, rules, {"before": RunSums[, "after": RunSums]})."""
    from .. import engine

    run, cat, rules, opts = setup or _run_setup(store, run_id)
    zones = {UNIT: (polygons, "unit_id")}
    if scenario_fn is None:
        res = {"before": engine.zone_sums(cat, rules, opts, zones)}
    else:
        before, after = engine.zone_sums_before_after(cat, rules, opts, zones, scenario_fn)
        res = {"before": before, "after": after}
    return run, cat, rules, res


def _services_of(sums) -> dict:
    """Quantity, unit and value of every service inside the polygon (``sums``: engine ``RunSums``)."""
    u = sums[UNIT]
    return {key: {"quantity": float(u.quantity(key)[0]), "unit": sums.service_unit(key),
                  "value_cny": float(u.value_cny(key)[0])} for key in sums.services}


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
    """GEP by service, carbon, market/public split and (optionally) present value of a land unit.

    The unit is clipped to the run's region (:func:`clip_to_region`); a unit outside it is refused.
    """
    setup = _run_setup(store, run_id)
    run, cat, rules, _ = setup
    if years is not None or discount_rate is not None:
        if years is None or discount_rate is None:
            raise EcoValueError("give both --years and --discount-rate for a present value")
        if isinstance(years, bool) or not isinstance(years, (int, np.integer)) or years <= 0:
            raise EcoValueError(f"--years must be a whole positive number of years, got {years}")
        discount_rate = check_discount_rate(rules, discount_rate)
    poly, clip = clip_to_region(read_polygons(polygon, layer, cat.catalog.crs), cat, polygon, layer)
    run, cat, rules, res = _zone_results(store, run.id, poly, setup=setup)
    sums = res["before"][UNIT]
    services = _services_of(res["before"])
    total = sum(v["value_cny"] for v in services.values())
    sink = float(sums.carbon_sink_tco2e_per_yr[0])
    carbon_value = services.get(CARBON_SERVICE, {}).get("value_cny", 0.0)
    creditable = max(carbon_value, 0.0) * _creditable_fraction(rules)
    market = sum(services[k]["value_cny"] for k in MARKET_SERVICES if k in services) + creditable
    result = {
        "run_id": run.id, "area_ha": float(sums.area_ha[0]), "gep_total_cny": total, "by_service": services,
        "carbon": {"stock_tc": float(sums.carbon_stock_t2_tc[0]), "net_sink_tco2e_per_yr": sink},
        "market_realisable_cny": market, "public_good_cny": total - market,
        "creditable_carbon_cny": creditable, "clipped_to_region": clip,
        "method": "zj_vep structure; the unit clipped to the run's region; exact area weights at its edges",
    }
    if years is not None:
        result["present_value_cny"] = present_value(total, years, discount_rate)
        result["present_value_market_cny"] = present_value(market, years, discount_rate)
        result["years"], result["discount_rate"] = int(years), discount_rate
    result["policy_result_id"] = _store_result(store, run.id, "unit_value", rules.name,
                                               {"polygon": str(polygon), "layer": layer, "years": years,
                                                "discount_rate": discount_rate}, result, poly.geometry.iloc[0])
    return result


def check_land_cover_codes(path: Path, cat, key: str = LAND_COVER_T2) -> np.ndarray:
    """The codes of a changed land-cover raster, refused if any is outside the run's class scheme.

    Allowed: the classes of layer ``key``'s scheme and that layer's nodata. Every offending value
    (other codes, fractions, NaN) is listed with its pixel count.
    """
    import rasterio

    spec = cat.layers[key]
    scheme = load_scheme(spec.scheme).int_codes() if spec.scheme else None
    try:
        with rasterio.open(path) as ds:
            a = ds.read(1)
        with rasterio.open(cat.path_of(spec.path)) as ref:
            nod = ref.nodata
    except rasterio.errors.RasterioIOError as exc:
        raise InputError([Problem("unreadable", str(path), "after_lulc", f"cannot read it ({exc})",
                                  "give a single-band GeoTIFF on the run's grid")]) from None
    if scheme is None:
        return a
    allowed = np.array(sorted(scheme) + ([] if nod is None else [nod]), dtype="float64")
    vals, counts = np.unique(a, return_counts=True)
    bad = [(v, int(n)) for v, n in zip(vals, counts) if not np.isin(np.float64(v), allowed)]
    if bad:
        listed = ", ".join(f"{float(v):g} ({n} pixels)" for v, n in bad[:MAX_LISTED])
        more = f" and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
        codes = ", ".join(f"{c} {name}" for c, name in sorted(scheme.items()))
        raise InputError([Problem("bad-code", str(path), "after_lulc",
                                  f"{sum(n for _, n in bad)} pixel(s) with values outside the {spec.scheme} classes: "
                                  f"{listed}{more}",
                                  f"use the codes of the run's land cover ({codes})"
                                  + ("" if nod is None else f" and {nod:g} for nodata"))])
    return a


def damage(store, run_id: str, after_lulc: str | Path, polygon: str | Path, layer: str | None = None,
           recovery_years: int = 10, discount_rate: float | None = None) -> dict:
    """Yearly GEP and carbon stock lost when the land cover inside ``polygon`` becomes ``after_lulc``.

    Checked before anything is computed: the discount rate and recovery years against the rule set's
    ``policy.limits``, the changed land cover's codes against the run's class scheme, and the polygon
    against the run's region (clipped to it; refused outside it).
    """
    import rasterio
    import rioxarray
    import xarray as xr
    from rasterio.features import rasterize

    setup = _run_setup(store, run_id)
    run, cat, rules, _ = setup
    r = check_discount_rate(rules, rules.value("policy.damage.discount_rate") if discount_rate is None else discount_rate)
    n = check_years(rules, recovery_years, "--recovery-years")
    poly, clip = clip_to_region(read_polygons(polygon, layer, cat.catalog.crs), cat, polygon, layer)
    after_path = Path(after_lulc)
    if not after_path.exists():
        raise InputError([Problem("missing-file", str(after_path), "after_lulc", "the land-cover raster does not exist", "check the path")])
    a_np = check_land_cover_codes(after_path, cat)

    def scenario(layers, grid, rules):
        from .scenario import Scenario

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
                        lulc_after_np=np.where(ch_np, a_np, l_np).astype(l_np.dtype))

    run, cat, rules, res = _zone_results(store, run.id, poly, scenario, setup=setup)
    before, after = _services_of(res["before"]), _services_of(res["after"])
    lost = {k: {"quantity": before[k]["quantity"] - after[k]["quantity"], "unit": before[k]["unit"],
                "value_cny": before[k]["value_cny"] - after[k]["value_cny"]} for k in before}
    yearly = sum(v["value_cny"] for v in lost.values())
    stock_lost_tc = float(res["before"][UNIT].carbon_stock_t2_tc[0]) - float(res["after"][UNIT].carbon_stock_t2_tc[0])
    co2 = rules.value("constants.molar_ratio_co2_c")
    services = res["before"].services
    price = services[CARBON_SERVICE].details.get("price_cny_per_tco2") if CARBON_SERVICE in services else None
    stock_lost_co2 = stock_lost_tc * co2
    # interim loss: linear recovery from full loss in year 1 to none after N years, discounted to today
    interim = sum(yearly * (1 - t / n) / (1 + r) ** t for t in range(n))
    stock_value = stock_lost_co2 * (price or 0.0)
    result = {
        "run_id": run.id, "area_ha": float(res["before"][UNIT].area_ha[0]),
        "yearly_gep_loss_cny": yearly, "by_service": lost,
        "carbon_stock_lost_tco2e": stock_lost_co2, "carbon_stock_lost_value_cny": stock_value,
        "recovery_years": n, "discount_rate": r, "interim_loss_cny": interim,
        "compensation_cny": interim + stock_value, "clipped_to_region": clip,
        "method": "GB/T 39791.1-2020 structure: interim losses until recovery (linear), discounted, plus the one-off carbon stock loss",
    }
    result["policy_result_id"] = _store_result(store, run.id, "damage", rules.name,
                                               {"polygon": str(polygon), "after_lulc": str(after_lulc),
                                                "recovery_years": n, "discount_rate": r}, result, poly.geometry.iloc[0])
    return result


def largest_remainder(total: int, weights: dict[str, float]) -> dict[str, int]:
    """Whole units summing exactly to ``total``, proportional to ``weights`` (Hamilton's method).

    Exact for any size of total: each weight (a float, hence a binary fraction) is taken as an exact
    rational and the shares are computed in integers, so the quotas add up to the last unit. Negative
    weights count as zero. Ties in the remainder go to the lower zone id, so the result does not
    depend on the input order.
    """
    if isinstance(total, bool) or not isinstance(total, (int, np.integer)) or total < 0:
        raise EcoValueError(f"--total must be a whole non-negative number, got {total}")
    total = int(total)
    keys = sorted(weights)
    bad = [k for k in keys if not math.isfinite(float(weights[k]))]
    if bad:
        raise EcoValueError(f"allocation weights must be finite numbers; not finite for {', '.join(bad[:MAX_LISTED])}")
    w = {k: Fraction(max(float(weights[k]), 0.0)) for k in keys}
    wsum = sum(w.values(), Fraction(0))
    if wsum <= 0:
        raise EcoValueError("every zone has zero weight; nothing to allocate by")
    exact = {k: total * w[k] / wsum for k in keys}
    base = {k: math.floor(exact[k]) for k in keys}
    rest = total - sum(base.values())          # 0 <= rest < number of zones
    order = sorted(keys, key=lambda k: (-(exact[k] - base[k]), k))
    for k in order[:rest]:
        base[k] += 1
    return base


def allocation_scores(baseline: dict[str, float], gep: dict[str, float], w_baseline: float, w_gep: float) -> dict[str, float]:
    """score = w_b · b_i / Σ b + w_g · g⁺_i / Σ g⁺ with g⁺ = max(GEP, 0) (each part a share; weights from the rule set).

    A zone with negative GEP takes no GEP-linked share (:data:`NEGATIVE_GEP_RULE`).
    """
    zones = sorted(set(baseline) | set(gep))
    sb = sum(max(baseline.get(z, 0.0), 0.0) for z in zones)
    sg = sum(max(gep.get(z, 0.0), 0.0) for z in zones)
    out = {}
    for z in zones:
        b = max(baseline.get(z, 0.0), 0.0) / sb if sb > 0 else 0.0
        g = max(gep.get(z, 0.0), 0.0) / sg if sg > 0 else 0.0
        out[z] = w_baseline * b + w_gep * g
    return out


def _listed(items: list[str]) -> str:
    more = f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return ", ".join(items[:MAX_LISTED]) + more


def read_zone_table(path: str | Path, columns: tuple[str, ...], what: str, negative_ok: tuple[str, ...] = ()) -> pd.DataFrame:
    """A CSV of zones (``zone_id`` plus numeric ``columns``), refused with every problem listed:
    missing file or columns, empty or duplicate ids (with their row counts), values that are not
    finite numbers, negative values (except in ``negative_ok``)."""
    f = Path(path)
    if not f.is_file():
        raise InputError([Problem("missing-file", str(f), what, "the table does not exist (or is not a file)",
                                  f"give a CSV with columns zone_id, {', '.join(columns)}")])
    try:
        df = pd.read_csv(f, dtype={"zone_id": str})
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise InputError([Problem("unreadable", str(f), what, f"cannot read it as CSV ({exc})",
                                  "save it as UTF-8 CSV with a header row")]) from None
    miss = [c for c in ("zone_id", *columns) if c not in df.columns]
    if miss:
        raise InputError([Problem("missing-field", str(f), what, f"missing column(s) {miss}",
                                  f"columns: zone_id, {', '.join(columns)}")])
    probs = []
    ids = df.zone_id.fillna("").astype(str).str.strip()
    if (ids == "").any():
        rows = [str(i + 2) for i in np.flatnonzero(ids == "")]
        probs.append(Problem("empty-id", str(f), what, f"{len(rows)} row(s) without a zone_id (lines {_listed(rows)})",
                             "give every row its zone id"))
    counts = ids[ids != ""].value_counts()
    dup = counts[counts > 1].sort_index()
    if len(dup):
        probs.append(Problem("duplicate-id", str(f), what,
                             f"{len(dup)} zone_id value(s) appear more than once: "
                             + _listed([f"{k} ({n} rows)" for k, n in dup.items()]),
                             "keep one row per zone (add the values up first if they are parts of one zone)"))
    for c in columns:
        v = pd.to_numeric(df[c], errors="coerce").astype("float64")
        bad = ~np.isfinite(v) | ((v < 0) if c not in negative_ok else False)
        if bad.any():
            shown = [f"{ids[i]} ({df[c].iloc[i]})" for i in np.flatnonzero(bad)]
            need = "finite numbers" + ("" if c in negative_ok else " ≥ 0")
            probs.append(Problem("bad-value", str(f), what, f"{int(bad.sum())} {c} value(s) are not {need}: {_listed(shown)}",
                                 f"give {c} as a plain number for every zone"))
        df[c] = v
    if probs:
        raise InputError(probs)
    df["zone_id"] = ids
    return df


def allocate(store, run_id: str, total: int, unit: str, by: str = "township", rule: str = "gep_linked",
             baseline_file: str | Path | None = None) -> dict:
    """Split ``total`` units of a right among zones by baseline use and GEP (weights from the rule set).

    Quotas are whole units summing exactly to ``total`` (at most ``policy.limits.allocation_max_total``).
    Zones with negative GEP take no GEP-linked share (:data:`NEGATIVE_GEP_RULE`). A ``baseline_file``
    must give exactly the zones allocated over, once each.
    """
    run = store.run(run_id)
    rules = RuleSet.from_canonical(store.rules_json(run.ruleset_hash))
    if f"policy.allocation.{rule}.w_gep" not in rules.params:
        names = sorted({k.split(".")[2] for k in rules.params if k.startswith("policy.allocation.")})
        raise EcoValueError(f"no allocation rule '{rule}' in rule set {rules.name}; choose one of {', '.join(names)}")
    cap, cap_src = _limit(rules, "allocation_max_total")
    if isinstance(total, bool) or not isinstance(total, (int, np.integer)) or not 0 <= total <= cap:
        raise EcoValueError(f"--total must be a whole number from 0 to at most {int(cap):,}, got {total:,}; "
                            f"limit: {cap_src}")
    total = int(total)
    wb, wg = rules.value(f"policy.allocation.{rule}.w_baseline"), rules.value(f"policy.allocation.{rule}.w_gep")
    if by in ("township", "parcel"):
        s = store.table("services", run.id, zone_kind=by)
        z = store.table("zones", run.id, zone_kind=by).set_index("zone_id")
        gep = s.groupby("zone_id").value_cny.sum().to_dict()
        default_base = "population" if by == "township" else "area_ha"
        baseline = {k: float(z.loc[k, default_base]) for k in gep}
        source = f"{by}s of run {run.id}"
    else:
        df = read_zone_table(by, ("baseline", "gep_cny"), "zones", negative_ok=("gep_cny",))
        gep = dict(zip(df.zone_id, df.gep_cny))
        baseline = dict(zip(df.zone_id, df.baseline))
        default_base = "baseline column"
        source = str(by)
    if baseline_file is not None:
        bdf = read_zone_table(baseline_file, ("baseline",), "baseline")
        known, given = set(gep), set(bdf.zone_id)
        probs = []
        if given - known:
            probs.append(Problem("unknown-zone", str(baseline_file), "baseline",
                                 f"{len(given - known)} zone(s) are not {by} zones of run {run.id[:8]}: "
                                 f"{_listed(sorted(given - known))}",
                                 f"use the zone ids of the run (`eco-value export-table zones {run.id[:8]}`)"))
        if known - given:
            probs.append(Problem("missing-zone", str(baseline_file), "baseline",
                                 f"{len(known - given)} {by} zone(s) of the run have no baseline: {_listed(sorted(known - given))}",
                                 "give a baseline for every zone (0 if it used nothing)"))
        if probs:
            raise InputError(probs)
        baseline = dict(zip(bdf.zone_id, bdf.baseline))
        default_base = str(baseline_file)
    negative_gep = sorted(k for k, v in gep.items() if v < 0)
    scores = allocation_scores(baseline, gep, wb, wg)
    quota = largest_remainder(total, scores)
    lines = [{"zone_id": k, "baseline": baseline.get(k, 0.0), "gep_cny": gep.get(k, 0.0), "score": scores[k], "quota": quota[k]}
             for k in sorted(quota)]
    result = {"run_id": run.id, "total": total, "unit": unit, "by": by, "rule": rule,
              "weights": {"w_baseline": wb, "w_gep": wg}, "baseline_from": default_base, "zones_from": source,
              "negative_gep_zones": negative_gep, "negative_gep_rule": NEGATIVE_GEP_RULE,
              "allocation": lines}
    result["policy_result_id"] = _store_result(store, run.id, "allocation", rule,
                                               {"total": total, "unit": unit, "by": by, "rule": rule,
                                                "baseline": None if baseline_file is None else str(baseline_file)}, result)
    return result
