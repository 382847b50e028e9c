"""Rows for the store and the run's summary from the computed per-zone sums (after the compute)."""

from __future__ import annotations

import hashlib

import numpy as np

from .. import gep_uncertainty as gep_mc
from ..carbon import LUCC
from ..carbon.uncertainty import approach1_pct, monte_carlo
from ..inputs.catalog import Catalog
from ..rules import RuleSet
from ..rules.ecosystem import ecosystem_types
from ..services import SERVICES
from .options import RunOptions
from .types import ColumnRows, RunSums


def _tenure(g: dict) -> dict:
    """A parcel's tenure columns (``inputs/tenure.py`` PARCEL_COLUMNS), empty without tenure records."""
    def text(k):
        v = g.get(k)
        return "" if v is None or v != v else str(v)
    mu = g.get("tenure_area_mu")
    return {"tenure_certificate": text("tenure_certificate"), "tenure_holder": text("tenure_holder"),
            "use_right_start": text("use_right_start"), "use_right_end": text("use_right_end"),
            "tenure_area_mu": None if mu is None or mu != mu else float(mu)}


def _column_rows(cols: dict[str, list], run_id: str, **constant) -> ColumnRows:
    """Rows of one store table from columns gathered kind by kind (number columns: a list of arrays)."""
    n = len(cols["zone_id"])
    out = {"run_id": [run_id] * n}
    for name, col in cols.items():
        out[name] = np.concatenate(col) if col and isinstance(col[0], np.ndarray) else col
    out.update({name: [value] * n for name, value in constant.items()})
    return ColumnRows(out)


def _table_columns(kind: str, ids: list[str], attrs: dict, c, services: dict, values: dict, nodata_ha: dict,
                   mc: dict) -> ColumnRows:
    """A zone table (the dict rows of :func:`assemble`, same columns in the same order, same numbers) as
    columns: ~30 Python floats in a dict per parcel took ~60 MB for 18,000 parcels."""
    def f64(a) -> np.ndarray:
        return np.asarray(a, dtype=np.float64).reshape(len(ids))

    area = f64(c.area_ha)
    cols: dict = {"zone_kind": [kind] * len(ids), "zone_id": list(ids), "area_ha": area}
    gep = np.zeros(len(ids))
    for key in services:
        v = f64(values[key])
        gep = gep + v   # summed service by service from 0.0, as the dict rows were
        cols[f"{key}_cny"] = v
        cols[f"{key}_nodata_ha"] = f64(nodata_ha[key])
    cols["gep_cny"] = gep
    with np.errstate(divide="ignore", invalid="ignore"):
        cols["gep_cny_per_km2"] = np.where(area > 0, gep / (area / 100.0), 0.0)
    cols.update({"carbon_stock_t2_tc": f64(c.carbon_stock_t2_tc), "net_sink_tco2e_per_yr": f64(c.carbon_sink_tco2e_per_yr),
                 "sink_ci95_low": f64(mc["low"]), "sink_ci95_high": f64(mc["high"])})
    for col in ("township_id", "holder_id", "holder_type"):
        cols[col] = [str(attrs[zid].get(col, "")) for zid in ids]
    return ColumnRows(cols)


