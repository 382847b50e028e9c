"""The registry: issuance of credits from stored runs, serial allocation, status changes, event log.

Promises (after Verra, CAD Trust, UNFCCC AEF): every unit has one serial, one holder and one status;
nothing is issued twice; every retirement is final. Each write happens in one database transaction
that first takes the *registry lock* (an UPDATE of the ``serial_counter`` row: a row lock on
PostgreSQL, the database write lock on SQLite), so serial ranges and the hash chain of events are
allocated strictly one writer at a time, and a failure leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from ..errors import EcoValueError, StoreError
from ..rules import RuleSet
from ..store.models import CreditBlock, Issuance, IssuanceLine, ParcelVintage, StatusEvent

GENESIS = "0" * 64
BUFFER_HOLDER = "BUFFER-POOL"
TRANSITIONS = {
    "held": {"listed", "transferred", "retired", "cancelled"},
    "listed": {"held", "transferred", "retired", "cancelled"},
    "transferred": {"listed", "transferred", "retired"},
    "buffer": {"cancelled"},
    "pending": {"cancelled"},   # unverified project units; verification (credits.verify_issuances) makes them held
    "retired": set(),
    "cancelled": set(),
}
METHODOLOGY = ("CCER-14-001", "V01")


class RegistryError(EcoValueError):
    """An issuance or status change the registry refuses."""


def _now() -> datetime:
    # whole milliseconds: every database stores them exactly, so the event hash survives a round trip
    t = datetime.now(timezone.utc)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def _lock(s: Session) -> int:
    """Take the registry lock; return the next free serial."""
    row = s.execute(text("UPDATE serial_counter SET next_serial = next_serial WHERE name = 'registry' RETURNING next_serial")).first()
    if row is None:
        raise StoreError("the store has no serial counter (run `alembic upgrade head`)")
    return int(row[0])


def _last_hash(s: Session) -> str:
    ev = s.exec(select(StatusEvent).order_by(StatusEvent.id.desc())).first()
    return ev.hash if ev else GENESIS


def event_hash(prev: str, payload: dict) -> str:
    body = json.dumps({"prev": prev, **payload}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _append_event(s: Session, prev: str, **payload) -> str:
    payload = {k: (_iso(v) if isinstance(v, datetime) else v) for k, v in payload.items()}
    h = event_hash(prev, payload)
    created = datetime.fromisoformat(payload.pop("created"))
    s.add(StatusEvent(created=created, prev_hash=prev, hash=h, **payload))
    s.flush()
    return h


@dataclass
class ParcelCredit:
    parcel_id: str
    holder_id: str
    gross: float
    baseline: float
    leakage: float
    uncertainty: float
    uncertainty_share: float
    buffer: int
    issued: int
    remainder: float
    other_programme: str


def creditable(parcel_id: str, holder: str, sink: float, low: float, high: float, rules: RuleSet, other: str) -> ParcelCredit:
    """Deductions of one parcel-vintage (CCER structure): baseline, leakage, uncertainty, buffer.

    uncertainty share = max(0, half-width of the 95 % CI / mean - threshold); the buffer is rounded up
    and the credits down to whole t CO2e; the fractional remainder is stored, never issued.
    """
    base = sink * rules.value("crediting.baseline_share")
    leak = sink * rules.value("crediting.leakage_share")
    half = (high - low) / 2.0
    u_share = max(0.0, half / abs(sink) - rules.value("crediting.uncertainty_threshold")) if sink else 0.0
    u_share = min(u_share, 1.0)
    after = sink - base - leak
    unc = after * u_share
    net = after - unc
    # buffer rounded up, but never more whole tonnes than the parcel has; credits rounded down
    whole = max(math.floor(net + 1e-9), 0)
    buffer = min(math.ceil(net * rules.value("crediting.buffer_share") - 1e-9), whole)
    issued = max(math.floor(net - buffer + 1e-9), 0)
    return ParcelCredit(parcel_id, holder, sink, base, leak, unc, u_share, buffer, issued, net - buffer - issued, other)


def issue(store, run_id: str, vintage: int, parcels: list[str] | None = None, project_id: str = "FC1",
          include_declared: bool = False, actor: str = "issuer") -> dict:
    """Issue whole-tonne credits for the eligible parcels of a stored run; see the module docstring."""
    from ..rules import RuleSet as RS

    run = store.run(run_id)
    if run.status != "complete":
        raise RegistryError(f"run {run.id} is {run.status}; only complete runs can be issued")
    if not (run.period_start < vintage <= run.period_end):
        raise RegistryError(f"vintage {vintage} is outside the run's monitoring period {run.period_start}-{run.period_end}")
    if not project_id.isalnum():
        raise RegistryError(f"project id '{project_id}' must be letters and digits only (it is part of the serial)")
    rules = RS.from_canonical(store.rules_json(run.ruleset_hash))
    carbon = store.table("carbon", run.id)
    carbon = carbon[carbon.zone_kind == "parcel"].set_index("zone_id")
    zones = store.table("zones", run.id)
    zones = zones[zones.kind == "parcel"].set_index("zone_id")
    wanted = list(carbon.index) if parcels is None else parcels
    unknown = [p for p in wanted if p not in carbon.index]
    if unknown:
        raise RegistryError(f"parcel(s) not in run {run.id}: {', '.join(unknown[:10])}")
    min_area = rules.value("crediting.min_plot_area_ha")
    lines: list[ParcelCredit] = []
    skipped: dict[str, list[str]] = {"no_net_removal": [], "below_min_area": [], "declared_elsewhere": []}
    for pid in sorted(wanted):
        c = carbon.loc[pid]
        z = zones.loc[pid]
        other = str(z.other_programme or "none")
        if c.net_sink_tco2e_per_yr <= 0:
            skipped["no_net_removal"].append(pid)
            continue
        if z.area_ha < min_area:
            skipped["below_min_area"].append(pid)
            continue
        if other != "none" and not include_declared:
            skipped["declared_elsewhere"].append(pid)
            continue
        pc = creditable(pid, str(z.holder_id), float(c.net_sink_tco2e_per_yr), float(c.ci95_low_tco2e_per_yr),
                        float(c.ci95_high_tco2e_per_yr), rules, other)
        if pc.issued > 0 or pc.buffer > 0:
            lines.append(pc)
    if not lines:
        raise RegistryError(f"nothing to issue for run {run.id}, vintage {vintage}: {json.dumps({k: len(v) for k, v in skipped.items()})}")
    issuance_id = str(uuid.uuid4())
    by_holder: dict[str, list[ParcelCredit]] = {}
    for pc in lines:
        by_holder.setdefault(pc.holder_id, []).append(pc)
    total_issued = sum(pc.issued for pc in lines)
    total_buffer = sum(pc.buffer for pc in lines)
    with store.session() as s:
        try:
            start = _lock(s)
            s.execute(text("UPDATE serial_counter SET next_serial = next_serial + :n WHERE name = 'registry'"),
                      {"n": total_issued + total_buffer})
            iss = Issuance(id=issuance_id, run_id=run.id, project_id=project_id, region_adcode=run.adcode, vintage=vintage,
                           monitoring_start=f"{vintage}-01-01", monitoring_end=f"{vintage}-12-31",
                           methodology=METHODOLOGY[0], methodology_version=METHODOLOGY[1], created=_now(),
                           gross_removals_tco2e=sum(pc.gross for pc in lines), baseline_tco2e=sum(pc.baseline for pc in lines),
                           leakage_tco2e=sum(pc.leakage for pc in lines),
                           uncertainty_deduction_tco2e=sum(pc.uncertainty for pc in lines),
                           buffer_share=rules.value("crediting.buffer_share"), remainder_tco2e=sum(pc.remainder for pc in lines),
                           net_issued_tco2e=total_issued, buffer_tco2e=total_buffer, ruleset_hash=run.ruleset_hash)
            s.add(iss)
            s.flush()
            for pc in lines:
                for kind, q in (("gross", pc.gross), ("baseline", pc.baseline), ("leakage", pc.leakage),
                                ("uncertainty", pc.uncertainty), ("buffer", pc.buffer), ("issued", pc.issued),
                                ("remainder", pc.remainder)):
                    s.add(IssuanceLine(issuance_id=issuance_id, parcel_id=pc.parcel_id, kind=kind, quantity_tco2e=float(q)))
                s.add(ParcelVintage(parcel_id=pc.parcel_id, vintage=vintage, issuance_id=issuance_id, other_programme=pc.other_programme))
            s.flush()
            prev = _last_hash(s)
            pos = start
            blocks = []
            for holder in sorted(by_holder):
                n = sum(pc.issued for pc in by_holder[holder])
                if n == 0:
                    continue
                blocks.append((pos, pos + n - 1, "held", holder, sorted(pc.parcel_id for pc in by_holder[holder])))
                pos += n
            if total_buffer:
                blocks.append((pos, pos + total_buffer - 1, "buffer", BUFFER_HOLDER, sorted(pc.parcel_id for pc in lines)))
            for first, last, status, holder, pids in blocks:
                s.add(CreditBlock(issuance_id=issuance_id, first=first, last=last, vintage=vintage, status=status,
                                  holder_id=holder, parcels_json=json.dumps(pids)))
                prev = _append_event(s, prev, created=_now(), actor=actor, first=first, last=last, from_status="none",
                                     to_status=status, holder_id=holder, beneficiary="", issuance_id=issuance_id,
                                     reason=f"issuance {issuance_id}")
            s.commit()
        except IntegrityError:
            s.rollback()
            with store.session() as s2:
                done = s2.exec(select(ParcelVintage).where(ParcelVintage.vintage == vintage,
                                                          ParcelVintage.parcel_id.in_([pc.parcel_id for pc in lines]))).all()
            taken = sorted({d.parcel_id for d in done})
            if taken:
                raise RegistryError(f"refused: {len(taken)} parcel-vintage(s) already issued for {vintage} "
                                    f"(e.g. {', '.join(taken[:5])}); a parcel-vintage is issued once") from None
            raise RegistryError(f"refused: an issuance for run {run.id}, vintage {vintage}, project {project_id} exists; "
                                "use another --project for a further issuance") from None
    return issuance_summary(store, issuance_id) | {"skipped": {k: len(v) for k, v in skipped.items()},
                                                    "declared_elsewhere": skipped["declared_elsewhere"][:50]}


def issuance_summary(store, issuance_id: str) -> dict:
    from .serials import format_serial

    with store.session() as s:
        iss = s.get(Issuance, issuance_id)
        if iss is None:
            cands = s.exec(select(Issuance).where(Issuance.id.startswith(issuance_id))).all()
            if len(cands) != 1:
                raise StoreError(f"no issuance '{issuance_id}' (list them with `eco-value issuances`)")
            iss = cands[0]
        blocks = s.exec(select(CreditBlock).where(CreditBlock.issuance_id == iss.id).order_by(CreditBlock.first)).all()
        lines = s.exec(select(IssuanceLine).where(IssuanceLine.issuance_id == iss.id)).all()
    return {
        "issuance_id": iss.id, "run_id": iss.run_id, "project_id": iss.project_id, "vintage": iss.vintage,
        "gross_removals_tco2e": iss.gross_removals_tco2e, "baseline_tco2e": iss.baseline_tco2e,
        "leakage_tco2e": iss.leakage_tco2e, "uncertainty_deduction_tco2e": iss.uncertainty_deduction_tco2e,
        "buffer_tco2e": iss.buffer_tco2e, "net_issued_tco2e": iss.net_issued_tco2e, "remainder_tco2e": iss.remainder_tco2e,
        "parcels": len({ln.parcel_id for ln in lines}),
        "serial_blocks": [{"serial": format_serial(iss.region_adcode, iss.project_id, b.vintage, b.first, b.last),
                           "first": b.first, "last": b.last, "count": b.last - b.first + 1, "status": b.status,
                           "holder_id": b.holder_id} for b in blocks],
    }


def apply_status(store, changes: list[dict], actor: str = "exchange") -> dict:
    """Apply transfers/retirements (serial ranges) in one transaction; split blocks; chain events."""
    applied = []
    with store.session() as s:
        _lock(s)
        prev = _last_hash(s)
        for i, ch in enumerate(changes):
            try:
                first, last, to = int(ch["first"]), int(ch["last"]), str(ch["status"]).strip()
            except (KeyError, ValueError):
                raise RegistryError(f"change #{i + 1}: needs first, last and status ({ch})") from None
            if first > last:
                raise RegistryError(f"change #{i + 1}: first {first} > last {last}")
            if to not in TRANSITIONS:
                raise RegistryError(f"change #{i + 1}: unknown status '{to}' (one of {sorted(TRANSITIONS)})")
            b = s.exec(select(CreditBlock).where(CreditBlock.first <= first, CreditBlock.last >= first)).first()
            if b is None:
                raise RegistryError(f"change #{i + 1}: serials {first}-{last} were never issued")
            if last > b.last:
                raise RegistryError(f"change #{i + 1}: range {first}-{last} spans more than one block (block ends at {b.last}); "
                                    "send one change per block")
            if to not in TRANSITIONS[b.status]:
                final = " (final)" if not TRANSITIONS[b.status] else ""
                raise RegistryError(f"change #{i + 1}: serials {first}-{last} are {b.status}{final}; cannot become {to}")
            holder = str(ch.get("holder_id") or b.holder_id)
            beneficiary = str(ch.get("beneficiary") or "")
            parts = []
            if b.first < first:
                parts.append((b.first, first - 1, b.status, b.holder_id, b.beneficiary))
            parts.append((first, last, to, holder, beneficiary))
            if last < b.last:
                parts.append((last + 1, b.last, b.status, b.holder_id, b.beneficiary))
            proto = dict(issuance_id=b.issuance_id, vintage=b.vintage, parcels_json=b.parcels_json)
            from_status = b.status
            s.delete(b)
            s.flush()
            for f, l_, st, h, ben in parts:
                s.add(CreditBlock(first=f, last=l_, status=st, holder_id=h, beneficiary=ben, **proto))
            prev = _append_event(s, prev, created=_now(), actor=str(ch.get("actor") or actor), first=first, last=last,
                                 from_status=from_status, to_status=to, holder_id=holder, beneficiary=beneficiary,
                                 issuance_id=b.issuance_id, reason=str(ch.get("reason") or ""))
            applied.append({"first": first, "last": last, "from": from_status, "to": to})
        s.commit()
    return {"applied": len(applied), "changes": applied}


def audit_log(store) -> dict:
    """Check the event chain (each hash, each link) and that replaying it gives the stored blocks."""
    problems = []
    with store.session() as s:
        events = s.exec(select(StatusEvent).order_by(StatusEvent.id)).all()
        blocks = s.exec(select(CreditBlock)).all()
    prev = GENESIS
    state: dict[int, tuple] = {}  # serial ranges replayed as first -> (last, status, holder)
    for ev in events:
        payload = dict(created=_iso(ev.created), actor=ev.actor, first=ev.first, last=ev.last,
                       from_status=ev.from_status, to_status=ev.to_status, holder_id=ev.holder_id,
                       beneficiary=ev.beneficiary, issuance_id=ev.issuance_id, reason=ev.reason)
        if ev.prev_hash != prev:
            problems.append(f"event {ev.id}: links to {ev.prev_hash[:12]} but the previous event is {prev[:12]} (removed or reordered?)")
        if event_hash(ev.prev_hash, payload) != ev.hash:
            problems.append(f"event {ev.id}: content does not match its hash (edited after the fact)")
        prev = ev.hash
        if ev.from_status == "none":
            state[ev.first] = (ev.last, ev.to_status, ev.holder_id)
        else:
            k = max((f for f in state if f <= ev.first), default=None)
            if k is None or state[k][0] < ev.last:
                problems.append(f"event {ev.id}: range {ev.first}-{ev.last} not held by one replayed block")
                continue
            l_, st, h = state.pop(k)
            if k < ev.first:
                state[k] = (ev.first - 1, st, h)
            state[ev.first] = (ev.last, ev.to_status, ev.holder_id)
            if ev.last < l_:
                state[ev.last + 1] = (l_, st, h)
    stored = {b.first: (b.last, b.status, b.holder_id) for b in blocks}
    if stored != state:
        diff = sorted(set(stored.items()) ^ set(state.items()))[:5]
        problems.append(f"stored blocks differ from the replayed event log (e.g. {diff})")
    return {"events": len(events), "blocks": len(blocks), "ok": not problems, "problems": problems,
            "head": prev}


def _iso(dt: datetime) -> str:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).isoformat()
