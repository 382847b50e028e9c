"""Crediting projects: parcels of a stored run under one methodology, each parcel judged rule by rule.

``create_project`` gathers every parcel's facts (land-cover history from the run's catalog, removals
from the run, attributes declared in a parcel table: tenure certificate, 林种, planting year, planted
area, wetland, other programme, business-as-usual baseline; the parcel's 林权 records when the run's
catalog has them: certificate (unless the table gives one), holder, use-right start and end, area in
亩), applies the methodology's eligibility
rules and stores the project, its parcels and one eligibility line per parcel and rule in one
transaction.
"""

from __future__ import annotations

import csv
import json
import math
from types import SimpleNamespace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import insert
from sqlmodel import select

from ..errors import EcoValueError
from ..store.models import EligibilityLine, Project, ProjectParcel, Zone
from .serials import validate_project_id
from .methodology import Methodology, ParcelFacts, eligibility, load_methodology

# parcel-table columns (English, then the Chinese names an inventory or tenure register uses)
COLUMNS = {
    "parcel_id": ("parcel_id", "地块编号", "小班号"),
    "tenure_certificate": ("tenure_certificate", "林权证号", "不动产权证号"),
    "forest_category": ("forest_category", "林种"),
    "vegetation": ("vegetation", "植被类型"),
    "planting_year": ("planting_year", "造林年份"),
    "planted_area_m2": ("planted_area_m2", "造林面积"),
    "wetland": ("wetland", "湿地"),
    "other_programme": ("other_programme", "其他登记项目"),
    "baseline_tco2e_per_yr": ("baseline_tco2e_per_yr", "基线碳汇量"),
}
NUMERIC = {"planting_year": int, "planted_area_m2": float, "baseline_tco2e_per_yr": float}
TRUE = {"1", "true", "yes", "y", "是"}
FALSE = {"", "0", "false", "no", "n", "否"}
CAD_TRUST_PROJECT_STATUS = ("Listed", "Registered")   # before and after validation


class ProjectError(EcoValueError):
    """A project definition or parcel table eco-value refuses."""


def read_parcel_table(path: str | Path) -> dict[str, dict]:
    """Read the parcel table (CSV, UTF-8); every problem is reported at once with the column and values."""
    p = Path(path)
    if not p.exists():
        raise ProjectError(f"{p}: the parcel table does not exist")
    try:
        with open(p, encoding="utf-8-sig", newline="") as f:
            rows = list(csv.DictReader(f))
    except UnicodeDecodeError:
        raise ProjectError(f"{p}: not UTF-8 text; save the table as UTF-8 CSV") from None
    if not rows:
        raise ProjectError(f"{p}: no rows; the table needs a header and one row per parcel")
    alias = {a: k for k, names in COLUMNS.items() for a in names}
    header = list(rows[0].keys())
    unknown = [h for h in header if h not in alias]
    if unknown:
        raise ProjectError(f"{p}: unknown column(s) {unknown}; known: {', '.join(n for v in COLUMNS.values() for n in v)}")
    if "parcel_id" not in {alias[h] for h in header}:
        raise ProjectError(f"{p}: no parcel_id column (地块编号); one row per parcel of the project")
    out: dict[str, dict] = {}
    bad: dict[str, list[str]] = {}
    dup = []
    for r in rows:
        rec = {alias[k]: (v or "").strip() for k, v in r.items() if k in alias}
        for k, typ in NUMERIC.items():
            if rec.get(k):
                try:
                    v = typ(float(rec[k])) if typ is int else typ(rec[k])
                    if typ is float and not math.isfinite(v):
                        raise ValueError
                    rec[k] = v
                except ValueError:
                    bad.setdefault(k, []).append(rec[k])
            else:
                rec[k] = None
        w = str(rec.get("wetland") or "").lower()
        if w not in TRUE | FALSE:
            bad.setdefault("wetland", []).append(w)
        rec["wetland"] = w in TRUE
        pid = rec["parcel_id"]
        if pid in out:
            dup.append(pid)
        out[pid] = rec
    if bad:
        parts = [f"{k}: {len(v)} bad value(s), e.g. {v[:5]}" for k, v in bad.items()]
        raise ProjectError(f"{p}: {'; '.join(parts)}. Fix: numbers in planting_year/planted_area_m2/baseline_tco2e_per_yr, "
                           "yes/no in wetland")
    if dup:
        raise ProjectError(f"{p}: {len(dup)} parcel id(s) appear more than once, e.g. {sorted(set(dup))[:5]}")
    return out


