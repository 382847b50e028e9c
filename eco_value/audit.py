"""Audit for researchers: follow one number back to its pixels, parameters and sources; re-run a run.

* :func:`explain` recomputes one parcel's (or one pixel's) carbon sink and water conservation from
  the raw input pixels with exact coverage weights, printing every intermediate sum, every parameter
  with unit and source, and the final figure next to the stored one.
* :func:`rerun` recomputes a stored run from its manifest (catalog, the run's own stored rule set,
  options) without storing anything, and compares every stored result bit for bit.
"""

from __future__ import annotations

import json

import numpy as np
import rasterio
import shapely
from rasterio.windows import Window

from .errors import EcoValueError, InputError, Problem, StoreError
from .inputs.catalog import legacy_layer_key
from .inputs.remote import HASH_ETAG_SIZE, content_id
from .inputs.schemes import load_scheme
from .engine import valuate
from .pipeline import input_manifest, stored_run_context
from .roles import FOREST_TYPE_T1, FOREST_TYPE_T2, LAND_COVER_T1, LAND_COVER_T2, VOLUME_T1, VOLUME_T2
from .rules import RuleSet
from .rules.ecosystem import NODATA_ID, ecosystem_types, species_groups
from .carbon.stock import net_sink_tco2e_per_ha_yr, volume_to_carbon_tc_per_m3
from .services.base import price_factor
from .services.water_conservation import water_conservation_m3

CARBON_LAYERS = (LAND_COVER_T1, LAND_COVER_T2, FOREST_TYPE_T1, FOREST_TYPE_T2, VOLUME_T1, VOLUME_T2,
                 "precip", "aet")


def run_context(store, run_id: str, manifest: list | None = None):
    """The stored run, its catalog, rules, options and the inputs changed since (each compared in the
    hash kind the run recorded); ``manifest`` receives the inputs' rows as they are now."""
    run, cat, rules, opts = stored_run_context(store, run_id, "explaining or re-running")
    stored = store.table("inputs", run.id)
    period = (run.period_start, run.period_end)
    kinds = {_current_key(r["layer"], period): r.get("hash_kind") for r in stored.to_dict("records")}
    rows = input_manifest(cat, kinds)
    if manifest is not None:
        manifest.extend(rows)
    now = {r["layer"]: content_id(r) for r in rows}
    # runs stored before layers were keyed by role@period name them by year (lulc_2020)
    changed = sorted(r["layer"] for r in stored.to_dict("records")
                     if now.get(_current_key(r["layer"], period)) != content_id(r))
    return run, cat, rules, opts, changed


def _refuse_changed_remote(store, run, manifest: list[dict]) -> None:
    """A remote input whose content (SHA-256, or ETag + size) differs from the stored one refuses the
    re-run: the file the run read is gone from the server."""
    now = {r["layer"]: r for r in manifest}
    period = (run.period_start, run.period_end)
    probs = []
    for old in store.table("inputs", run.id).to_dict("records"):
        new = now.get(_current_key(old["layer"], period))
        if new is None or "://" not in new["path"] or content_id(new) == content_id(old):
            continue
        if old.get("hash_kind") == HASH_ETAG_SIZE or new["hash_kind"] == HASH_ETAG_SIZE:
            what = (f"ETag {old.get('etag') or '-'} and size {old['size_bytes']:,} B when run {run.id} was made, "
                    f"now ETag {new['etag'] or '-'} and size {new['size_bytes']:,} B")
        else:
            what = f"SHA-256 {old['sha256'][:16]}… when run {run.id} was made, now {new['sha256'][:16]}…"
        probs.append(Problem("remote-input-changed", new["path"], old["layer"],
                             f"the remote file changed since the run ({what}), so the run cannot be re-run from it",
                             "restore the file the run read on the server (or point the catalog at a copy of it), "
                             "or value the current file in a new run with `eco-value run`"))
    if probs:
        raise InputError(probs)


