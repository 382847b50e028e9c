"""Forest tenure records (林权证 / 不动产权证书) joined to sub-compartments.

::

    from eco_value.inputs import tenure
    rec = tenure.read_tenure("linquan.csv")            # or a Shapefile/GeoPackage of the 宗地
    joined = tenure.join_tenure(parcels, rec)           # parcels from inventory.read_inventory
    joined.records      # one row per certificate with its xiaoban_id and how it was matched
    joined.unmatched    # every record that found no (or no single) 小班, with the reason
    parcels = tenure.attach(parcels, joined)            # certificates, holders, use-right dates per 小班

Join rule: the record's (LB, XB), each zero-padded to the inventory's 林班 / 小班 widths, against the
inventory's (lin_ban, xiao_ban). LB/XB are unique only within a village; a pair that matches several
小班 is ambiguous: records with a geometry then go to the 小班 containing the record's representative
point, others are reported unmatched. Field names and the area unit (亩 by default) are data
(``raster_inputs/fieldmaps/tenure-national.toml``).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from ..errors import InputError, Problem
from .inventory import HA_PER_UNIT, fieldmaps_dir, load_toml
from .schemes import normalise_code
from .vectors import missing_fields, read_table, read_vector

_DATE = re.compile(r"^\s*(\d{4})\s*[-/.年]?\s*(\d{1,2})\s*[-/.月]?\s*(\d{1,2})\s*日?")


def parse_date(value) -> date | None:
    """``2008-01-01``, ``2008/1/1``, ``20080101``, ``2008年1月1日`` or a date/datetime; None if empty."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT:
        return None
    if isinstance(value, (pd.Timestamp, date)):
        return value.date() if isinstance(value, pd.Timestamp) else value
    text = str(value).strip()
    if not text:
        return None
    m = _DATE.match(text)
    if not m:
        raise ValueError(text)
    return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))


def read_tenure(path: str | Path, *, fieldmap: str | Path = "tenure-national", layer: str | None = None,
                encoding: str | None = None) -> pd.DataFrame:
    """Tenure records with ``certificate, holder, start, end (dates), area_ha, lin_ban, xiao_ban``
    (+ ``geometry`` for a vector file). Missing fields and unreadable dates are refused."""
    fm, fm_path = load_toml(fieldmap, fieldmaps_dir(), "field map")
    F = {k: v for k, v in fm["fields"].items()}
    p = Path(path)
    enc = encoding or fm.get("fieldmap", {}).get("encoding") or None
    if p.suffix.lower() in (".csv", ".txt"):
        raw, used = read_table(p, encoding=enc, what="tenure records")
        geom = None
    else:
        raw, used = read_vector(p, layer=layer, encoding=enc, what="tenure records")
        geom = raw.geometry
    lyr = layer or p.stem
    problems = missing_fields(raw, F, str(p), lyr, str(fm_path))
    if problems:
        raise InputError(problems)
    out = pd.DataFrame({
        "certificate": raw[F["certificate"]].map(normalise_code).to_numpy(),
        "holder": raw[F["holder"]].map(lambda v: normalise_code(v)).to_numpy(),
        "lin_ban": raw[F["lin_ban"]].map(normalise_code).to_numpy(),
        "xiao_ban": raw[F["xiao_ban"]].map(normalise_code).to_numpy(),
    })
    unit = fm.get("area", {}).get("unit", "mu")
    out["area_ha"] = pd.to_numeric(raw[F["area"]].map(lambda v: normalise_code(v) or None),
                                   errors="coerce").to_numpy() * HA_PER_UNIT[unit]
    for role in ("start", "end"):
        vals, bad = [], Counter()
        for v in raw[F[role]]:
            try:
                vals.append(parse_date(v))
            except ValueError:
                bad[str(v)] += 1
                vals.append(None)
        if bad:
            listed = ", ".join(f"'{v}' ({n}×)" for v, n in sorted(bad.items()))
            problems.append(Problem("bad-value", str(p), F[role], f"dates that cannot be read: {listed}",
                                    "write dates as YYYY-MM-DD (or YYYYMMDD, YYYY年M月D日)"))
        out[role] = vals
    dup = Counter(c for c in out["certificate"] if c)
    dup = {c: n for c, n in dup.items() if n > 1}
    if dup:
        listed = ", ".join(f"'{c}' ({n}×)" for c, n in sorted(dup.items()))
        problems.append(Problem("duplicate-id", str(p), F["certificate"], f"certificate numbers repeated: {listed}",
                                "one row per certificate (合并 the rows of one certificate)"))
    if problems:
        raise InputError(problems)
    if geom is not None:
        out = gpd.GeoDataFrame(out, geometry=geom.values, crs=geom.crs)
    out.attrs = {"source_file": str(p), "encoding": used, "fieldmap": str(fm_path),
                 "certificate_field": F["certificate"],
                 "coverage_tolerance": float(fm.get("area", {}).get("coverage_tolerance", 0.01))}
    return out