def assemble(cat: Catalog, rules: RuleSet, opts: RunOptions, sums: RunSums, run_id: str, inputs) -> dict:
    """Rows, summary dict and zone tables from the computed per-zone sums (typed: :class:`.types.ZoneSums`)."""
    y1, y2 = cat.catalog.period
    services = sums.services
    price_year = opts.price_year or rules.meta.price_year or y2
    rows: dict[str, list[dict]] = {"zones": [], "service_results": [], "carbon_results": []}
    tables: dict[str, list[dict]] = {}
    mc_by_kind = {}
    zone_cols: dict[str, list] = {}
    svc_cols: dict[str, list] = {k: [] for k in ("zone_kind", "zone_id", "service", "unit", "quantity", "value_cny",
                                                 "nodata_px", "nodata_ha")}
    carbon_cols: dict[str, list] = {k: [] for k in ("zone_kind", "zone_id", "area_ha", "stock_t1_tc", "stock_t2_tc",
                                                    "net_sink_tco2e_per_yr", "ci95_low_tco2e_per_yr",
                                                    "ci95_high_tco2e_per_yr", "afforestation_tco2e_per_yr",
                                                    "deforestation_tco2e_per_yr", "forest_remaining_tco2e_per_yr",
                                                    "harvest_tco2e_per_yr")}
    for kind, c in sums.zones.items():
        gdf, id_field = c.polygons, c.id_field
        stats = c.sufficient_stats(float(y2 - y1))
        mc = monte_carlo(stats, rules, n=opts.mc_draws, seed=opts.mc_seed)
        mc_by_kind[kind] = (mc, approach1_pct(stats, rules) if kind == "county" else None, stats)
        attrs = gdf.drop(columns="geometry").assign(_id=gdf[id_field].astype(str)).set_index("_id").to_dict("index")
        geoms = dict(zip(gdf[id_field].astype(str), gdf.geometry.to_wkb()))
        ids = c.ids
        values = {key: c.value_cny(key) for key in services}
        nodata_ha = {key: c.nodata_ha(key) for key in services}
        # service rows as columns, zone by zone and in each zone service by service (the stored order)
        svc_cols["zone_kind"] += [kind] * (len(ids) * len(services))
        svc_cols["zone_id"] += [zid for zid in ids for _key in services]
        svc_cols["service"] += list(services) * len(ids)
        svc_cols["unit"] += [res.quantity_unit for res in services.values()] * len(ids)
        for col, per_service in (("quantity", c.quantity), ("value_cny", values.__getitem__),
                                 ("nodata_px", c.nodata_px), ("nodata_ha", nodata_ha.__getitem__)):
            svc_cols[col].append(np.stack([np.asarray(per_service(key), dtype=np.float64) for key in services], axis=1)
                                 .reshape(-1) if services else np.zeros(0))
        ls = c.sink_by_lucc
        for col, arr in (("area_ha", c.area_ha), ("stock_t1_tc", c.carbon_stock_t1_tc),
                         ("stock_t2_tc", c.carbon_stock_t2_tc), ("net_sink_tco2e_per_yr", c.carbon_sink_tco2e_per_yr),
                         ("ci95_low_tco2e_per_yr", mc["low"]), ("ci95_high_tco2e_per_yr", mc["high"]),
                         ("afforestation_tco2e_per_yr", ls[:, LUCC["afforestation"]]),
                         ("deforestation_tco2e_per_yr", ls[:, LUCC["deforestation"]]),
                         ("forest_remaining_tco2e_per_yr", ls[:, LUCC["forest_remaining_forest"]]),
                         ("harvest_tco2e_per_yr", ls[:, LUCC["harvest"]])):
            carbon_cols[col].append(np.asarray(arr, dtype=np.float64).reshape(len(ids)))
        carbon_cols["zone_kind"] += [kind] * len(ids)
        carbon_cols["zone_id"] += ids
        trows = []
        columnar = kind == "parcel"   # the table that grows with parcels is held as columns (issue 17)
        for zi, zid in enumerate(ids):
            g = attrs[zid]
            wkb = geoms[zid]
            area = float(c.area_ha[zi])
            pop = g.get("population")
            for name, value in dict(
                run_id=run_id, kind=kind, zone_id=zid,
                parent_id=str(g.get("township_id", "")) if kind == "parcel" else "",
                name=str(g.get("name", g.get("name_en", ""))) if kind != "parcel" else "",
                holder_id=str(g.get("holder_id", "")) if kind == "parcel" else "",
                holder_type=str(g.get("holder_type", "")) if kind == "parcel" else "",
                other_programme=str(g.get("other_programme", "none")) if kind == "parcel" else "",
                **_tenure(g if kind == "parcel" else {}),   # every row the same keys (one bulk insert)
                area_ha=area, population=int(pop) if pop is not None and pop == pop else None,
                geometry_sha256=hashlib.sha256(wkb).hexdigest(), geometry_wkb=wkb).items():
                zone_cols.setdefault(name, []).append(value)   # as columns: no dict per zone kept
            if columnar:
                continue
            row = {"zone_kind": kind, "zone_id": zid, "area_ha": area}
            gep = 0.0
            for key in services:
                v = float(values[key][zi])
                gep += v
                row[f"{key}_cny"] = v
                row[f"{key}_nodata_ha"] = float(nodata_ha[key][zi])
            row["gep_cny"] = gep
            row["gep_cny_per_km2"] = gep / (area / 100.0) if area > 0 else 0.0
            sink = float(c.carbon_sink_tco2e_per_yr[zi])
            row.update({"carbon_stock_t2_tc": float(c.carbon_stock_t2_tc[zi]), "net_sink_tco2e_per_yr": sink,
                        "sink_ci95_low": float(mc["low"][zi]), "sink_ci95_high": float(mc["high"][zi])})
            if kind == "parcel":
                row.update({"township_id": str(g.get("township_id", "")), "holder_id": str(g.get("holder_id", "")),
                            "holder_type": str(g.get("holder_type", ""))})
            trows.append(row)
        tables[kind] = _table_columns(kind, ids, attrs, c, services, values, nodata_ha, mc) if columnar else trows
    attrs = geoms = trows = None   # the last kind's (the parcels') per-zone dicts, not kept through the Monte Carlo
    rows["zones"] = ColumnRows(zone_cols)
    rows["service_results"] = _column_rows(svc_cols, run_id, price_year=price_year)
    rows["carbon_results"] = _column_rows(carbon_cols, run_id, period_start=y1, period_end=y2)

    county = sums["county"]
    mc, a1, stats = mc_by_kind["county"]
    area_ha = float(county.area_ha[0])
    ca2 = county.type_area_ha(2)[0]
    by_service = {}
    for key, res in services.items():
        by_service[key] = {"quantity": float(county.quantity(key)[0]), "unit": res.quantity_unit,
                           "value_cny": float(county.value_cny(key)[0]), "name_zh": SERVICES[key].SPEC.name_zh,
                           "category": SERVICES[key].SPEC.category,
                           "nodata_px": float(county.nodata_px(key)[0]), "nodata_ha": float(county.nodata_ha(key)[0])}
    total = float(sum(v["value_cny"] for v in by_service.values()))
    types = ecosystem_types()
    type_names = types.position_names()
    by_class: dict[str, dict[str, float]] = {}
    by_class_q: dict[str, dict[str, float]] = {}
    for key in services:
        arr = county.by_type(key, "value_cny")[0]
        arq = county.by_type(key, "quantity")[0]
        for pos in range(1, types.n_positions):
            if arr[pos] != 0 or arq[pos] != 0:
                by_class.setdefault(type_names[pos], {})[key] = float(arr[pos])
                by_class_q.setdefault(type_names[pos], {})[key] = float(arq[pos])
    population = None
    bgdf = county.polygons
    if "population" in bgdf.columns:
        population = int(bgdf["population"].iloc[0])
    ca1 = county.type_area_ha(1)[0]

    def level1_areas(ca) -> dict[str, float]:   # by level-1 type, sub-types included
        out = {t.name: 0.0 for t in types.level1()}
        for t in types:
            out[t.level1] += float(ca[types.positions[t.name]])
        return out

    area1, area2 = level1_areas(ca1), level1_areas(ca2)
    forest_ha = area2["forest"]
    summary = {
        "run_id": run_id,
        "region": cat.catalog.region,
        "adcode": cat.catalog.adcode,
        "name_zh": cat.catalog.name_zh,
        "synthetic_inputs": bool(cat.catalog.synthetic),
        "period": [y1, y2],
        "rules": {"name": rules.name, "hash": rules.content_hash},
        "area_km2": area_ha / 100.0,
        "carbon": {
            "net_sink_tco2e_per_yr": float(county.carbon_sink_tco2e_per_yr[0]),
            "ci95_tco2e_per_yr": [float(mc["low"][0]), float(mc["high"][0])],
            "mc_mean_tco2e_per_yr": float(mc["mean"][0]),
            "mc_draws": int(mc["n"]),
            "mc_seed": int(mc["seed"]),
            "approach1_ci95_pct": float(a1[0]) if a1 is not None else None,
            "stock_tc": float(county.carbon_stock_t2_tc[0]),
            "stock_t1_tc": float(county.carbon_stock_t1_tc[0]),
            "by_lucc_tco2e_per_yr": {k: float(county.sink_by_lucc[0][v]) for k, v in LUCC.items()},
            "by_lucc_area_ha": {k: float(county.area_by_lucc[0][v]) for k, v in LUCC.items()},
            "forest_sink_tco2e_per_ha_yr": float(county.sink_by_lucc[0][LUCC["forest_remaining_forest"]]) /
                                           max(float(county.area_by_lucc[0][LUCC["forest_remaining_forest"]]), 1e-9),
        },
        "gep": {"total_cny": total, "by_service": by_service, "price_year": price_year,
                "cny_per_km2": total / (area_ha / 100.0), "per_capita_cny": total / population if population else None,
                "by_land_cover_cny": by_class, "by_land_cover_quantity": by_class_q},
        "extent": {f"area_ha_by_class_{y2}": area2,
                   f"area_ha_by_class_{y1}": area1,
                   "forest_coverage_pct": 100.0 * forest_ha / area_ha,
                   "forest_and_shrub_coverage_pct": 100.0 * (forest_ha + area2["shrub"]) / area_ha},
        "population": population,
    }
    u = summary["gep"]["uncertainty"] = gep_mc.for_run(rules, county, stats, by_service, price_year,
                                                       opts.mc_draws, opts.mc_seed)
    rows["gep_intervals"] = gep_mc.attach_zone_intervals(   # townships' GEP intervals: summary, tables, store
        u, rules, sums.zones, {k: v[2] for k, v in mc_by_kind.items()}, tables, run_id, price_year,
        opts.mc_draws, opts.mc_seed)
    return {"rows": rows, "summary": summary, "tables": tables}