def _cells_of(cat, geom) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, cols and coverage fractions of a polygon on the catalog's reference grid (exactextract)."""
    import geopandas as gpd
    from exactextract import exact_extract

    ref = cat.path_of(cat.layers[cat.catalog.reference_layer].path)
    with rasterio.open(ref) as ds:
        width, crs = ds.width, ds.crs
    gdf = gpd.GeoDataFrame({"id": ["x"]}, geometry=[geom], crs=crs)
    df = exact_extract(str(ref), gdf, ["cell_id", "coverage"], output="pandas")
    cell = np.asarray(df["cell_id"][0], dtype=np.int64)
    return cell // width, cell % width, np.asarray(df["coverage"][0], dtype=np.float64)


def _current_key(layer: str, period) -> str:
    try:
        return legacy_layer_key(layer, period)
    except ValueError:
        return layer


def read_cells(cat, key, rows, cols) -> np.ndarray:
    """The pixels of one layer (categorical layers translated to engine ids, nodata 255)."""
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    if key not in cat.layers:   # a layer that [sources] provide (小班, DLTB, product): read lazily, one window
        from .inputs.readers import open_layers

        arr = open_layers(cat, keys=[key])[0][key]
        return np.asarray(arr[r0:r1, c0:c1].values)[rows - r0, cols - c0], arr.attrs.get("nodata")
    spec = cat.layers[key]
    with rasterio.open(cat.path_of(spec.path)) as ds:
        a = ds.read(spec.band, window=Window(c0, r0, c1 - c0, r1 - r0))
        nod = ds.nodata if ds.nodata is not None else spec.nodata
    v = a[rows - r0, cols - c0]
    if spec.scheme:
        return load_scheme(spec.scheme).translate(v, nod), NODATA_ID
    return v, nod


def _p(rules: RuleSet, name: str) -> dict:
    p = rules.param(name)   # a stored rule set that predates the parameter: RuleSetError naming it and the run
    return {"name": name, "value": p.value, "unit": p.unit, "source": p.source, "verified": p.verified}


