"""Actual (used) GEP beside potential (supply) GEP: a post-step over the per-zone service results.

Each service's potential value in a zone is multiplied by the share of it that beneficiaries use
(Miyun 2020, Front. Ecol. Evol. 2024, doi 10.3389/fevo.2024.1367768; parameters with sources in
``accounting_rules/actual_use.toml``):

==========================  ===============================================================================
service                     used share
==========================  ===============================================================================
provisioning, recreation    1 (sold on a market); carbon sequestration 1 (global beneficiaries)
water conservation          min(1, water used (``water_use`` table, m³) / water conserved (m³))
water / air purification    min(1, pollutant load emitted (``emissions`` table, medium water / air, t) / t purified)
climate regulation          min(1, population × cooling demand per person (kWh) / kWh of cooling supplied)
flood regulation            min(1, population density / density of full use) — proxy for people and assets downstream
anything else, or input     the default use share (0.21, Miyun's actual / potential), unless the zone's
absent                      parent zone (township → county; parcel → township → county) has a measured share
==========================  ===============================================================================

A negative value (a net loss of the service in a zone) is counted in full (share 1), so that actual
≤ potential holds for every service and zone.

Population is the optional ``population`` raster of the catalog summed over each zone (persons per
pixel), else the zones' ``population`` attribute. The per-pixel service equations are not touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from ..grid import HA_PER_KM2
from .zonal import zone_sums_of


DEFAULT = "default"


@dataclass(frozen=True)
class UseParams:
    default_share: float
    full_use: tuple[str, ...]
    cooling_kwh_per_person: float
    flood_full_use_density: float
    citation: str


@lru_cache(maxsize=1)
def use_params() -> UseParams:
    from ..rules import load_rules_data

    d = load_rules_data("actual_use.toml")
    return UseParams(float(d["default_use_share"]["value"]), tuple(d["full_use"]["services"]),
                     float(d["cooling_demand_kwh_per_person"]["value"]), float(d["flood_full_use_density"]["value"]),
                     d["sources"]["miyun"]["citation"])


@dataclass
class Beneficiaries:
    """What the beneficiaries of one zone use; ``None`` = not known (the default share applies)."""

    area_km2: float = 0.0
    population: float | None = None
    water_use_m3: float | None = None
    emission_t: dict[str, float] = field(default_factory=dict)   # medium (air, water) → t emitted


def _bounded(demand: float, supply: float) -> float:
    if supply <= 0:
        return 1.0          # nothing supplied (or a net loss): nothing to bound, actual = potential
    return float(min(1.0, max(0.0, demand / supply)))


def use_shares(quantities: dict[str, float], ben: Beneficiaries, p: UseParams | None = None) -> dict[str, tuple[float, str]]:
    """Used share (0..1) and its basis for every service of one zone, from the zone's supplied quantities."""
    p = p or use_params()
    out: dict[str, tuple[float, str]] = {}
    for key, q in quantities.items():
        if key in p.full_use:
            out[key] = (1.0, "full use (market or global beneficiaries)")
        elif key == "water_conservation" and ben.water_use_m3 is not None:
            out[key] = (_bounded(ben.water_use_m3, q), "water used / water conserved")
        elif key == "water_purification" and "water" in ben.emission_t:
            out[key] = (_bounded(ben.emission_t["water"], q), "water pollutant load emitted / purified")
        elif key == "air_purification" and "air" in ben.emission_t:
            out[key] = (_bounded(ben.emission_t["air"], q), "air pollutant load emitted / purified")
        elif key == "climate_regulation" and ben.population is not None:
            out[key] = (_bounded(ben.population * p.cooling_kwh_per_person, q), "cooling demand of the population / cooling supplied")
        elif key == "flood_regulation" and ben.population is not None and ben.area_km2 > 0:
            out[key] = (float(min(1.0, ben.population / ben.area_km2 / p.flood_full_use_density)),
                        "population density / density of full use")
        else:
            out[key] = (p.default_share, DEFAULT)
    return out


# --------------------------------------------------------------------------------------------------
# the post-step of a run


def _table_sums(df, value: str, by: list[str]) -> dict:
    return df.groupby(by)[value].sum().to_dict() if df is not None and len(df) else {}


