"""The credits desk's data: a project's parcels with their eligibility reasons, the issuance preview of a
monitoring period (``exchange.credits.plan``: nothing written) and the project's issuances.

The preview adds the plan's parcel-vintage lines in the order ``issue_project`` does (per vintage, then
over vintages), so its totals are the very numbers ``eco-value issue PROJECT --monitoring … --json``
stores and prints.
"""

from __future__ import annotations

from sqlmodel import select

# issue_project's totals, in the order a deduction is taken from the removals
TOTALS = ("gross_removals_tco2e", "baseline_tco2e", "leakage_tco2e", "uncertainty_deduction_tco2e", "buffer_tco2e",
          "net_issued_tco2e", "remainder_tco2e")
_LINE = {"gross_removals_tco2e": "gross", "baseline_tco2e": "baseline", "leakage_tco2e": "leakage",
         "uncertainty_deduction_tco2e": "uncertainty", "buffer_tco2e": "buffer", "net_issued_tco2e": "issued",
         "remainder_tco2e": "remainder"}


def projects_list(store) -> list[dict]:
    from ..store.models import Project

    with store.session() as s:
        rows = s.exec(select(Project).order_by(Project.created.desc())).all()
    return [{"id": p.id, "name": p.name, "developer": p.developer, "methodology": p.methodology, "run_id": p.run_id,
             "start_date": p.start_date, "crediting_end": p.crediting_end, "status": p.status} for p in rows]


def parcels_payload(store, project_id: str) -> list[dict]:
    """Every parcel of the project: eligible or not, with each rule's line (rule, passed, reason)."""
    from ..exchange.projects import eligibility_lines, project_summary

    project_summary(store, project_id)            # refuses an unknown project with the registry's message
    by: dict[str, list[dict]] = {}
    for ln in eligibility_lines(store, project_id):
        by.setdefault(ln["parcel_id"], []).append({"rule": ln["rule"], "passed": ln["passed"], "reason": ln["reason"]})
    return [{"parcel_id": p, "eligible": all(x["passed"] for x in lines), "lines": lines,
             "failed": [x for x in lines if not x["passed"]]} for p, lines in sorted(by.items())]


def eligibility_payload(store, project_id: str, parcel: str) -> dict:
    """What ``eco-value explain --project P --parcel X --json`` prints."""
    from ..exchange.methodology import load_methodology
    from ..exchange.projects import eligibility_lines, project_summary

    pr = project_summary(store, project_id)
    lines = eligibility_lines(store, project_id, parcel)
    meth = load_methodology(pr["methodology"])
    return {"project": project_id, "methodology": f"{meth.code}-{meth.version}", "credits": meth.credits, "parcel": parcel,
            "eligible": all(x["passed"] for x in lines), "lines": lines,
            "parameters": [p for p in meth.parameters() if p["name"].startswith("eligibility.")]}


def preview(store, project_id: str, monitoring: str, vintage: int | None = None) -> dict:
    """The issuance a monitoring period would give, every deduction per vintage and in total; writes nothing."""
    from ..exchange.credits import plan

    p = plan(store, project_id, monitoring, vintage)
    pr, meth = p["project"], p["methodology"]
    by_vintage: dict[int, list] = {}
    for vc in p["lines"]:
        by_vintage.setdefault(vc.vintage, []).append(vc)
    vintages = []
    for v in sorted(by_vintage):
        lines = by_vintage[v]
        row = {k: sum(getattr(x, a) for x in lines) for k, a in _LINE.items()}
        vintages.append({"vintage": v, "parcels": len({x.parcel_id for x in lines}), **row})
    totals = {k: sum(x[k] for x in vintages) for k in TOTALS}
    parcels: dict[str, dict] = {}
    for vc in p["lines"]:
        d = parcels.setdefault(vc.parcel_id, {"parcel_id": vc.parcel_id, "holder_id": vc.holder_id} | {k: 0 for k in TOTALS})
        for k, a in _LINE.items():
            d[k] += getattr(vc, a)
    return {"project_id": pr.id, "methodology": f"{meth.code}-{meth.version}", "monitoring": f"{p['start']}..{p['end']}",
            "run_id": p["run"].id, "buffer_share": meth.buffer_share, "vintages": vintages, "totals": totals,
            "parcels": sorted(parcels.values(), key=lambda d: d["parcel_id"])}


def project_issuances(store, project_id: str) -> list[dict]:
    from ..exchange.registry import issuance_summary
    from ..store.models import Issuance

    with store.session() as s:
        ids = s.exec(select(Issuance.id).where(Issuance.project_id == project_id)
                     .order_by(Issuance.created, Issuance.vintage)).all()
    return [issuance_summary(store, i) for i in ids]
