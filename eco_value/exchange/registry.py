"""The registry: issuance of credits from stored runs, serial allocation, status changes, event log.

Promises (after Verra, CAD Trust, UNFCCC AEF): every unit has one serial, one holder and one status;
nothing is issued twice; every retirement is final. Each write happens in one database transaction
that first takes the *registry lock* (an UPDATE of the ``serial_counter`` row: a row lock on
PostgreSQL, the database write lock on SQLite), so serial ranges and the hash chain of events are
allocated strictly one writer at a time, and a failure leaves nothing behind.

The event log is a hash chain over everything that changes a holding: each event hashes its range
(first/last, hence the count), from/to status, holder, beneficiary, issuance, actor, time and reason,
and the events that create an issuance's blocks also hash the issuance record (totals, deduction
lines, parcel-vintages, initial blocks: :func:`issuance_digest`). ``audit_log`` replays the chain and
compares it with the stored blocks, issuances and serial counter. A chain can still be cut at its
tail without trace inside the database, so its head hash is anchored outside it: every write returns
it (the CLI prints it and can write it to ``--head-file``), exported bundles carry it in their
manifest, and ``audit log --expect-head`` fails when a remembered head is no longer in the chain.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from ..errors import EcoValueError, StoreError
from ..ids import id_problem
from ..rules import RuleSet
from ..store.models import CreditBlock, Issuance, IssuanceLine, ParcelVintage, StatusEvent
from ..store.queries import check_lookup_id, prefix_matches
from .serials import SERIAL_MAX, RegistryError, validate_project_id
from .status_file import NO_VALUE, Change, RowProblem, StatusFileError, check_changes, read_status_file  # noqa: F401

GENESIS = "0" * 64
HEAD_RE = re.compile(r"[0-9a-f]{64}", re.ASCII)
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
DIGEST_IF_SET = {"verification_approach"}


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


def _hashed(payload: dict) -> dict:
    """The hashed form of an event: ``detail_sha256`` only when set, so events stored before it existed verify."""
    return {k: v for k, v in payload.items() if not (k == "detail_sha256" and not v)}


def _append_event(s: Session, prev: str, **payload) -> str:
    payload = {k: (_iso(v) if isinstance(v, datetime) else v) for k, v in payload.items()}
    h = event_hash(prev, _hashed(payload))
    created = datetime.fromisoformat(payload.pop("created"))
    s.add(StatusEvent(created=created, prev_hash=prev, hash=h, **payload))
    s.flush()
    return h


def _event_payload(ev: StatusEvent) -> dict:
    return _hashed(dict(created=_iso(ev.created), actor=ev.actor, first=ev.first, last=ev.last,
                        from_status=ev.from_status, to_status=ev.to_status, holder_id=ev.holder_id,
                        beneficiary=ev.beneficiary, issuance_id=ev.issuance_id, reason=ev.reason,
                        detail_sha256=ev.detail_sha256 or ""))


def issuance_digest(s: Session, issuance_id: str, initial_blocks: list[tuple]) -> str:
    """SHA-256 over an issuance's record: every column, deduction lines, parcel-vintages and its initial
    blocks ``(first, last, status, holder_id, parcels_json)``; numbers typed by column so a database round
    trip gives the same digest."""
    import sqlalchemy as sa

    iss = s.get(Issuance, issuance_id)
    row = {}
    for c in Issuance.__table__.columns:
        v = getattr(iss, c.name)
        if c.name in DIGEST_IF_SET and not v:
            continue   # columns added after the digest: left out while empty, so older digests still hold
        if isinstance(v, datetime):
            v = _iso(v)
        elif isinstance(c.type, sa.Float) and v is not None:
            v = float(v)
        elif isinstance(c.type, sa.Integer) and v is not None:
            v = int(v)
        row[c.name] = v
    lines = sorted((ln.parcel_id, ln.kind, float(ln.quantity_tco2e))
                   for ln in s.exec(select(IssuanceLine).where(IssuanceLine.issuance_id == issuance_id)).all())
    pvs = sorted((p.parcel_id, int(p.vintage), p.other_programme)
                 for p in s.exec(select(ParcelVintage).where(ParcelVintage.issuance_id == issuance_id)).all())
    blocks = sorted((int(f), int(l_), st, h, pj) for f, l_, st, h, pj in initial_blocks)
    body = json.dumps({"issuance": row, "lines": lines, "parcel_vintages": pvs, "blocks": blocks},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def chain_head(store) -> str:
    """Hash of the newest event (``GENESIS`` for an empty log): remember it outside the database."""
    with store.session() as s:
        return _last_hash(s)


def check_head(value, source: str) -> str:
    v = value.strip().lower() if isinstance(value, str) else value
    if not isinstance(v, str) or not HEAD_RE.fullmatch(v):
        raise EcoValueError(f"{source}: {value!r} is not a chain head (64 hex digits, as printed by `eco-value issue`, "
                            "`apply-status` and `audit log`); give the hash you remembered, or the file it was written to")
    return v


def write_head_file(path, head: str) -> str:
    """Write ``head`` (one line) to ``path`` atomically: unique temporary sibling, fsync, rename."""
    from pathlib import Path

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.parent / f".{p.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(head + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return str(p)


def read_head_file(path) -> str:
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise EcoValueError(f"{p}: the head file does not exist; give the file written by --head-file, or the hash "
                            "itself with --expect-head")
    text = p.read_text(encoding="utf-8", errors="replace").strip()
    return check_head(text.split()[0] if text else "", str(p))


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

    validate_project_id(project_id)      # before anything is read or written: it is part of every serial
    run = store.run(run_id)
    if run.status != "complete":
        raise RegistryError(f"run {run.id} is {run.status}; only complete runs can be issued")
    if not (run.period_start < vintage <= run.period_end):
        raise RegistryError(f"vintage {vintage} is outside the run's monitoring period {run.period_start}-{run.period_end}")
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
    bad_ids = [f"{field} {value!r} (parcel {pc.parcel_id!r}) {why}" for pc in lines
               for field, value in (("parcel_id", pc.parcel_id), ("holder_id", pc.holder_id), ("other_programme", pc.other_programme))
               if (why := id_problem(value))]
    if bad_ids:
        raise RegistryError(f"{len(bad_ids)} id(s) of run {run.id} cannot go into credit records: {'; '.join(bad_ids[:10])}"
                            f"{' …' if len(bad_ids) > 10 else ''}. Fix: correct these fields in the parcel layer "
                            "(`eco-value validate` lists them) and run the valuation again")
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
            if pos - 1 > SERIAL_MAX:
                raise RegistryError(f"refused: serials would run past {SERIAL_MAX}, the largest the ECV1 format holds")
            initial = [(first, last, status, holder, json.dumps(pids)) for first, last, status, holder, pids in blocks]
            digest = issuance_digest(s, issuance_id, initial)
            for first, last, status, holder, pjson in initial:
                s.add(CreditBlock(issuance_id=issuance_id, first=first, last=last, vintage=vintage, status=status,
                                  holder_id=holder, parcels_json=pjson))
                prev = _append_event(s, prev, created=_now(), actor=actor, first=first, last=last, from_status="none",
                                     to_status=status, holder_id=holder, beneficiary="", issuance_id=issuance_id,
                                     reason=f"issuance {issuance_id}", detail_sha256=digest)
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
                                                    "declared_elsewhere": skipped["declared_elsewhere"][:50],
                                                    "head": prev}


def issuance_summary(store, issuance_id: str) -> dict:
    from .serials import format_serial

    with store.session() as s:
        check_lookup_id(issuance_id, "issuance id", "list them with `eco-value issuances`")
        iss = s.get(Issuance, issuance_id)
        if iss is None:
            cands = prefix_matches(s, Issuance, issuance_id)
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


def apply_status(store, changes: list[dict] | list[Change], actor: str = "exchange", source: str = "status changes") -> dict:
    """Apply transfers/retirements (serial ranges) in one transaction; split blocks; chain events.

    ``changes`` are :class:`Change` objects (from :func:`read_status_file`) or dicts checked as strictly
    (see :mod:`.status_file`). All or nothing: every change is checked against the registry as it would
    be after the previous ones; if any is refused, the transaction is rolled back and every refused
    change is listed in one :class:`StatusFileError`.
    """
    probs: list[RowProblem] = []
    if any(not isinstance(c, Change) for c in changes):
        # checked as a JSON file would be; rows that pass still go through the registry checks below,
        # so one error lists every refused change
        changes, probs = check_changes([(f"change #{i}", i, c) for i, c in enumerate(changes, 1)], "json")
    if not changes and not probs:
        raise StatusFileError(source, [RowProblem("change #1", "(file)", NO_VALUE, "no changes given",
                                                            "give at least one change")])
    applied = []
    with store.session() as s:
        nxt = _lock(s)
        prev = _last_hash(s)
        for ch in changes:
            def refuse(field, value, problem, fix, ch=ch):
                probs.append(RowProblem(ch.where, field, value, problem, fix, ch.order))

            first, last, to = ch.first, ch.last, ch.status
            b = None
            if first < nxt:
                b = s.exec(select(CreditBlock).where(CreditBlock.first <= first, CreditBlock.last >= first)).first()
            if b is None:
                refuse("first", first, f"was never issued (this registry has issued serials 1-{nxt - 1})",
                       "check the serial positions against the exported bundle")
                continue
            if last > b.last:
                refuse("last", last, f"makes the range {first}-{last} span more than one block (block {b.first}-{b.last} "
                       f"ends at {b.last})", "send one change per block")
                continue
            if to not in TRANSITIONS[b.status]:
                final = " (final)" if not TRANSITIONS[b.status] else ""
                refuse("status", to, f"is refused: serials {first}-{last} are {b.status}{final} and cannot become {to}",
                       f"from {b.status} a change can go to: {', '.join(sorted(TRANSITIONS[b.status])) or 'nothing'}")
                continue
            if to == "transferred" and ch.holder_id == b.holder_id:
                refuse("holder_id", ch.holder_id, "is already the holder of these serials",
                       "give the new holder's account id")
                continue
            if to != "transferred" and ch.holder_id and ch.holder_id != b.holder_id:
                refuse("holder_id", ch.holder_id, f"differs from the holder {b.holder_id!r}; only a transfer changes the holder",
                       "send a transfer (status transferred) first, or leave holder_id empty")
                continue
            holder = ch.holder_id or b.holder_id
            beneficiary = ch.beneficiary
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
            prev = _append_event(s, prev, created=_now(), actor=ch.actor or actor, first=first, last=last,
                                 from_status=from_status, to_status=to, holder_id=holder, beneficiary=beneficiary,
                                 issuance_id=b.issuance_id, reason=ch.reason)
            applied.append({"first": first, "last": last, "from": from_status, "to": to})
        if probs:
            s.rollback()
            raise StatusFileError(source, probs)
        s.commit()
    return {"applied": len(applied), "changes": applied, "head": prev}


def audit_log(store, expect_head: str | None = None) -> dict:
    """Check the event chain and that it accounts for every holding; optionally against a remembered head.

    Checks: each event's hash and link; replaying the events gives exactly the stored blocks (range,
    status, holder, beneficiary, issuance); pieces of one issued block keep its parcels and the
    issuance's vintage; each issuance's created units equal its net issued and buffer totals, and its
    record (totals, lines, parcel-vintages, initial blocks) matches the digest its events carry; the
    serial counter is past every issued serial; ``expect_head`` (a head printed or written earlier) is
    still in the chain, so a removed tail is caught. Issuances stored before the digest existed are
    listed in ``notes`` (their counts are still checked).
    """
    if expect_head is not None:
        expect_head = check_head(expect_head, "--expect-head")
    problems: list[str] = []
    notes: list[str] = []
    with store.session() as s:
        events = s.exec(select(StatusEvent).order_by(StatusEvent.id)).all()
        blocks = s.exec(select(CreditBlock)).all()
        issuances = {i.id: i for i in s.exec(select(Issuance)).all()}
        counter = s.execute(text("SELECT next_serial FROM serial_counter WHERE name = 'registry'")).scalar()
        prev = GENESIS
        hashes = {GENESIS: 0}
        # replayed state: first -> (last, status, holder, beneficiary, issuance, origin first of the issued block)
        state: dict[int, tuple] = {}
        created: dict[str, dict] = {}   # issuance -> {"held": n, "buffer": n, "digests": set, "blocks": [...]}
        max_serial = 0
        for n, ev in enumerate(events, 1):
            if ev.prev_hash != prev:
                problems.append(f"event {ev.id}: links to {ev.prev_hash[:12]} but the previous event is {prev[:12]} "
                                "(removed or reordered?)")
            if event_hash(ev.prev_hash, _event_payload(ev)) != ev.hash:
                problems.append(f"event {ev.id}: content does not match its hash (edited after the fact)")
            prev = ev.hash
            hashes[ev.hash] = n
            max_serial = max(max_serial, ev.last)
            if ev.from_status == "none":
                c = created.setdefault(ev.issuance_id, {"held": 0, "buffer": 0, "digests": set(), "blocks": []})
                c[ev.to_status] = c.get(ev.to_status, 0) + ev.last - ev.first + 1
                c["digests"].add(ev.detail_sha256 or "")
                c["blocks"].append((ev.first, ev.last, ev.to_status, ev.holder_id))
                state[ev.first] = (ev.last, ev.to_status, ev.holder_id, ev.beneficiary, ev.issuance_id, ev.first)
                continue
            k = max((f for f in state if f <= ev.first), default=None)
            if k is None or state[k][0] < ev.last:
                problems.append(f"event {ev.id}: range {ev.first}-{ev.last} not held by one replayed block")
                continue
            l_, st, h, ben, iid, origin = state.pop(k)
            if k < ev.first:
                state[k] = (ev.first - 1, st, h, ben, iid, origin)
            state[ev.first] = (ev.last, ev.to_status, ev.holder_id, ev.beneficiary, iid, origin)
            if ev.last < l_:
                state[ev.last + 1] = (l_, st, h, ben, iid, origin)
        stored = {b.first: (b.last, b.status, b.holder_id, b.beneficiary or "", b.issuance_id) for b in blocks}
        replayed = {f: v[:5] for f, v in state.items()}
        if stored != replayed:
            diff = sorted(set(stored.items()) ^ set(replayed.items()))[:5]
            problems.append(f"stored blocks differ from the replayed event log (first: last, status, holder, beneficiary, "
                            f"issuance; e.g. {diff})")
        # parcels and vintage of every piece come from the block it was split from
        by_first = {b.first: b for b in blocks}
        parcels_of: dict[int, str] = {}
        for f, v in state.items():
            b = by_first.get(f)
            if b is None:
                continue
            origin = v[5]
            if parcels_of.setdefault(origin, b.parcels_json) != b.parcels_json:
                problems.append(f"block {b.first}-{b.last}: its parcels differ from the other pieces of the block issued "
                                f"at serial {origin} (parcels edited after the fact)")
            iss = issuances.get(b.issuance_id)
            if iss is not None and b.vintage != iss.vintage:
                problems.append(f"block {b.first}-{b.last}: vintage {b.vintage} differs from its issuance's {iss.vintage}")
        # issuances: created units, totals digest
        legacy = 0
        for iid, iss in sorted(issuances.items()):
            c = created.get(iid)
            if c is None:
                problems.append(f"issuance {iid}: no event created its blocks (inserted outside the registry?)")
                continue
            if c["held"] + c.get("pending", 0) != iss.net_issued_tco2e or c["buffer"] != iss.buffer_tco2e:
                problems.append(f"issuance {iid}: the event log created {c['held']} held and {c['buffer']} buffer units, the "
                                f"issuance says net issued {iss.net_issued_tco2e} and buffer {iss.buffer_tco2e} (totals edited?)")
            digests = c["digests"]
            if digests == {""}:
                legacy += 1
                continue
            if len(digests) != 1 or "" in digests:
                problems.append(f"issuance {iid}: its creating events carry different digests (events edited?)")
                continue
            initial = [(f, l_, st, h, parcels_of.get(f, "")) for f, l_, st, h in c["blocks"]]
            if issuance_digest(s, iid, initial) != next(iter(digests)):
                problems.append(f"issuance {iid}: its totals, deduction lines, parcel-vintages or block parcels differ from "
                                "the record hashed when it was issued (edited after the fact)")
        for iid in sorted(set(created) - set(issuances)):
            problems.append(f"issuance {iid}: the event log created blocks for it but the issuance is missing (deleted?)")
    if legacy:
        notes.append(f"{legacy} issuance(s) predate the issuance digest (stored before migration 0004): their unit counts "
                     "are checked, their deduction figures are not")
    if counter is None or counter <= max_serial:
        problems.append(f"the serial counter is at {counter} but serials up to {max_serial} were issued: the next issuance "
                        "would reuse serials (counter edited?)")
    if expect_head is not None:
        if expect_head not in hashes:
            problems.append(f"the remembered head {expect_head} is not in the chain (the chain now ends at {prev[:16]}… "
                            f"after {len(events)} events): events after it were removed, or the chain was rewritten")
        else:
            notes.append(f"the remembered head is event {hashes[expect_head]} of {len(events)} "
                         f"({len(events) - hashes[expect_head]} event(s) since)")
    return {"events": len(events), "blocks": len(blocks), "issuances": len(issuances), "ok": not problems,
            "problems": problems, "notes": notes, "head": prev}


def _iso(dt: datetime) -> str:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).isoformat()
