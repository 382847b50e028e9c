"""Bundle format eco-value-bundle/2: a project's monitoring period as CAD Trust records (schemas v2).

One bundle holds the project record, one issuance record per vintage of the monitoring period and
the unit blocks of those issuances, with CAD Trust's field names, picklist values and types
(``exchange_export/schemas/v2``). Statuses map onto CAD Trust's picklist: held, listed and
transferred units are ``Held`` (a transfer changes ``unitOwner``; a listing is a marketplace fact,
not a status), retired ``Retired``, cancelled ``Cancelled``, buffer ``Buffer``. Pending (unverified)
units are never exported. Record files are deterministic; the manifest is signed as in /1.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from sqlmodel import select

from ..resources import data_dir
from ..store.models import CreditBlock, Issuance, IssuanceLine, ParcelVintage, Project, StatusEvent
from .bundle import _sha, file_entries, write_bundle_files
from .keys import public_key_hex, signing_key
from .registry import chain_head
from .serials import format_serial

FORMAT = "eco-value-bundle/2"
SCHEMAS = {"unit": "unit.v2.json", "issuance": "issuance.v2.json", "project": "project.v2.json"}
STATUS = {"held": "Held", "listed": "Held", "transferred": "Held", "retired": "Retired", "cancelled": "Cancelled",
          "buffer": "Buffer"}
COUNTRY = "China"
UNIT_TYPE = "Removal - nature"
CA_DECLARATION = "Not Required"     # domestic use; Article 6 transfers would need "Committed"
CA_STATUS = "Not Started"
NDC = "Inside NDC"                  # China's NDC covers its forest sink
MARKETPLACE = "Sichuan United Environment Exchange (四川联合环境交易所)"


def schema_dir() -> Path:
    return data_dir("exchange_export") / "schemas" / "v2"


def schema(name: str) -> dict:
    return json.loads((schema_dir() / SCHEMAS[name]).read_text(encoding="utf-8"))


def columns(name: str) -> list[str]:
    return [k for k, v in schema(name)["properties"].items() if k not in ("parcelLines", "projectLocations")]


def group_of(store, issuance_id: str) -> tuple[Project | None, list[Issuance]]:
    """The issuances of the same project and monitoring period as ``issuance_id`` (all its vintages)."""
    with store.session() as s:
        iss = s.get(Issuance, issuance_id)
        pr = s.get(Project, iss.project_id) if iss is not None else None
        if pr is None:
            return None, [iss]
        group = s.exec(select(Issuance).where(Issuance.project_id == iss.project_id, Issuance.run_id == iss.run_id,
                                              Issuance.monitoring_start == iss.monitoring_start,
                                              Issuance.monitoring_end == iss.monitoring_end).order_by(Issuance.vintage)).all()
    return pr, list(group)


def _wgs84_point(pr: Project) -> str:
    from pyproj import Transformer
    from shapely import from_wkb

    g = from_wkb(pr.location_wkb)
    c = g.representative_point()
    lon, lat = Transformer.from_crs(pr.location_crs, "EPSG:4326", always_xy=True).transform(c.x, c.y)
    return f"POINT ({lon:.5f} {lat:.5f})"


def build_records(store, pr: Project, group: list[Issuance]) -> dict[str, list[dict]]:
    from .registry import RegistryError

    ids = [i.id for i in group]
    with store.session() as s:
        blocks = s.exec(select(CreditBlock).where(CreditBlock.issuance_id.in_(ids)).order_by(CreditBlock.first)).all()
        lines = s.exec(select(IssuanceLine).where(IssuanceLine.issuance_id.in_(ids))).all()
        pv = {(p.issuance_id, p.parcel_id): p.other_programme
              for p in s.exec(select(ParcelVintage).where(ParcelVintage.issuance_id.in_(ids))).all()}
        reasons = {}
        for ev in s.exec(select(StatusEvent).where(StatusEvent.issuance_id.in_(ids),
                                                   StatusEvent.to_status.in_(["retired", "cancelled"]))).all():
            reasons[(ev.first, ev.last)] = ev
        from sqlalchemy import Integer, func
        from sqlalchemy import cast as sa_cast

        from ..store.models import ProjectParcel
        n_par, n_ok = s.exec(select(func.count(ProjectParcel.id), func.sum(sa_cast(ProjectParcel.eligible, Integer)))
                             .where(ProjectParcel.project_id == pr.id)).one()
    pending = [b for b in blocks if b.status == "pending"]
    if pending:
        raise RegistryError(f"issuance(s) of project {pr.id} for {group[0].monitoring_start}..{group[0].monitoring_end} hold "
                            f"{sum(b.last - b.first + 1 for b in pending)} pending (unverified) units: record the verification "
                            "first (`eco-value issuance verify ... --verification-body --verification-approach --verification-date`)")
    project = [{
        "projectId": pr.id, "originProjectId": pr.id, "registryOfOrigin": _registry(pr), "currentRegistry": _registry(pr),
        "program": pr.methodology_code.split("-")[0], "projectName": pr.name, "projectLink": f"urn:eco-value:{pr.adcode}:project:{pr.id}",
        "projectDeveloper": pr.developer, "sector": _meth(pr).cad_trust_sector, "projectType": _meth(pr).cad_trust_project_type,
        "coveredByNDC": NDC, "projectStatus": pr.status, "projectStatusDate": (pr.validation_date or pr.start_date),
        "unitMetric": "tCO2e", "methodology": f"{pr.methodology_code}-{pr.methodology_version}", "validationBody": pr.validation_body or None,
        "validationDate": pr.validation_date or None, "description": pr.description,
        "projectLocations": [{"country": COUNTRY, "inCountryRegion": pr.adcode, "geographicIdentifier": _wgs84_point(pr)}],
        "methodologyVersion": pr.methodology_version, "methodologyId": pr.methodology, "startDate": pr.start_date,
        "creditingPeriodStart": pr.crediting_start, "creditingPeriodEnd": pr.crediting_end, "regionAdcode": pr.adcode,
        "runId": pr.run_id, "parcels": int(n_par), "eligibleParcels": int(n_ok or 0), "schemaVersion": "project/v2"}]
    by: dict[tuple, dict] = {}
    for ln in lines:
        by.setdefault((ln.issuance_id, ln.parcel_id), {})[ln.kind] = ln.quantity_tco2e
    from .credits import verification_of

    tenure = _tenure_fields(store, pr)

    with store.session() as s:
        ver = {iss.id: verification_of(s, iss) for iss in group}
    issuances = []
    for iss in group:
        v = ver[iss.id] or {"body": "", "approach": "", "date": ""}
        pl = [{"parcelId": p, "gross": v["gross"], "baseline": v["baseline"], "leakage": v["leakage"], "uncertainty": v["uncertainty"],
               "buffer": int(round(v["buffer"])), "issued": int(round(v["issued"])), "remainder": v["remainder"],
               "otherProgramme": pv.get((iid, p), "none"), **tenure.get(p, {})}
              for (iid, p), v in sorted(by.items()) if iid == iss.id]
        issuances.append({
            "id": iss.id, "warehouseProjectId": pr.id, "startDate": iss.monitoring_start, "endDate": iss.monitoring_end,
            "verificationApproach": v["approach"], "verificationBody": v["body"], "verificationReportDate": v["date"], "regionAdcode": iss.region_adcode, "runId": iss.run_id,
            "vintageYear": iss.vintage, "methodology": iss.methodology, "methodologyVersion": iss.methodology_version,
            "grossRemovals": iss.gross_removals_tco2e, "baseline": iss.baseline_tco2e, "leakage": iss.leakage_tco2e,
            "uncertaintyDeduction": iss.uncertainty_deduction_tco2e, "buffer": iss.buffer_tco2e, "remainder": iss.remainder_tco2e,
            "netIssued": iss.net_issued_tco2e, "bufferShareApplied": iss.buffer_share, "rulesetHash": iss.ruleset_hash,
            "parcelLines": pl, "schemaVersion": "issuance/v2"})
    by_id = {i.id: i for i in group}
    units = []
    for b in blocks:
        iss = by_id[b.issuance_id]
        after = iss.gross_removals_tco2e - iss.baseline_tco2e - iss.leakage_tco2e
        serial = format_serial(iss.region_adcode, iss.project_id, b.vintage, b.first, b.last)
        pids = json.loads(b.parcels_json)
        rec = {"unitOwner": b.holder_id, "countryJurisdictionOfOwner": COUNTRY, "inCountryJurisdictionOfOwner": iss.region_adcode,
               "unitBlockStart": f"{b.first:012d}", "unitBlockEnd": f"{b.last:012d}", "unitCount": b.last - b.first + 1,
               "vintageYear": b.vintage, "unitType": UNIT_TYPE, "unitStatus": STATUS[b.status],
               "unitRegistryLink": f"urn:eco-value:{iss.region_adcode}:unit:{serial}",
               "correspondingAdjustmentDeclaration": CA_DECLARATION, "correspondingAdjustmentStatus": CA_STATUS,
               "serial": serial, "issuanceId": iss.id, "warehouseProjectId": iss.project_id, "methodology": iss.methodology,
               "methodologyVersion": iss.methodology_version, "parcels": pids, "regionAdcode": iss.region_adcode,
               "rulesetHash": iss.ruleset_hash, "runId": iss.run_id,
               "otherProgrammes": sorted({pv.get((iss.id, p), "none") for p in pids} - {"none"}),
               "tenureCertificates": sorted({c for p in pids for c in tenure.get(p, {}).get("tenureCertificate", "").split(";") if c}),
               "uncertaintyDeductionApplied": iss.uncertainty_deduction_tco2e / after if after else 0.0,
               "bufferShareApplied": iss.buffer_share, "schemaVersion": "unit/v2"}
        if b.status == "listed":
            rec["marketplace"] = MARKETPLACE
        if b.status in ("retired", "cancelled"):
            ev = _covering(reasons, b.first, b.last)
            why = (ev.reason if ev and ev.reason else "") or (f"retired on behalf of {b.beneficiary}" if b.beneficiary else "")
            rec["unitStatusReason"] = why or f"{b.status} (no reason was recorded with the status change)"
        if b.beneficiary:
            rec["beneficiary"] = b.beneficiary
        units.append(rec)
    return {"unit": units, "issuance": issuances, "project": project}


def _tenure_fields(store, pr: Project) -> dict[str, dict]:
    """Per parcel of the project, its 林权 fields for the issuance's parcel lines (only those known), and
    ``useRightFlag`` where the methodology flags a use right ending before the crediting period does."""
    from .methodology import FLAG
    from .projects import eligibility_lines, load_project

    _pr, _meth, facts, _ok = load_project(store, pr.id)
    flags = {ln["parcel_id"]: ln["reason"][len(FLAG):] for ln in eligibility_lines(store, pr.id)
             if ln["rule"] == "use_right" and ln["passed"] and ln["reason"].startswith(FLAG)}
    out = {}
    for p, f in facts.items():
        d = {"tenureCertificate": f.tenure_certificate, "tenureHolder": f.tenure_holder, "useRightStart": f.use_right_start,
             "useRightEnd": f.use_right_end, "tenureAreaMu": f.tenure_area_mu, "useRightFlag": flags.get(p)}
        out[p] = {k: v for k, v in d.items() if v not in (None, "")}
    return out


def _covering(events: dict, first: int, last: int):
    best = None
    for (f, l_), ev in events.items():
        if f <= first and last <= l_ and (best is None or ev.id > best.id):
            best = ev
    return best


def _meth(pr: Project):
    from .methodology import load_methodology

    return load_methodology(pr.methodology)


def _registry(pr: Project) -> str:
    return _meth(pr).registry_of_origin


def export_bundle_v2(store, pr: Project, group: list[Issuance], target, issuer: str = "eco-value issuer") -> dict:
    """Write the /2 bundle through ``target`` (a checked ``safe_write.safe_output`` folder)."""
    recs = build_records(store, pr, group)
    out = Path(target.path)
    with target.staging() as work:
        files = write_bundle_files(work, recs, columns, {fn: schema_dir() / fn for fn in SCHEMAS.values()})
        totals: dict[str, dict[str, int]] = {}
        for u in recs["unit"]:
            t = totals.setdefault(str(u["vintageYear"]), {})
            t[u["unitStatus"]] = t.get(u["unitStatus"], 0) + u["unitCount"]
        run = store.run(pr.run_id)
        inputs = store.table("inputs", run.id)
        manifest = {
            "bundle_format": FORMAT,
            "bundle_id": f"{pr.id}:{group[0].monitoring_start}..{group[0].monitoring_end}:{_sha(files['records/units.jsonl'])[:16]}",
            "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
            "issuer": {"name": issuer, "public_key_ed25519_hex": public_key_hex()},
            "project_id": pr.id, "issuance_ids": [i.id for i in group],
            "schema_versions": {k: f"{k}/v2" for k in SCHEMAS},
            "record_counts": {k: len(v) for k, v in recs.items()},
            "totals": {"units_by_vintage_and_status": totals, "net_issued_tco2e": sum(i["netIssued"] for i in recs["issuance"]),
                       "buffer_tco2e": sum(i["buffer"] for i in recs["issuance"])},
            "ruleset_hash": run.ruleset_hash,
            "input_hashes": {} if inputs.empty else {r.layer: r.sha256 for r in inputs.sort_values("layer").itertuples()},
            **file_entries(files),
            "registry_head": chain_head(store),
        }
        mbytes = json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True).encode("utf-8")
        (work / "manifest.json").write_bytes(mbytes)
        (work / "manifest.sig").write_text(signing_key().sign(mbytes).signature.hex() + "\n", encoding="ascii")
    return {"bundle": str(out), "format": FORMAT, "issuance_ids": [i.id for i in group], "record_counts": manifest["record_counts"],
            "totals": manifest["totals"]}