@dataclass
class TenureJoin:
    records: pd.DataFrame    # matched records: the record's columns + xiaoban_id + matched_by
    unmatched: pd.DataFrame  # unmatched records + reason


def join_tenure(parcels: gpd.GeoDataFrame, records: pd.DataFrame) -> TenureJoin:
    """Match each record to one 小班 (see the module docstring for the rule)."""
    wl = int(parcels["lin_ban"].str.len().max())
    wx = int(parcels["xiao_ban"].str.len().max())
    rec = records.copy()
    rec["_key"] = rec["lin_ban"].str.zfill(wl) + "/" + rec["xiao_ban"].str.zfill(wx)
    pk = parcels["lin_ban"] + "/" + parcels["xiao_ban"]
    ids_by_key: dict[str, list[str]] = {}
    for k, x in zip(pk.to_numpy(), parcels["xiaoban_id"].to_numpy()):
        ids_by_key.setdefault(k, []).append(x)
    xid, how, why = [], [], []
    has_geom = isinstance(rec, gpd.GeoDataFrame) and rec.geometry.notna().any()
    if has_geom:
        pts = rec.geometry.representative_point()
        if rec.crs is not None and parcels.crs is not None and rec.crs != parcels.crs:
            pts = pts.to_crs(parcels.crs)
        hit = gpd.sjoin(gpd.GeoDataFrame(geometry=pts.values, crs=parcels.crs), parcels[["xiaoban_id", "geometry"]],
                        predicate="within", how="left")
        by_geom = hit.groupby(level=0)["xiaoban_id"].first()
    for i, key in enumerate(rec["_key"]):
        cands = ids_by_key.get(key, [])
        if len(cands) == 1:
            xid.append(cands[0]), how.append("lb_xb"), why.append("")
            continue
        g = by_geom.iloc[i] if has_geom else None
        if isinstance(g, str):
            xid.append(g), how.append("geometry"), why.append("")
        elif cands:
            xid.append(None), how.append(""), why.append(f"LB/XB {key} matches {len(cands)} 小班 ({', '.join(cands[:3])})")
        else:
            xid.append(None), how.append(""), why.append(f"no 小班 with LB/XB {key}"
                                                        + (" and no 小班 contains it" if has_geom else ""))
    rec["xiaoban_id"], rec["matched_by"], rec["reason"] = xid, how, why
    rec = pd.DataFrame(rec.drop(columns=["_key"] + (["geometry"] if has_geom else [])))
    ok = rec["xiaoban_id"].notna()
    return TenureJoin(rec[ok].drop(columns="reason").reset_index(drop=True), rec[~ok].reset_index(drop=True))


FIRST_IDS = 5   # ids a warning lists


def _first(ids) -> str:
    ids = list(ids)
    more = f", … ({len(ids) - FIRST_IDS} more)" if len(ids) > FIRST_IDS else ""
    return ", ".join(ids[:FIRST_IDS]) + more


def join_warnings(xiaoban: gpd.GeoDataFrame, records: pd.DataFrame, joined: TenureJoin) -> list[Problem]:
    """What the join leaves out, as warnings (nothing is dropped silently): the records that match no
    (or no single) 小班, and the 小班 only partly covered by their certificates (certified area short of
    the 小班's area by more than the field map's ``coverage_tolerance``). Counts and the first ids."""
    out: list[Problem] = []
    f = records.attrs.get("source_file", "tenure records")
    fm = records.attrs.get("fieldmap", "raster_inputs/fieldmaps/tenure-national.toml")
    un = joined.unmatched
    if len(un):
        why = Counter("ambiguous" if "matches" in r else "no 小班" for r in un["reason"])
        listed = "; ".join(f"{c} ({r})" for c, r in zip(un["certificate"][:FIRST_IDS], un["reason"][:FIRST_IDS]))
        more = f"; … ({len(un) - FIRST_IDS} more)" if len(un) > FIRST_IDS else ""
        out.append(Problem("tenure-unmatched", f, records.attrs.get("certificate_field", "certificate"),
                           f"{len(un)} of {len(records)} tenure record(s) match no single 小班 "
                           f"({why['no 小班']} with no 小班, {why['ambiguous']} ambiguous) and are carried into no "
                           f"parcel: {listed}{more}",
                           "correct their LB/XB (林班/小班) to the inventory's, or give the records geometries so "
                           f"they join by location (field map {fm})"))
    if len(joined.records):
        tol = float(records.attrs.get("coverage_tolerance", 0.01))
        cert = joined.records.groupby("xiaoban_id")["area_ha"].sum()
        own = xiaoban.set_index("xiaoban_id")["area_ha"].reindex(cert.index)
        short = (cert < own * (1 - tol)).to_numpy()
        if short.any():
            ids = [f"{x} ({c / HA_PER_UNIT['mu']:.4g} of {a / HA_PER_UNIT['mu']:.4g} 亩)" for x, c, a in
                   zip(cert.index[short], cert.to_numpy()[short], own.to_numpy()[short])]
            out.append(Problem("tenure-partial", f, "SYQMJ",
                               f"{int(short.sum())} of {len(cert)} 小班 with certificates are only partly covered by them "
                               f"(certified area more than {tol:.0%} short of the 小班's area): {_first(ids)}",
                               "add the missing certificates (or correct SYQMJ and its unit); the parcels carry only "
                               "the certified area (tenure_area_mu)"))
    return out