def explain(store, run_id: str, parcel: str | None = None, pixel: tuple[float, float] | None = None) -> dict:
    """The chain behind one parcel's (or pixel's) carbon sink and water conservation."""
    run, cat, rules, _opts, changed = run_context(store, run_id)
    if (parcel is None) == (pixel is None):
        raise EcoValueError("give exactly one of --parcel ID or --pixel X,Y (map coordinates in the run's CRS)")
    with rasterio.open(cat.path_of(cat.layers[cat.catalog.reference_layer].path)) as ds:
        area_m2 = abs(ds.transform.a * ds.transform.e)
        transform = ds.transform
    stored = {}
    if parcel is not None:
        zones = store.table("zones", run.id)
        z = zones[(zones.kind == "parcel") & (zones.zone_id == parcel)]
        if z.empty:
            raise StoreError(f"parcel '{parcel}' is not in run {run.id}")
        from .store.models import Zone
        from sqlmodel import select
        with store.session() as s:
            wkb = s.exec(select(Zone.geometry_wkb).where(Zone.run_id == run.id, Zone.kind == "parcel",
                                                         Zone.zone_id == parcel)).first()
        rows, cols, cov = _cells_of(cat, shapely.from_wkb(wkb))
        c = store.table("carbon", run.id)
        stored["net_sink_tco2e_per_yr"] = float(c[(c.zone_kind == "parcel") & (c.zone_id == parcel)].net_sink_tco2e_per_yr.iloc[0])
        sv = store.table("services", run.id)
        sv = sv[(sv.zone_kind == "parcel") & (sv.zone_id == parcel)]
        stored["services"] = {r.service: {"quantity": r.quantity, "unit": r.unit, "value_cny": r.value_cny} for r in sv.itertuples()}
        target = {"parcel": parcel, "holder_id": z.holder_id.iloc[0], "holder_type": z.holder_type.iloc[0]}
    else:
        col, row = ~transform * pixel
        rows, cols, cov = np.array([int(row)]), np.array([int(col)]), np.array([1.0])
        target = {"pixel": {"x": pixel[0], "y": pixel[1], "row": int(row), "col": int(col)}}
    vals = {k: read_cells(cat, k, rows, cols) for k in CARBON_LAYERS}
    valid = (vals[LAND_COVER_T1][0] != vals[LAND_COVER_T1][1]) & (vals[LAND_COVER_T2][0] != vals[LAND_COVER_T2][1])
    w_ha = cov * area_m2 / 1e4 * valid
    y1, y2 = cat.catalog.period
    dt = float(y2 - y1)
    # --- carbon: sufficient statistics read from the pixels -----------------------------------
    terms = []
    total_c = 0.0
    groups = species_groups()
    per_area = {g.name for g in groups.per_area_groups(rules)}
    volume = {g.name for g in groups.volume_groups(rules)}
    for group in groups:
        code, key = group.id, group.name
        if key not in per_area and key not in volume:
            continue
        sp1, sp2 = vals[FOREST_TYPE_T1][0], vals[FOREST_TYPE_T2][0]
        v1 = np.clip(vals[VOLUME_T1][0].astype(np.float64), 0, None)
        v2 = np.clip(vals[VOLUME_T2][0].astype(np.float64), 0, None)
        if key in per_area:
            sa1 = float(np.sum(w_ha * (sp1 == code)))
            sa2 = float(np.sum(w_ha * (sp2 == code)))
            if sa1 == 0 and sa2 == 0:
                continue
            pb, pc = _p(rules, f"carbon.per_area.{key}.biomass"), _p(rules, f"carbon.per_area.{key}.carbon_fraction")
            a = pb["value"] * pc["value"]
            # the engine's stock-difference equation on the parcel's summed area (biomass only, in t C)
            term = net_sink_tco2e_per_ha_yr(a * sa1, a * sa2, 0.0, 0.0, 0.0, 0.0, dt, 1.0, 1.0)
            terms.append({"what": f"{key} per-area biomass", "equation": "B * CF * (A_t2 - A_t1) / dt",
                          "inputs": {"A_t1_ha": sa1, "A_t2_ha": sa2, "dt_yr": dt}, "parameters": [pb, pc],
                          "result_tc_per_yr": term})
        else:
            sv1 = float(np.sum(w_ha * v1 * (sp1 == code)))
            sv2 = float(np.sum(w_ha * v2 * (sp2 == code)))
            if sv1 == 0 and sv2 == 0:
                continue
            ps = [_p(rules, f"carbon.species.{key}.{n}") for n in ("wood_density", "bef", "root_shoot", "carbon_fraction")]
            k = volume_to_carbon_tc_per_m3(*(x["value"] for x in ps))
            # the engine's stock-difference equation on the parcel's summed volume (biomass only)
            term = net_sink_tco2e_per_ha_yr(k * sv1, k * sv2, 0.0, 0.0, 0.0, 0.0, dt, 1.0, 1.0)
            terms.append({"what": f"{key} ({code}) living biomass from volume", "equation": "D * BEF * (1 + R) * CF * (SV_t2 - SV_t1) / dt",
                          "inputs": {"SV_t1_m3": sv1, "SV_t2_m3": sv2, "dt_yr": dt}, "parameters": ps,
                          "intermediate": {"k_tc_per_m3": k}, "result_tc_per_yr": term})
        total_c += term
    cf = _p(rules, "carbon.default_carbon_fraction")
    soil_t = _p(rules, "carbon.soil_transition_years")
    types = ecosystem_types()
    for t in types:
        name, code = t.name, t.id
        ca1 = float(np.sum(w_ha * (vals[LAND_COVER_T1][0] == code)))
        ca2 = float(np.sum(w_ha * (vals[LAND_COVER_T2][0] == code)))
        if ca1 == ca2:
            continue
        pb, pd_, ps = (_p(rules, types.required_param(rules, "carbon.class", name, n)) for n in ("biomass", "dom", "soc"))
        bio = pb["value"] * cf["value"]
        term = net_sink_tco2e_per_ha_yr(bio * ca1, bio * ca2, pd_["value"] * ca1, pd_["value"] * ca2, ps["value"] * ca1,
                                        ps["value"] * ca2, dt, soil_t["value"], 1.0)
        terms.append({"what": f"land-use change: {name}", "equation": "(B_class * CF + DOM) * dA / dt + SOC * dA / D_soil",
                      "inputs": {"A_t1_ha": ca1, "A_t2_ha": ca2, "dt_yr": dt}, "parameters": [pb, cf, pd_, ps, soil_t],
                      "result_tc_per_yr": term})
        total_c += term
    ratio = _p(rules, "constants.molar_ratio_co2_c")
    carbon = {"terms": terms, "sum_tc_per_yr": total_c, "co2_per_c": ratio,
              "net_sink_tco2e_per_yr": total_c * ratio["value"],
              "stored_net_sink_tco2e_per_yr": stored.get("net_sink_tco2e_per_yr")}
    # --- water conservation ------------------------------------------------------------------------
    p = vals["precip"][0].astype(np.float64)
    et = vals["aet"][0].astype(np.float64)
    lc = vals[LAND_COVER_T2][0]
    w_m2 = cov * area_m2 * valid
    wc_terms = []
    q = 0.0
    for t in types:
        pname = types.param_name(rules, "gep.water_conservation.runoff_coefficient", t.name)
        m = lc == t.id
        if pname is None or not m.any():
            continue
        name = t.name
        sp = float(np.sum(w_m2 * p * m))
        se = float(np.sum(w_m2 * et * m))
        a = _p(rules, pname)
        qq = float(water_conservation_m3(sp, se, a["value"], 1.0))   # the engine's equation on Σ A·P, Σ A·ET
        wc_terms.append({"class": name, "inputs": {"sum_A_P_m2mm": sp, "sum_A_ET_m2mm": se}, "parameters": [a],
                         "equation": "(sum A*P - alpha * sum A*P - sum A*ET) / 1000", "result_m3": qq})
        q += qq
    price = _p(rules, "gep.water_conservation.price")
    py = int(rules.value("gep.water_conservation.price_year"))
    to_year = json.loads(run.options_json).get("price_year") or rules.meta.price_year or y2
    f = price_factor(rules, py, to_year)
    water = {"terms": wc_terms, "quantity_m3": q, "price": price, "price_index_factor": f,
             "price_index": {"from_year": py, "to_year": to_year, "parameter": _p(rules, "gep.price_index.cpi")},
             "value_cny": q * price["value"] * f,
             "stored": stored.get("services", {}).get("water_conservation")}
    return {"run_id": run.id, "target": target, "rules": {"name": rules.name, "hash": rules.content_hash},
            "inputs_changed_since_run": changed, "pixels": int(len(cov)), "pixel_area_m2": area_m2,
            "carbon": carbon, "water_conservation": water, "services_stored": stored.get("services")}


