"""Calculation package of a crediting project for a CCER verifier (审定与核查): the tables a monitoring
report needs, as CSV plus a self-contained HTML summary (``eco_value.outputs.package_html``).

For CCER the national registry issues the units, not eco-value; what eco-value owes the verifier is
the calculation: strata and their areas, each parcel with its area, tenure evidence and every
eligibility rule's result and reason, carbon stocks by pool at each monitoring date, every parameter
with value, unit, source, verified flag and uncertainty, and the deductions from removals to credits
per vintage.

Stocks by pool. A run stores only the *total* stock per parcel (``stock_t1_tc``/``stock_t2_tc``). The
pools are recomputed here from the run's own stored inputs and rule set on the parcels' pixels (the
read ``eco_value.audit.explain`` does, with the same exact coverage weights the run used), using the
carbon engine's coefficient tables; every parcel's pool sum is checked against the stored total. This
is the smaller change: adding per-pool sums to the run would touch the valuation graph, the store
schema and the regression snapshot, and would not serve runs stored before it. Pools:

* above-ground biomass  = V · D · BEF · CF                     (stem-volume species groups)
* below-ground biomass  = V · D · BEF · R · CF
* living biomass, not split = per-area biomass · CF (bamboo, shrub) + class biomass · CF (non-forest
  types): the rule set gives whole-plant biomass and no root:shoot ratio for them, so eco-value does
  not invent a split
* dead organic matter (DOM) and soil organic carbon (SOC, 0-30 cm): per ecosystem type

Stocks are measured at the run's two inventories (1 January of t1 and 31 December of t2, the dates the
crediting attributes the stock change to, see ``methodology.run_span``); a monitoring date between them
gets the linear interpolation by days that the crediting itself uses, and is labelled so.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
from sqlmodel import select

from ..errors import EcoValueError
from ..rules import RuleSetError
from ..store.models import Issuance, Zone
from .methodology import meth_component, parse_period, run_span, vintage_days
from .projects import eligibility_lines, load_project

POOLS = ("above_ground_tc", "below_ground_tc", "biomass_unsplit_tc", "dead_organic_matter_tc", "soil_tc")
POOL_LABELS = {"above_ground_tc": ("above-ground biomass", "地上生物量"),
               "below_ground_tc": ("below-ground biomass", "地下生物量"),
               "biomass_unsplit_tc": ("living biomass, not split (bamboo, shrub, non-forest)", "生物量（未分地上地下）"),
               "dead_organic_matter_tc": ("dead organic matter", "枯落物与枯死木"),
               "soil_tc": ("soil organic carbon", "土壤有机碳")}
LUCC_NAMES = {1: "forest_remaining_forest", 2: "afforestation", 3: "deforestation", 4: "other", 5: "harvest"}
CREDITED_LUCC = {"afforestation": (2,), "forest_management": (1, 3, 5)}   # land-use change each component credits (run's LUCC)
POOL_SUM_REL = 1e-9          # pools must re-add to the run's stored total stock (float summation order only)
AGE_CLASS = "n/a (the run has no stand-age layer)"
DEDUCTION_FIELDS = ("removals_tco2e", "baseline_tco2e", "leakage_tco2e", "uncertainty_deduction_tco2e", "buffer_tco2e",
                    "credits_tco2e", "remainder_tco2e")


class PackageError(EcoValueError):
    """A calculation package cannot be made for this project or monitoring period."""


@dataclass
class Package:
    project: dict
    methodology: dict
    run: dict
    monitoring: tuple[str, str]
    synthetic: bool
    tables: dict[str, tuple[list[str], list[dict]]]     # file name -> (columns, rows)
    totals: dict
    notes: list[str]


# --- pixels and pools -------------------------------------------------------------------------------------
def _pixel_pools(rules, vals: dict, nodata_id: int) -> dict[str, dict[str, np.ndarray]]:
    """Per pixel, t C/ha of each pool at t1 and t2 (0 where the land cover is nodata at t1 or t2, as in the run)."""
    from ..carbon.stock import coefficients, species_code, volume_species
    from ..roles import FOREST_TYPE_T1, FOREST_TYPE_T2, LAND_COVER_T1, LAND_COVER_T2, VOLUME_T1, VOLUME_T2

    coef = coefficients(rules)
    ag_share = np.zeros_like(coef.k_vol_tc_per_m3)
    for key in volume_species(rules):
        ag_share[species_code(key)] = 1.0 / (1.0 + rules.value(f"carbon.species.{key}.root_shoot"))
    lc1, lc2 = vals[LAND_COVER_T1][0], vals[LAND_COVER_T2][0]
    valid = (lc1 != nodata_id) & (lc2 != nodata_id)
    out = {}
    for t, (vk, sk, lk) in (("t1", (VOLUME_T1, FOREST_TYPE_T1, LAND_COVER_T1)), ("t2", (VOLUME_T2, FOREST_TYPE_T2, LAND_COVER_T2))):
        v, vnod = vals[vk]
        sp, snod = vals[sk]
        lc, lnod = vals[lk]
        v = np.where(v != vnod, v.astype(np.float64), 0.0) if vnod is not None else v.astype(np.float64)
        sp = np.where(sp != snod, sp, 0).astype(np.int64) if snod is not None else sp.astype(np.int64)
        lc = np.where(lc != lnod, lc, 0).astype(np.int64)
        living = v * coef.k_vol_tc_per_m3[sp]
        ag = living * ag_share[sp]
        pools = {"above_ground_tc": ag, "below_ground_tc": living - ag,
                 "biomass_unsplit_tc": coef.area_tc_per_ha[sp] + coef.class_bio_tc_per_ha[lc],
                 "dead_organic_matter_tc": coef.class_dom_tc_per_ha[lc], "soil_tc": coef.class_soc_tc_per_ha[lc]}
        out[t] = {k: np.where(valid, x, 0.0) for k, x in pools.items()}
    return out


def _read_parcel_pixels(cat, parcels: list[tuple[str, object]]):
    """Exact coverage of every parcel on the run's grid (the weights the run used) and the carbon layers' pixels."""
    import geopandas as gpd

    from ..accounts.zonal import zone_weights
    from ..audit import read_cells
    from ..inputs.readers import reference_grid
    from ..inputs.sources import provided_layers
    from ..roles import (CHANGE_EVENT_T2, FOREST_TYPE_T1, FOREST_TYPE_T2, LAND_COVER_T1, LAND_COVER_T2, VOLUME_T1,
                         VOLUME_T2)

    grid = reference_grid(cat)
    gdf = gpd.GeoDataFrame({"pid": [p for p, _ in parcels]}, geometry=[g for _, g in parcels], crs=grid.crs)
    w = zone_weights(gdf, "pid", grid).flat()   # a project's parcels: flat (zone, pixel, coverage) arrays
    rows, cols = w.pixel // grid.width, w.pixel % grid.width
    keys = [LAND_COVER_T1, LAND_COVER_T2, FOREST_TYPE_T1, FOREST_TYPE_T2, VOLUME_T1, VOLUME_T2]
    if CHANGE_EVENT_T2 in cat.layers or (cat.sources and CHANGE_EVENT_T2 in provided_layers(cat)):
        keys.append(CHANGE_EVENT_T2)   # recorded change events (小班 change reasons), as the run read them
    vals = {k: read_cells(cat, k, rows, cols) for k in keys}
    return grid, w, vals


def _lucc(lc1: np.ndarray, lc2: np.ndarray, valid: np.ndarray, forest_ids, events: np.ndarray | None) -> np.ndarray:
    """The land-use-change category of each pixel as the engine assigns it: the land-cover differencing
    (``LUCC_NAMES``; 0 where either date is nodata), then the recorded change events override it through
    :func:`eco_value.carbon.lucc_with_events` (a harvested stand that stays forest is ``harvest``)."""
    import xarray as xr

    from ..carbon import LUCC, lucc_with_events
    from ..rules.events import change_events

    f1, f2 = np.isin(lc1, forest_ids), np.isin(lc2, forest_ids)
    lucc = np.where(f1 & f2, LUCC["forest_remaining_forest"], np.where(f2, LUCC["afforestation"],
                    np.where(f1, LUCC["deforestation"], LUCC["other"])))
    lucc = np.where(valid, lucc, 0).astype(np.uint8)
    if events is None:
        return lucc
    out = lucc_with_events(xr.DataArray(lucc), xr.DataArray(np.asarray(events, dtype=np.uint8)),
                           change_events().lucc_lut(LUCC))
    return np.asarray(out.values)


# --- the package ------------------------------------------------------------------------------------------
def _uncertainty_text(rules, name: str) -> str:
    try:
        lo, hi, dist, basis = rules.uncertainty_range(name)
    except (RuleSetError, TypeError, ValueError):   # no range of its own nor an evidence class: say so, never guess
        return "not stated"
    return f"95% {lo:.6g} to {hi:.6g} ({dist}; {basis})"


def _carbon_parameters(rules, species_ids: set[int], type_ids: set[int]) -> list[dict]:
    from ..carbon.stock import class_param, per_area_species, volume_species
    from ..rules.ecosystem import ecosystem_types, species_groups

    groups, types = species_groups(), ecosystem_types()
    names: list[tuple[str, str]] = []
    for key in volume_species(rules):
        if groups.id(key) in species_ids:
            names += [(f"carbon.species.{key}.{n}", f"above/below-ground biomass of {key}")
                      for n in ("wood_density", "bef", "root_shoot", "carbon_fraction")]
    for key in per_area_species(rules):
        if groups.id(key) in species_ids:
            names += [(f"carbon.per_area.{key}.{n}", f"living biomass of {key}") for n in ("biomass", "carbon_fraction")]
    for t in types:
        if t.id in type_ids:
            names += [(class_param(rules, t.name, n), f"{what} of {t.name}")
                      for n, what in (("biomass", "non-forest living biomass"), ("dom", "dead organic matter"),
                                      ("soc", "soil organic carbon"))]
    names += [("carbon.default_carbon_fraction", "carbon fraction of class biomass"),
              ("carbon.soil_transition_years", "soil carbon change (stock difference)"),
              ("constants.molar_ratio_co2_c", "t C to t CO2e")]
    out, seen = [], set()
    for n, used in names:
        if n in seen:
            continue
        seen.add(n)
        p = rules.param(n)
        out.append({"parameter": n, "value": p.value, "unit": p.unit, "source": p.source, "verified": p.verified,
                    "uncertainty": _uncertainty_text(rules, n), "from": f"rule set {rules.name}", "used_for": used})
    return out


def _monitoring(pr, run, monitoring: str | None) -> tuple[date, date]:
    s0, s1 = run_span(run.period_start, run.period_end)
    c0, c1 = date.fromisoformat(pr.start_date), date.fromisoformat(pr.crediting_end)
    if monitoring is None:
        d0, d1 = max(s0, c0), min(s1, c1)
        if d1 < d0:
            raise PackageError(f"project {pr.id}: the run's dates ({s0}..{s1}) and the crediting period ({c0}..{c1}) do not "
                               "overlap; give --monitoring START..END")
        return d0, d1
    d0, d1 = parse_period(monitoring)
    if d0 < c0 or d1 > c1:
        raise PackageError(f"--monitoring {d0}..{d1} is outside the crediting period of project {pr.id} ({c0}..{c1})")
    if d0 < s0 or d1 > s1:
        raise PackageError(f"--monitoring {d0}..{d1} is outside the dates run {run.id[:8]} measures ({s0}..{s1}: inventories "
                           f"of {run.period_start} and {run.period_end})")
    return d0, d1


def build_package(store, project_id: str, monitoring: str | None = None) -> Package:
    """Every table of the calculation package (nothing is written)."""
    from shapely import from_wkb

    from ..audit import run_context
    from ..rules.ecosystem import NODATA_ID, ecosystem_types, species_groups
    from ..roles import CHANGE_EVENT_T2, FOREST_TYPE_T1, FOREST_TYPE_T2, LAND_COVER_T1, LAND_COVER_T2

    pr, meth, facts, eligible = load_project(store, project_id)
    run, cat, rules, _opts, changed = run_context(store, pr.run_id)
    if changed:
        raise PackageError(f"run {run.id[:8]} of project {pr.id}: input layer(s) {', '.join(changed)} changed since the run "
                           "(SHA-256 differs from the run's manifest), so its stocks cannot be split into pools from them. "
                           "Fix: restore the run's inputs, or run a new valuation and create the project on it")
    d0, d1 = _monitoring(pr, run, monitoring)
    s0, s1 = run_span(run.period_start, run.period_end)
    ids = sorted(facts)
    with store.session() as s:
        zones = {z.zone_id: z for z in s.exec(select(Zone).where(Zone.run_id == run.id, Zone.kind == "parcel")).all()
                 if z.zone_id in facts}      # no IN (…) list: a project may hold more parcels than SQLite binds
    carbon = store.table("carbon", run.id)
    carbon = carbon[carbon.zone_kind == "parcel"].set_index("zone_id")
    lines: dict[str, dict[str, dict]] = {}
    for ln in eligibility_lines(store, project_id):
        lines.setdefault(ln["parcel_id"], {})[ln["rule"]] = ln
    rules_order = list(meth.eligibility)

    # parcels.csv --------------------------------------------------------------------------------------
    comp = meth_component(meth)
    pcols = ["parcel_id", "area_ha", "tenure_certificate", "holder_id", "forest_category", "planting_year", "afforested_ha",
             f"{comp}_removals_tco2e_per_yr", "eligible"]
    for r in rules_order:
        pcols += [f"{r}_pass", f"{r}_reason"]
    prow = []
    for pid in ids:
        f = facts[pid]
        row = {"parcel_id": pid, "area_ha": float(zones[pid].area_ha), "tenure_certificate": f.tenure_certificate,
               "holder_id": f.holder_id, "forest_category": f.forest_category,
               "planting_year": "" if f.planting_year is None else f.planting_year,
               "afforested_ha": f.afforested_m2 / 10_000.0, f"{comp}_removals_tco2e_per_yr": f.removals.get(comp, 0.0),
               "eligible": "yes" if eligible[pid] else "no"}
        for r in rules_order:
            ln = lines.get(pid, {}).get(r)
            row[f"{r}_pass"] = "" if ln is None else ("pass" if ln["passed"] else "FAIL")
            row[f"{r}_reason"] = "" if ln is None else ln["reason"]
        prow.append(row)

    # pixels: pools per parcel and per stratum -----------------------------------------------------------
    grid, w, vals = _read_parcel_pixels(cat, [(pid, from_wkb(zones[pid].geometry_wkb)) for pid in ids])
    pools = _pixel_pools(rules, vals, NODATA_ID)
    wha = w.coverage * grid.pixel_area_ha
    lc1, lc2 = vals[LAND_COVER_T1][0].astype(np.int64), vals[LAND_COVER_T2][0].astype(np.int64)
    sp2 = vals[FOREST_TYPE_T2][0].astype(np.int64)
    valid = (lc1 != NODATA_ID) & (lc2 != NODATA_ID)
    types, groups = ecosystem_types(), species_groups()
    tname = {t.id: t.name for t in types}
    gname = {g.id: g.name for g in groups}
    ev = vals[CHANGE_EVENT_T2][0] if CHANGE_EVENT_T2 in vals else None
    lucc = _lucc(lc1, lc2, valid, types.ids_under("forest"), ev).astype(np.int64)
    n = len(w.ids)
    by_parcel = {t: {k: np.bincount(w.zone, weights=wha * x, minlength=n) for k, x in pools[t].items()} for t in ("t1", "t2")}
    order = {pid: i for i, pid in enumerate(w.ids)}

    # strata: land-use change × ecosystem type at t1 and t2 × species group at t2 (× age class: none in the inputs)
    in_eligible = np.array([eligible[w.ids[z]] for z in range(n)])[w.zone]
    credited = in_eligible & np.isin(lucc, CREDITED_LUCC[comp]) & valid      # the land the methodology credits
    sp_key = np.where(sp2 != NODATA_ID, sp2, -1)
    m = valid
    uniq, inv = np.unique(np.stack([lucc[m], lc1[m], lc2[m], sp_key[m]], axis=1), axis=0, return_inverse=True)
    keys = {tuple(int(x) for x in k): i for i, k in enumerate(uniq)}
    skey = np.full(len(w.zone), -1, dtype=np.int64)
    skey[m] = np.asarray(inv).ravel()
    strata = sorted(keys.items(), key=lambda kv: (kv[0][0], tname.get(kv[0][1], ""), tname.get(kv[0][2], ""),
                                                   gname.get(kv[0][3], "")))
    sid = {}
    srow = []
    for j, (k, idx) in enumerate(strata, 1):
        sel = m & (skey == idx)
        name = f"S{j:02d}"
        sid[idx] = name
        srow.append({"stratum": name, "land_use_change": LUCC_NAMES[k[0]], "ecosystem_type_t1": tname.get(k[1], str(k[1])),
                     "ecosystem_type_t2": tname.get(k[2], str(k[2])), "species_group_t2": gname.get(k[3], "none"),
                     "age_class": AGE_CLASS, "area_ha": float(np.sum(wha[sel])),
                     "eligible_parcels_area_ha": float(np.sum(wha[sel & in_eligible])),
                     "credited_area_ha": float(np.sum(wha[sel & credited])),
                     "parcels": int(len(np.unique(w.zone[sel]))),
                     "eligible_parcels": int(len(np.unique(w.zone[sel & in_eligible])))})
    scols = list(srow[0]) if srow else ["stratum", "land_use_change", "ecosystem_type_t1", "ecosystem_type_t2",
                                        "species_group_t2", "age_class", "area_ha", "eligible_parcels_area_ha",
                                        "credited_area_ha", "parcels", "eligible_parcels"]
    by_stratum = {t: {k: np.bincount(np.where(m, skey, len(keys)), weights=wha * x, minlength=len(keys) + 1)[:len(keys)]
                      for k, x in pools[t].items()} for t in ("t1", "t2")}

    # stocks.csv: at each monitoring date (measured at the inventory dates, interpolated between) ---------
    span = (s1 - s0).days

    def at(d: date) -> tuple[float, str]:
        if d == s0:
            return 0.0, f"measured (inventory {run.period_start})"
        if d == s1:
            return 1.0, f"measured (inventory {run.period_end})"
        return (d - s0).days / span, f"interpolated by days between the inventories of {run.period_start} and {run.period_end}"

    dates = sorted({d0, d1} | ({s0} if d0 == s0 else set()) | ({s1} if d1 == s1 else set()))
    credited_pools = {t: {k: float(np.sum(wha[credited] * x[credited])) for k, x in pools[t].items()} for t in ("t1", "t2")}
    stcols = ["level", "id", "eligible", "date", "basis", *POOLS, "total_tc", "total_tco2e", "stored_total_tc"]
    strow = []
    co2 = rules.value("constants.molar_ratio_co2_c")
    stored_tot = {pid: (float(carbon.loc[pid, "stock_t1_tc"]), float(carbon.loc[pid, "stock_t2_tc"])) for pid in ids}
    project_pools = {d: dict.fromkeys(POOLS, 0.0) for d in dates}
    for d in dates:
        fr, basis = at(d)
        for pid in ids:
            i = order[pid]
            row = {"level": "parcel", "id": pid, "eligible": "yes" if eligible[pid] else "no", "date": d.isoformat(), "basis": basis}
            for k in POOLS:
                row[k] = (1 - fr) * by_parcel["t1"][k][i] + fr * by_parcel["t2"][k][i]
            row["total_tc"] = sum(row[k] for k in POOLS)
            row["total_tco2e"] = row["total_tc"] * co2
            a, b = stored_tot[pid]
            row["stored_total_tc"] = (1 - fr) * a + fr * b
            strow.append(row)
            if eligible[pid]:
                for k in POOLS:
                    project_pools[d][k] += row[k]
        for idx, name in sorted(sid.items(), key=lambda kv: kv[1]):
            row = {"level": "stratum", "id": name, "eligible": "", "date": d.isoformat(), "basis": basis}
            for k in POOLS:
                row[k] = (1 - fr) * by_stratum["t1"][k][idx] + fr * by_stratum["t2"][k][idx]
            row["total_tc"] = sum(row[k] for k in POOLS)
            row["total_tco2e"] = row["total_tc"] * co2
            row["stored_total_tc"] = ""
            strow.append(row)
        row = {"level": "credited land", "id": f"{pr.id}: {comp} land of eligible parcels", "eligible": "yes",
               "date": d.isoformat(), "basis": basis,
               **{k: (1 - fr) * credited_pools["t1"][k] + fr * credited_pools["t2"][k] for k in POOLS}}
        row["total_tc"] = sum(row[k] for k in POOLS)
        row["total_tco2e"] = row["total_tc"] * co2
        row["stored_total_tc"] = ""
        strow.append(row)
        row = {"level": "eligible parcels", "id": pr.id, "eligible": "yes", "date": d.isoformat(), "basis": basis,
               **project_pools[d]}
        row["total_tc"] = sum(project_pools[d].values())
        row["total_tco2e"] = row["total_tc"] * co2
        row["stored_total_tc"] = sum((1 - fr) * stored_tot[p][0] + fr * stored_tot[p][1] for p in ids if eligible[p])
        strow.append(row)

    bad = [(pid, t, float(sum(by_parcel[t][k][order[pid]] for k in POOLS)), stored_tot[pid][j]) for pid in ids
           for j, t in enumerate(("t1", "t2"))]
    bad = [b for b in bad if abs(b[2] - b[3]) > POOL_SUM_REL * max(abs(b[3]), 1.0)]
    if bad:
        shown = "; ".join(f"{p} at {t}: pools {x:,.6f} t C, stored {y:,.6f} t C" for p, t, x, y in bad[:5])
        raise PackageError(f"run {run.id[:8]}: the carbon pools recomputed from the run's inputs do not add up to the stored "
                           f"total stock for {len(bad)} parcel-date(s) ({shown}); the package would contradict the run. "
                           "Fix: re-run the valuation (`eco-value rerun` shows which stored results differ)")

    # parameters.csv -------------------------------------------------------------------------------------
    par = [{"parameter": p["name"], "value": p["value"], "unit": p["unit"], "source": p["source"],
            "citation": meth.sources.get(str(p["source"]).split(" ", 1)[0].rstrip(";,"), {}).get("citation", ""),
            "verified": p["verified"],
            "uncertainty": "not stated in the methodology file", "from": f"methodology {meth.code}-{meth.version}",
            "used_for": "eligibility" if p["name"].startswith("eligibility.") else "deductions"} for p in meth.parameters()]
    sp_ids = set(np.unique(vals[FOREST_TYPE_T1][0][valid]).tolist()) | set(np.unique(sp2[valid]).tolist())
    type_ids = set(np.unique(lc1[valid]).tolist()) | set(np.unique(lc2[valid]).tolist())
    par += _carbon_parameters(rules, sp_ids, type_ids)
    parcols = ["parameter", "value", "unit", "source", "citation", "verified", "uncertainty", "from", "used_for"]

    # deductions.csv: per vintage; issued where an issuance of this period exists, else the plan ----------
    drow = _deductions(store, pr, meth, facts, eligible, run, d0, d1)
    dcols = ["vintage", "days", *DEDUCTION_FIELDS, "status", "issuance_id"]

    totals = {k: sum(r[k] for r in drow) for k in DEDUCTION_FIELDS}
    totals |= {"parcels": len(ids), "eligible_parcels": sum(eligible.values()), "refused_parcels": len(ids) - sum(eligible.values()),
               "area_ha": sum(r["area_ha"] for r in prow), "eligible_parcels_area_ha": sum(r["area_ha"] for r in prow if r["eligible"] == "yes"),
               "credited_area_ha": sum(r["credited_area_ha"] for r in srow)}
    # removals tie to the stock change of the credited land: (ΔB + ΔDOM + ΔSOC·Δt/D_soil)·CO2/C over the inventories,
    # scaled to the monitoring period's days like the credits
    dt = float(run.period_end - run.period_start)
    dp = {k: credited_pools["t2"][k] - credited_pools["t1"][k] for k in POOLS}
    per_run = (sum(v for k, v in dp.items() if k != "soil_tc") + dp["soil_tc"] * dt / rules.value("carbon.soil_transition_years")) * co2
    totals["removals_from_stock_change_tco2e"] = per_run * ((d1 - d0).days + 1) / ((s1 - s0).days + 1)
    notes = [
        "Stocks by pool are recomputed from the run's stored inputs and rule set on each parcel's pixels (exact coverage "
        "weights, as the run used); stored_total_tc is the run's stored total stock.",
        "Living biomass of bamboo, shrub and non-forest types is not split into above- and below-ground: the rule set "
        "gives whole-plant biomass and no root:shoot ratio for them.",
        f"Age class: {AGE_CLASS}; strata are land-use change (the recorded change events override the land-cover "
        "differencing, as in the run) × ecosystem type (t1, t2) × species group (t2).",
        "Credits are units the national CCER registry issues; eco-value's figures are the calculation for verification.",
    ]
    tables = {"strata.csv": (scols, srow), "parcels.csv": (pcols, prow), "stocks.csv": (stcols, strow),
              "parameters.csv": (parcols, par), "deductions.csv": (dcols, drow)}
    summary = json.loads(run.summary_json or "{}")
    return Package(
        project={"id": pr.id, "name": pr.name, "developer": pr.developer, "start_date": pr.start_date,
                 "crediting_end": pr.crediting_end, "status": pr.status, "validation_body": pr.validation_body,
                 "validation_date": pr.validation_date},
        methodology={"id": meth.id, "code": meth.code, "version": meth.version, "title": meth.title, "title_zh": meth.title_zh,
                     "kind": meth.kind, "programme": meth.programme, "credits": meth.credits, "credits_zh": meth.credits_zh,
                     "baseline": meth.baseline.get("description", meth.baseline.get("kind", "")),
                     "buffer": meth.buffer.get("description", meth.buffer.get("kind", ""))},
        run={"id": run.id, "period": f"{run.period_start}..{run.period_end}", "rules": rules.name, "ruleset_hash": run.ruleset_hash},
        monitoring=(d0.isoformat(), d1.isoformat()), synthetic=bool(summary.get("synthetic_inputs") or cat.catalog.synthetic),
        tables=tables, totals=totals, notes=notes)


def _deductions(store, pr, meth, facts, eligible, run, d0: date, d1: date) -> list[dict]:
    from .methodology import credit_parcel_vintages

    with store.session() as s:
        issued = {i.vintage: i for i in s.exec(select(Issuance).where(
            Issuance.project_id == pr.id, Issuance.run_id == run.id, Issuance.monitoring_start == d0.isoformat(),
            Issuance.monitoring_end == d1.isoformat())).all()}
    planned: dict[int, dict] = {}
    for p in sorted(p for p, e in eligible.items() if e):
        for vc in credit_parcel_vintages(meth, facts[p], run.period_start, run.period_end, d0, d1):
            t = planned.setdefault(vc.vintage, dict.fromkeys(DEDUCTION_FIELDS, 0.0))
            for k, x in (("removals_tco2e", vc.gross), ("baseline_tco2e", vc.baseline), ("leakage_tco2e", vc.leakage),
                         ("uncertainty_deduction_tco2e", vc.uncertainty), ("buffer_tco2e", vc.buffer),
                         ("credits_tco2e", vc.issued), ("remainder_tco2e", vc.remainder)):
                t[k] += x
    out = []
    for v, days in vintage_days(d0, d1).items():
        i = issued.get(v)
        if i is not None:
            from .credits import verification_of
            with store.session() as s:
                ver = verification_of(s, i)
            row = {"removals_tco2e": i.gross_removals_tco2e, "baseline_tco2e": i.baseline_tco2e, "leakage_tco2e": i.leakage_tco2e,
                   "uncertainty_deduction_tco2e": i.uncertainty_deduction_tco2e, "buffer_tco2e": i.buffer_tco2e,
                   "credits_tco2e": i.net_issued_tco2e, "remainder_tco2e": i.remainder_tco2e,
                   "status": "issued, verified" if ver else "issued, pending verification", "issuance_id": i.id}
        else:
            row = {**planned.get(v, dict.fromkeys(DEDUCTION_FIELDS, 0.0)), "status": "not issued (calculated)", "issuance_id": ""}
            row["credits_tco2e"] = int(row["credits_tco2e"])
            row["buffer_tco2e"] = int(row["buffer_tco2e"])
        out.append({"vintage": v, "days": days, **row})
    return out


# --- writing ----------------------------------------------------------------------------------------------
def _cell(x) -> str:
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, (float, np.floating)):
        return repr(float(x))               # full precision: a verifier re-adds the columns
    if isinstance(x, np.integer):
        return str(int(x))
    return "" if x is None else str(x)


def write_package(pkg: Package, folder: Path) -> list[str]:
    """Write the five CSV tables (UTF-8 with BOM, so spreadsheet software reads the Chinese) and summary.html."""
    from ..outputs.package_html import render

    folder = Path(folder)
    names = []
    for name, (cols, rows) in pkg.tables.items():
        with open(folder / name, "w", encoding="utf-8-sig", newline="") as f:
            wr = csv.writer(f)
            wr.writerow(cols)
            for r in rows:
                wr.writerow([_cell(r.get(c, "")) for c in cols])
        names.append(name)
    (folder / "summary.html").write_text(render(pkg), encoding="utf-8")
    return names + ["summary.html"]
