"""Issuance of a project's credits over a monitoring period, one issuance per vintage.

credits = removals over the period − baseline − leakage − uncertainty deduction (− buffer where the
methodology has one), per eligible parcel and vintage (``methodology.credit_parcel_vintages``),
rounded down to whole t CO2e with the fraction kept. Serial allocation, blocks and the event chain
go through the registry's lock in one transaction (see ``registry``). Without a verification body,
approach and report date the units are *pending*: they cannot be traded, exported or retired until
``verify_issuances`` records the verification.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import date

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from ..ids import id_problem
from ..store.models import CreditBlock, Issuance, IssuanceLine, IssuanceVerification, ParcelVintage
from .methodology import credit_parcel_vintages, parse_period, run_span, vintage_days
from .projects import load_project
from .registry import (BUFFER_HOLDER, SERIAL_MAX, RegistryError, _append_event, _last_hash, _lock, _now, issuance_digest,
                       issuance_summary)

PENDING = "pending"


def _verification(body: str, approach: str, when: str) -> dict | None:
    given = [bool(body), bool(approach), bool(when)]
    if not any(given):
        return None
    if not all(given):
        raise RegistryError("verification needs all three of --verification-body, --verification-approach and "
                            "--verification-date (or none: the units are then pending)")
    try:
        date.fromisoformat(when)
    except ValueError:
        raise RegistryError(f"--verification-date '{when}' is not an ISO date (YYYY-MM-DD)") from None
    return {"body": body, "approach": approach, "date": when}


def plan(store, project_id: str, monitoring: str, vintage: int | None = None) -> dict:
    """The credits a monitoring period would give, per parcel and vintage, without writing anything."""
    pr, meth, facts, eligible = load_project(store, project_id)
    run = store.run(pr.run_id)
    d0, d1 = parse_period(monitoring)
    if d0 < date.fromisoformat(pr.start_date) or d1 > date.fromisoformat(pr.crediting_end):
        raise RegistryError(f"monitoring period {d0}..{d1} is outside the crediting period of project {pr.id} "
                            f"({pr.start_date}..{pr.crediting_end})")
    s0, s1 = run_span(run.period_start, run.period_end)
    if d0 < s0 or d1 > s1:
        raise RegistryError(f"monitoring period {d0}..{d1} is outside the dates run {run.id[:8]} measures ({s0}..{s1}: inventories "
                            f"of {run.period_start} and {run.period_end}); run a valuation with inventories covering the period")
    days = vintage_days(d0, d1)
    if vintage is not None and vintage not in days:
        raise RegistryError(f"vintage {vintage} is outside the monitoring period {d0}..{d1} (vintages {min(days)}-{max(days)})")
    ok = sorted(p for p, e in eligible.items() if e)
    if not ok:
        raise RegistryError(f"project {pr.id}: no parcel passes every eligibility rule of {meth.code}-{meth.version} "
                            "(see `eco-value project show` and `eco-value explain --project`)")
    bad = [f"{fld} {v!r} (parcel {p!r}) {why}" for p in ok
           for fld, v in (("parcel_id", p), ("holder_id", facts[p].holder_id), ("other_programme", facts[p].other_programme))
           if (why := id_problem(v))]
    if bad:
        raise RegistryError(f"{len(bad)} id(s) of project {pr.id} cannot go into credit records: {'; '.join(bad[:10])}. "
                            "Fix: correct them in the parcel layer or table and create the project again")
    lines = [vc for p in ok for vc in credit_parcel_vintages(meth, facts[p], run.period_start, run.period_end, d0, d1)
             if vintage is None or vc.vintage == vintage]
    return {"project": pr, "methodology": meth, "run": run, "start": d0, "end": d1, "lines": lines}


def issue_project(store, project_id: str, monitoring: str, vintage: int | None = None, verification_body: str = "",
                  verification_approach: str = "", verification_date: str = "", actor: str = "issuer") -> dict:
    ver = _verification(verification_body, verification_approach, verification_date)
    p = plan(store, project_id, monitoring, vintage)
    pr, meth, run = p["project"], p["methodology"], p["run"]
    by_vintage: dict[int, list] = {}
    for vc in p["lines"]:
        by_vintage.setdefault(vc.vintage, []).append(vc)
    status = "held" if ver else PENDING
    ids = []
    with store.session() as s:
        try:
            pos = _lock(s)
            prev = _last_hash(s)
            for v in sorted(by_vintage):
                lines = by_vintage[v]
                issued, buffer = sum(x.issued for x in lines), sum(x.buffer for x in lines)
                iid = str(uuid.uuid4())
                ids.append(iid)
                s.add(Issuance(id=iid, run_id=run.id, project_id=pr.id, region_adcode=run.adcode, vintage=v,
                               monitoring_start=p["start"].isoformat(), monitoring_end=p["end"].isoformat(),
                               methodology=meth.code, methodology_version=meth.version, created=_now(),
                               gross_removals_tco2e=sum(x.gross for x in lines), baseline_tco2e=sum(x.baseline for x in lines),
                               leakage_tco2e=sum(x.leakage for x in lines), uncertainty_deduction_tco2e=sum(x.uncertainty for x in lines),
                               buffer_share=meth.buffer_share, remainder_tco2e=sum(x.remainder for x in lines),
                               net_issued_tco2e=issued, buffer_tco2e=buffer, ruleset_hash=run.ruleset_hash,
                               verification_body=ver["body"] if ver else "", verification_date=ver["date"] if ver else "",
                               verification_approach=ver["approach"] if ver else ""))
                s.flush()
                s.execute(IssuanceLine.__table__.insert(), [
                    dict(issuance_id=iid, parcel_id=x.parcel_id, kind=k, quantity_tco2e=float(q)) for x in lines
                    for k, q in (("gross", x.gross), ("baseline", x.baseline), ("leakage", x.leakage), ("uncertainty", x.uncertainty),
                                 ("buffer", x.buffer), ("issued", x.issued), ("remainder", x.remainder))])
                s.execute(ParcelVintage.__table__.insert(), [
                    dict(parcel_id=x.parcel_id, vintage=v, issuance_id=iid, other_programme=x.other_programme) for x in lines])
                holders: dict[str, list] = {}
                for x in lines:
                    holders.setdefault(x.holder_id, []).append(x)
                blocks = []
                for h in sorted(holders):
                    n = sum(x.issued for x in holders[h])
                    if n:
                        blocks.append((pos, pos + n - 1, status, h, sorted(x.parcel_id for x in holders[h] if x.issued)))
                        pos += n
                if buffer:
                    blocks.append((pos, pos + buffer - 1, "buffer", BUFFER_HOLDER, sorted(x.parcel_id for x in lines if x.buffer)))
                    pos += buffer
                if pos - 1 > SERIAL_MAX:
                    raise RegistryError(f"refused: serials would run past {SERIAL_MAX}, the largest the ECV1 format holds")
                initial = [(first, last, st, h, json.dumps(pids)) for first, last, st, h, pids in blocks]
                digest = issuance_digest(s, iid, initial)
                for first, last, st, h, pjson in initial:
                    s.add(CreditBlock(issuance_id=iid, first=first, last=last, vintage=v, status=st, holder_id=h,
                                      parcels_json=pjson))
                    prev = _append_event(s, prev, created=_now(), actor=actor, first=first, last=last, from_status="none",
                                         to_status=st, holder_id=h, beneficiary="", issuance_id=iid,
                                         reason=f"issuance {iid} (project {pr.id}, {p['start']}..{p['end']})",
                                         detail_sha256=digest)
            s.execute(text("UPDATE serial_counter SET next_serial = :n WHERE name = 'registry'"), {"n": pos})
            s.commit()
        except IntegrityError:
            s.rollback()
            raise RegistryError(f"refused: project {pr.id} has credits for a parcel-vintage of {p['start']}..{p['end']} already "
                                "(a parcel-vintage is issued once; one issuance per project, run and vintage)") from None
    summaries = [issuance_summary(store, i) for i in ids]
    return {"project_id": pr.id, "methodology": f"{meth.code}-{meth.version}", "monitoring": f"{p['start']}..{p['end']}",
            "status": status, "issuances": summaries, "head": prev,
            "totals": {k: sum(x[k] for x in summaries) for k in ("gross_removals_tco2e", "baseline_tco2e", "leakage_tco2e",
                                                               "uncertainty_deduction_tco2e", "buffer_tco2e", "net_issued_tco2e",
                                                               "remainder_tco2e")}}


def verification_of(s, iss: Issuance) -> dict | None:
    """The verification of an issuance: given when it was issued, or recorded later."""
    if iss.verification_body:
        return {"body": iss.verification_body, "approach": iss.verification_approach, "date": iss.verification_date}
    v = s.get(IssuanceVerification, iss.id)
    return {"body": v.body, "approach": v.approach, "date": v.report_date} if v else None


def verify_issuances(store, issuance_ids: list[str], body: str, approach: str, when: str, actor: str = "issuer") -> dict:
    """Record the verification of pending issuances (its own table: the issued record and its digest stay as
    they were); their pending blocks become held, one chained event each carrying the verification's digest."""
    ver = _verification(body, approach, when)
    if ver is None:
        raise RegistryError("give --verification-body, --verification-approach and --verification-date")
    moved = 0
    with store.session() as s:
        _lock(s)
        prev = _last_hash(s)
        for iid in issuance_ids:
            iss = s.get(Issuance, iid)
            if iss is None:
                raise RegistryError(f"no issuance '{iid}' (list them with `eco-value issuances`)")
            if verification_of(s, iss) is not None:
                raise RegistryError(f"issuance {iid} is verified already ({verification_of(s, iss)})")
            s.add(IssuanceVerification(issuance_id=iid, body=body, approach=approach, report_date=when, created=_now()))
            digest = hashlib.sha256(json.dumps({"issuance_id": iid, **ver}, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
            for b in s.exec(select(CreditBlock).where(CreditBlock.issuance_id == iid, CreditBlock.status == PENDING)
                            .order_by(CreditBlock.first)).all():
                b.status = "held"
                s.add(b)
                prev = _append_event(s, prev, created=_now(), actor=actor, first=b.first, last=b.last, from_status=PENDING,
                                     to_status="held", holder_id=b.holder_id, beneficiary=b.beneficiary or "", issuance_id=iid,
                                     reason=f"verified by {body} ({approach}, report {when})", detail_sha256=digest)
                moved += 1
        s.commit()
    return {"verified_issuances": len(issuance_ids), "blocks_released": moved}