def attach(parcels: gpd.GeoDataFrame, joined: TenureJoin) -> gpd.GeoDataFrame:
    """Parcels with their certificates (``;``-joined), holders, earliest start, latest end and the
    certified area (ha)."""
    r = joined.records
    agg = r.groupby("xiaoban_id").agg(
        certificates=("certificate", lambda s: ";".join(sorted(s))),
        holders=("holder", lambda s: ";".join(sorted(set(s)))),
        use_start=("start", lambda s: min((d for d in s if d), default=None)),
        use_end=("end", lambda s: max((d for d in s if d), default=None)),
        certified_area_ha=("area_ha", "sum"),
    ).reset_index()
    return parcels.merge(agg, on="xiaoban_id", how="left")


# columns a parcel carries from its 小班' tenure records (empty / NaN without a record)
PARCEL_COLUMNS = ("tenure_certificate", "tenure_holder", "use_right_start", "use_right_end", "tenure_area_mu")


def parcel_tenure(parcels: gpd.GeoDataFrame, id_field: str, xiaoban: gpd.GeoDataFrame,
                  joined: TenureJoin) -> gpd.GeoDataFrame:
    """The parcels with the tenure of their 小班 (columns :data:`PARCEL_COLUMNS`).

    A 小班 belongs to the parcel whose id is its 小班 id (parcels that are the 小班), else to the parcel
    containing its representative point. Per parcel: certificates and holders ``;``-joined (sorted,
    distinct); ``use_right_start`` the latest start and ``use_right_end`` the earliest end of its
    certificates (ISO dates: the span over which all of the parcel's certified land is held, the one
    that binds a crediting period); ``tenure_area_mu`` the certified area in 亩 (the records' SYQMJ,
    each record once)."""
    ids = parcels[id_field].astype(str)
    xb = xiaoban[["xiaoban_id", "geometry"]]
    pts = xb.geometry.representative_point()
    if xb.crs is not None and parcels.crs is not None and xb.crs != parcels.crs:
        pts = pts.to_crs(parcels.crs)
    hit = gpd.sjoin(gpd.GeoDataFrame({"xiaoban_id": xb["xiaoban_id"].to_numpy()}, geometry=pts.values, crs=parcels.crs),
                    gpd.GeoDataFrame({"_pid": ids.to_numpy()}, geometry=parcels.geometry.values, crs=parcels.crs),
                    predicate="within", how="inner")
    owner = hit.groupby("xiaoban_id")["_pid"].first().to_dict()
    own_id = set(ids)
    owner.update({x: x for x in xb["xiaoban_id"] if x in own_id})
    r = joined.records.copy()
    r["_pid"] = r["xiaoban_id"].map(owner)
    r = r[r["_pid"].notna()]
    if r.empty:
        agg = pd.DataFrame(columns=["_pid", *PARCEL_COLUMNS])
    else:
        agg = r.groupby("_pid").agg(
            tenure_certificate=("certificate", lambda s: ";".join(sorted({c for c in s if c}))),
            tenure_holder=("holder", lambda s: ";".join(sorted({h for h in s if h}))),
            use_right_start=("start", lambda s: max((d for d in s if d), default=None)),
            use_right_end=("end", lambda s: min((d for d in s if d), default=None)),
            tenure_area_mu=("area_ha", lambda s: float(s.sum()) / HA_PER_UNIT["mu"]),
        ).reset_index()
        for c in ("use_right_start", "use_right_end"):
            agg[c] = agg[c].map(lambda d: d.isoformat() if d else "")
    out = parcels.drop(columns=[c for c in PARCEL_COLUMNS if c in parcels.columns]).assign(_pid=ids.to_numpy())
    out = out.merge(agg, on="_pid", how="left").drop(columns="_pid")
    for c in PARCEL_COLUMNS[:4]:
        out[c] = out[c].fillna("").astype(str)
    out["tenure_area_mu"] = pd.to_numeric(out["tenure_area_mu"], errors="coerce")
    return gpd.GeoDataFrame(out, geometry=parcels.geometry.name, crs=parcels.crs)