def rerun(store, run_id: str, progress=None) -> dict:
    """Recompute a stored run from its manifest and compare every stored result bit for bit."""
    inputs: list[dict] = []
    run, cat, rules, opts, changed = run_context(store, run_id, inputs)
    _refuse_changed_remote(store, run, inputs)
    result = valuate(cat, rules, opts, run.id, inputs, say=progress)
    mism = []
    n = 0
    for table, key_cols, fields in (
        ("services", ("zone_kind", "zone_id", "service"), ("quantity", "value_cny")),
        ("carbon", ("zone_kind", "zone_id"), ("stock_t1_tc", "stock_t2_tc", "net_sink_tco2e_per_yr",
                                               "ci95_low_tco2e_per_yr", "ci95_high_tco2e_per_yr")),
    ):
        new = {tuple(r[k] for k in key_cols): r for r in result.rows["service_results" if table == "services" else "carbon_results"]}
        old = store.table(table, run.id)
        for r in old.to_dict("records"):
            k = tuple(r[c] for c in key_cols)
            nr = new.get(k)
            for fld in fields:
                n += 1
                if nr is None or nr[fld] != r[fld]:
                    mism.append({"table": table, "key": list(k), "field": fld, "stored": r[fld],
                                 "recomputed": None if nr is None else nr[fld]})
        if len(new) != len(old):
            mism.append({"table": table, "problem": f"{len(old)} stored rows, {len(new)} recomputed"})
    return {"run_id": run.id, "matches": not mism, "values_compared": n, "mismatches": mism[:50],
            "inputs_changed_since_run": changed}