def _parse_date(s: str, what: str) -> date:
    try:
        return date.fromisoformat(str(s))
    except ValueError:
        raise ProjectError(f"{what} '{s}' is not an ISO date (YYYY-MM-DD)") from None


def _years(d0: date, d1: date) -> float:
    return ((d1 - d0).days + 1) / 365.25


def create_project(store, *, project_id: str, name: str, developer: str, methodology: str, start: str, run_id: str,
                   parcel_table: str | Path, crediting_end: str | None = None, validation_body: str = "",
                   validation_date: str = "", description: str = "") -> dict:
    from shapely import from_wkb, to_wkb, union_all

    from ..inputs.history import parcel_land_history
    from ..inputs.catalog import load_catalog

    validate_project_id(project_id)     # part of every serial
    for what, v in (("--name", name), ("--developer", developer)):
        if not v.strip():
            raise ProjectError(f"{what} is required and may not be empty")
    meth = load_methodology(methodology)
    d_start = _parse_date(start, "--start")
    d_end = _parse_date(crediting_end, "--crediting-end") if crediting_end else \
        date(d_start.year + int(meth.crediting_min_years.value), d_start.month, 1) + timedelta(days=d_start.day - 2)
    yrs = _years(d_start, d_end)
    lo, hi = meth.crediting_min_years.value, meth.crediting_max_years.value
    if not (lo - 1e-9 <= yrs <= hi + 1e-9):
        raise ProjectError(f"crediting period {d_start}..{d_end} is {yrs:.1f} years; {meth.code} allows {lo:g} to {hi:g} years "
                           f"({meth.crediting_min_years.source})")
    if bool(validation_body) != bool(validation_date):
        raise ProjectError("give both --validation-body and --validation-date, or neither (a project not yet validated)")
    if validation_date:
        _parse_date(validation_date, "--validation-date")
    run = store.run(run_id)
    if run.status != "complete":
        raise ProjectError(f"run {run.id} is {run.status}; a project needs a complete run")
    with store.session() as s:
        if s.get(Project, project_id) is not None:
            raise ProjectError(f"project '{project_id}' exists already (see `eco-value project show {project_id}`)")
        zones = {z.zone_id: z for z in s.exec(select(Zone).where(Zone.run_id == run.id, Zone.kind == "parcel")).all()}
    table = read_parcel_table(parcel_table)
    missing = sorted(set(table) - set(zones))
    if missing:
        raise ProjectError(f"{parcel_table}: {len(missing)} parcel id(s) are not parcels of run {run.id[:8]}, "
                           f"e.g. {missing[:5]}; parcel ids come from the run's parcel layer")
    ids = sorted(table)
    geoms = [(pid, from_wkb(zones[pid].geometry_wkb)) for pid in ids]
    hist = parcel_land_history(run.catalog_path, geoms)
    carbon = store.table("carbon", run.id)
    carbon = carbon[carbon.zone_kind == "parcel"].set_index("zone_id").to_dict("index")
    facts: dict[str, ParcelFacts] = {}
    for pid in ids:
        h, z, a = hist["parcels"][pid], zones[pid], table[pid]
        c = SimpleNamespace(**carbon[pid])
        declared_other = a.get("other_programme") or ""
        stored_other = z.other_programme or "none"
        other = declared_other if declared_other and declared_other.lower() != "none" else stored_other
        facts[pid] = ParcelFacts(
            parcel_id=pid, area_m2=float(z.area_ha) * 10_000.0, snapshot_years=hist["snapshots"], t1=hist["t1"], t2=hist["t2"],
            forest_m2=h["forest_m2"], afforested_m2=h["afforested_m2"], afforested_forest_m2=h["afforested_forest_m2"],
            afforested_wetland_m2=h["afforested_wetland_m2"],
            removals={"afforestation": float(c.afforestation_tco2e_per_yr),
                      "forest_management": float(c.forest_remaining_tco2e_per_yr + c.deforestation_tco2e_per_yr
                                                 + getattr(c, "harvest_tco2e_per_yr", 0.0)),
                      "net": float(c.net_sink_tco2e_per_yr)},
            ci95=(float(c.ci95_low_tco2e_per_yr), float(c.ci95_high_tco2e_per_yr)), holder_id=z.holder_id,
            tenure_certificate=a.get("tenure_certificate") or z.tenure_certificate or "",
            tenure_holder=z.tenure_holder or "", use_right_start=z.use_right_start or "", use_right_end=z.use_right_end or "",
            tenure_area_mu=z.tenure_area_mu, forest_category=a.get("forest_category") or "",
            vegetation=a.get("vegetation") or "", planting_year=a.get("planting_year"),
            planted_area_m2=a.get("planted_area_m2"), wetland_declared=bool(a.get("wetland")), other_programme=other,
            baseline_tco2e_per_yr=a.get("baseline_tco2e_per_yr"))
    checks = {pid: eligibility(meth, f, d_start, d_end) for pid, f in facts.items()}
    cat = load_catalog(run.catalog_path)
    location = union_all([g for _, g in geoms])
    with store.session() as s:
        s.add(Project(id=project_id, name=name, developer=developer, methodology=meth.id, methodology_code=meth.code,
                      methodology_version=meth.version, start_date=d_start.isoformat(), crediting_start=d_start.isoformat(),
                      crediting_end=d_end.isoformat(), run_id=run.id, adcode=run.adcode, location_crs=cat.catalog.crs,
                      location_wkb=to_wkb(location), validation_body=validation_body, validation_date=validation_date,
                      status=CAD_TRUST_PROJECT_STATUS[1] if validation_body else CAD_TRUST_PROJECT_STATUS[0],
                      description=description or meth.credits, created=datetime.now(timezone.utc)))
        s.flush()
        s.execute(insert(ProjectParcel.__table__), [
            dict(project_id=project_id, parcel_id=pid, eligible=all(c.passed for c in checks[pid]),
                 facts_json=json.dumps(vars(facts[pid]), ensure_ascii=False)) for pid in ids])
        s.execute(insert(EligibilityLine.__table__), [
            dict(project_id=project_id, parcel_id=pid, rule=c.rule, passed=c.passed, reason=c.reason)
            for pid in ids for c in checks[pid]])
        s.commit()
    return project_summary(store, project_id)