def zone_beneficiaries(inputs, zones: dict, zone_rows: list[dict]) -> dict[tuple[str, str], Beneficiaries]:
    """Beneficiaries of every zone from the catalog's optional inputs (``inputs.beneficiaries.BeneficiaryInputs``:
    ``water_use``, ``emissions``, ``population`` — each None when absent → ``None`` fields); ``zones``:
    kind → the engine's :class:`eco_value.engine.ZoneSums` (its ``weights`` weigh the population raster)."""
    w_by_zone = _table_sums(inputs.water_use, "water_use_m3", ["zone_id"])
    e_by_zone = _table_sums(inputs.emissions, "load_t", ["zone_id", "medium"])
    pop_by: dict[tuple[str, str], float] = {}
    if inputs.population is not None:
        a = inputs.population
        for kind, z in zones.items():
            s = zone_sums_of(z.weights, a)
            pop_by.update({(kind, zid): float(s[i]) for i, zid in enumerate(z.ids)})
    townships = [z["zone_id"] for z in zone_rows if z["kind"] == "township"]
    out = {}
    for z in zone_rows:
        k, zid = z["kind"], z["zone_id"]
        b = Beneficiaries(area_km2=z["area_ha"] / HA_PER_KM2)
        b.population = pop_by.get((k, zid), z.get("population"))
        if zid in w_by_zone:
            b.water_use_m3 = float(w_by_zone[zid])
        elif k == "county" and any(t in w_by_zone for t in townships):
            b.water_use_m3 = float(sum(w_by_zone.get(t, 0.0) for t in townships))
        for medium in ("air", "water"):
            if (zid, medium) in e_by_zone:
                b.emission_t[medium] = float(e_by_zone[(zid, medium)])
            elif k == "county" and any((t, medium) in e_by_zone for t in townships):
                b.emission_t[medium] = float(sum(e_by_zone.get((t, medium), 0.0) for t in townships))
        out[(k, zid)] = b
    return out


def apply_actual(result: dict, inputs, zones: dict) -> None:
    """Add ``used_share`` and ``actual_value_cny`` to every service row, actual GEP to the zone tables
    and ``summary['gep']['actual']`` (in place); ``zones``: kind → :class:`eco_value.engine.ZoneSums`."""
    p = use_params()
    rows = result["rows"]
    zone_rows = rows["zones"]
    parent = {}
    county_id = next((z["zone_id"] for z in zone_rows if z["kind"] == "county"), None)
    for z in zone_rows:
        if z["kind"] == "township":
            parent[("township", z["zone_id"])] = ("county", county_id)
        elif z["kind"] != "county":
            pid = z.get("parent_id") or ""
            parent[(z["kind"], z["zone_id"])] = ("township", pid) if pid else ("county", county_id)
    ben = zone_beneficiaries(inputs, zones, zone_rows)
    qty: dict[tuple[str, str], dict[str, float]] = {}
    for r in rows["service_results"]:
        qty.setdefault((r["zone_kind"], r["zone_id"]), {})[r["service"]] = r["quantity"]
    shares: dict[tuple[str, str], dict[str, tuple[float, str]]] = {}

    def share_of(zone: tuple[str, str]) -> dict[str, tuple[float, str]]:
        if zone not in shares:
            own = use_shares(qty.get(zone, {}), ben.get(zone, Beneficiaries()), p)
            up = parent.get(zone)
            if up is not None and (up in qty):
                ps = share_of(up)
                own = {k: (ps[k] if v[1] == DEFAULT and k in ps else v) for k, v in own.items()}
            shares[zone] = own
        return shares[zone]

    actual_by_zone: dict[tuple[str, str], float] = {}
    used, actual = [], []
    for r in rows["service_results"]:
        z = (r["zone_kind"], r["zone_id"])
        s, _basis = share_of(z)[r["service"]]
        if r["value_cny"] < 0:   # a net loss (disservice) is borne in full: actual = potential, never above it
            s = 1.0
        used.append(s)
        actual.append(r["value_cny"] * s)
        actual_by_zone[z] = actual_by_zone.get(z, 0.0) + actual[-1]
    set_column = getattr(rows["service_results"], "set_column", None)
    if set_column is not None:   # rows held as columns (engine.types.ColumnRows): their dicts are copies
        set_column("used_share", np.asarray(used, dtype=np.float64))
        set_column("actual_value_cny", np.asarray(actual, dtype=np.float64))
    else:
        for r, s, a in zip(rows["service_results"], used, actual):
            r["used_share"] = s
            r["actual_value_cny"] = a
    for kind, trows in result.get("tables", {}).items():
        if hasattr(trows, "set_column"):   # a table held as columns (the parcels'): one column added
            trows.set_column("gep_actual_cny", np.asarray([actual_by_zone.get((kind, zid), 0.0)
                                                           for zid in trows.column("zone_id")], dtype=np.float64))
            continue
        for t in trows:
            t["gep_actual_cny"] = actual_by_zone.get((kind, t["zone_id"]), 0.0)
    g = result["summary"]["gep"]
    cs = share_of(("county", county_id))
    share_of = None   # it calls itself (a reference cycle): freed now, not by a later gc, with its per-zone dicts
    by = {}
    for key, v in g["by_service"].items():
        s, basis = cs.get(key, (p.default_share, DEFAULT))
        if v["value_cny"] < 0:
            s, basis = 1.0, "net loss, borne in full"
        v["used_share"] = s
        v["actual_value_cny"] = v["value_cny"] * s
        by[key] = {"used_share": s, "value_cny": v["actual_value_cny"], "basis": basis}
    total = float(sum(x["value_cny"] for x in by.values()))
    g["actual_total_cny"] = total
    g["actual"] = {"total_cny": total, "share_of_potential": total / g["total_cny"] if g["total_cny"] else None,
                   "by_service": by, "default_use_share": p.default_share, "method": p.citation,
                   "inputs": list(inputs.names)}