def explain_policy(store, policy_id: str) -> dict:
    """The chain of a stored policy result: its inputs, rule, formula and figures."""
    from .store.models import PolicyResult
    from .store.queries import check_lookup_id, prefix_matches

    check_lookup_id(policy_id, "policy result id", "ids are printed by value-unit, damage and allocate")
    with store.session() as s:
        r = s.get(PolicyResult, policy_id)
        if r is None:
            cands = prefix_matches(s, PolicyResult, policy_id)
            r = cands[0] if len(cands) == 1 else None
    if r is None:
        raise StoreError(f"no policy result '{policy_id}'")
    d = json.loads(r.result_json)
    p = json.loads(r.params_json)
    chain = [f"{r.kind} {r.id} on run {r.run_id}, rule {r.rule}, inputs {p}"]
    if r.kind == "unit_value":
        chain += [f"GEP inside the unit = Σ over pixels of coverage × service value = {d['gep_total_cny']:,.2f} CNY/yr "
                  f"(area {d['area_ha']:,.3f} ha, exact weights at the edges)"]
        chain += [f"  {k}: {v['quantity']:,.4f} {v['unit']} → {v['value_cny']:,.2f} CNY" for k, v in d["by_service"].items()]
        chain += [f"market-realisable = provisioning + recreation + creditable carbon ({d['creditable_carbon_cny']:,.2f}) = "
                  f"{d['market_realisable_cny']:,.2f}; public good = {d['public_good_cny']:,.2f}"]
        if "present_value_cny" in d:
            chain += [f"PV = V × (1 − (1 + r)^−N) / r with V = {d['gep_total_cny']:,.2f}, r = {d['discount_rate']}, N = {d['years']} "
                      f"= {d['present_value_cny']:,.2f} CNY"]
    elif r.kind == "damage":
        chain += [f"yearly loss = Σ_services (before − after inside the polygon) = {d['yearly_gep_loss_cny']:,.2f} CNY/yr"]
        chain += [f"  {k}: {v['quantity']:,.4f} {v['unit']} → {v['value_cny']:,.2f} CNY" for k, v in d["by_service"].items()]
        chain += [f"interim loss = Σ_(t=0..N−1) L × (1 − t/N) / (1 + r)^t with L = {d['yearly_gep_loss_cny']:,.2f}, "
                  f"N = {d['recovery_years']}, r = {d['discount_rate']} = {d['interim_loss_cny']:,.2f}",
                  f"carbon stock lost = {d['carbon_stock_lost_tco2e']:,.3f} t CO2e × price = {d['carbon_stock_lost_value_cny']:,.2f}",
                  f"compensation = {d['compensation_cny']:,.2f} CNY"]
    else:
        w = d["weights"]
        chain += [f"score_i = {w['w_baseline']} × baseline_i / Σ baseline + {w['w_gep']} × GEP_i / Σ GEP (baseline: {d['baseline_from']})",
                  f"quota_i = largest remainder of {d['total']} × score_i / Σ score (whole units, sum exactly {d['total']} {d['unit']})"]
        chain += [f"  {x['zone_id']}: baseline {x['baseline']:,.2f}, GEP {x['gep_cny']:,.2f} → score {x['score']:.6f} → {x['quota']:,}"
                  for x in d["allocation"]]
    return {"policy_result_id": r.id, "kind": r.kind, "params": p, "result": d, "chain": chain}