def project_summary(store, project_id: str) -> dict:
    from sqlalchemy import Integer, func
    from sqlalchemy import cast as sa_cast

    with store.session() as s:
        pr = s.get(Project, project_id)
        if pr is None:
            raise ProjectError(f"no project '{project_id}' (create one with `eco-value project create`)")
        n, n_ok = s.exec(select(func.count(ProjectParcel.id), func.sum(sa_cast(ProjectParcel.eligible, Integer)))
                         .where(ProjectParcel.project_id == project_id)).one()
        refused = dict(s.exec(select(EligibilityLine.rule, func.count(EligibilityLine.id))
                              .where(EligibilityLine.project_id == project_id, EligibilityLine.passed == False)  # noqa: E712
                              .group_by(EligibilityLine.rule)).all())
    d = pr.model_dump(exclude={"location_wkb"})
    d["created"] = str(d["created"])
    return d | {"parcels": int(n), "eligible": int(n_ok or 0), "refused_by_rule": refused}


def eligibility_lines(store, project_id: str, parcel_id: str | None = None) -> list[dict]:
    with store.session() as s:
        q = select(EligibilityLine).where(EligibilityLine.project_id == project_id)
        if parcel_id:
            q = q.where(EligibilityLine.parcel_id == parcel_id)
        rows = s.exec(q.order_by(EligibilityLine.parcel_id, EligibilityLine.id)).all()
    if parcel_id and not rows:
        raise ProjectError(f"parcel '{parcel_id}' is not in project '{project_id}'")
    return [{"parcel_id": r.parcel_id, "rule": r.rule, "passed": r.passed, "reason": r.reason} for r in rows]


def load_project(store, project_id: str) -> tuple[Project, Methodology, dict[str, ParcelFacts], dict[str, bool]]:
    with store.session() as s:
        pr = s.get(Project, project_id)
        if pr is None:
            raise ProjectError(f"no project '{project_id}' (create one with `eco-value project create`)")
        parcels = s.exec(select(ProjectParcel).where(ProjectParcel.project_id == project_id)).all()
    facts = {}
    for p in parcels:
        d = json.loads(p.facts_json)
        for k in ("forest_m2", "afforested_forest_m2"):
            d[k] = {int(y): v for y, v in d[k].items()}
        d["ci95"] = tuple(d["ci95"])
        facts[p.parcel_id] = ParcelFacts(**d)
    return pr, load_methodology(pr.methodology), facts, {p.parcel_id: p.eligible for p in parcels}
