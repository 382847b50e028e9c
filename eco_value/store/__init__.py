"""The valuation store: SQLModel tables, Alembic migrations and the queries users need.

The store computes nothing: it writes what the pipeline hands it (one transaction per run) and reads
it back as rows or pandas tables.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timezone

import pandas as pd
from sqlalchemy import insert
from sqlmodel import Session, select

from ..errors import StoreError
from .db import display_url, get_engine, resolve_url
from .models import CarbonValue, GepInterval, InputFile, Run, RuleSetRow, ServiceValue, Zone
from .queries import check_lookup_id, prefix_matches

__all__ = ["display_url", "get_engine", "resolve_url", "Store"]


#: Rows per executemany inside a run's one transaction: SQLAlchemy and the driver build their own copy of
#: the parameters of each call, so 200,000 service rows of a ×4 10 m pilot in one call cost ~100 MB more
#: than in batches (issue 17: peak RSS flat in the number of parcels).
INSERT_BATCH_ROWS = 5000


def now() -> datetime:
    return datetime.now(timezone.utc)


class Store:
    """Thin query/write layer over one database URL."""

    def __init__(self, url: str | None = None):
        self.url = resolve_url(url)
        self.engine = get_engine(self.url)

    @property
    def display_url(self) -> str:
        """The store's URL with the password masked: the only form of it that may reach a message."""
        return display_url(self.url)

    def __repr__(self) -> str:
        return f"Store({self.display_url})"

    def session(self) -> Session:
        return Session(self.engine)

    # -- runs ------------------------------------------------------------------------------------
    def mark_interrupted(self) -> int:
        """Mark runs left 'running' by a process of this host that no longer exists as failed."""
        host = socket.gethostname()
        n = 0
        with self.session() as s:
            for run in s.exec(select(Run).where(Run.status == "running")).all():
                if run.host == host and not _alive(run.pid):
                    run.status = "failed"
                    run.error = "interrupted: the process ended before the run was stored"
                    run.finished = now()
                    s.add(run)
                    n += 1
            # complete runs whose process died while writing their files: the results stand, the files not
            pending = s.exec(select(Run).where(Run.status == "complete",
                                               Run.summary_json.contains('"outputs_status": "pending"'))).all()
            for run in pending:
                if run.host == host and not _alive(run.pid):
                    summary = json.loads(run.summary_json)
                    summary["outputs_status"] = "not written: interrupted: the process ended before its files were in place"
                    run.summary_json = json.dumps(summary, ensure_ascii=False, sort_keys=True)
                    s.add(run)
                    n += 1
            s.commit()
        return n

    def find_complete(self, fingerprint: str) -> Run | None:
        with self.session() as s:
            return s.exec(select(Run).where(Run.fingerprint == fingerprint, Run.status == "complete")
                          .order_by(Run.started.desc())).first()

    def start_run(self, run: Run) -> None:
        with self.session() as s:
            s.add(run)
            s.commit()

    def fail_run(self, run_id: str, error: str) -> None:
        """Mark a running run failed; a run whose results were committed stays complete."""
        with self.session() as s:
            run = s.get(Run, run_id)
            if run is None or run.status != "running":
                return
            run.status = "failed"
            run.error = error
            run.finished = now()
            s.add(run)
            s.commit()

    def set_outputs_status(self, run_id: str, status: str) -> None:
        """Record whether a complete run's output files were written ('written', 'not written: why')."""
        with self.session() as s:
            run = s.get(Run, run_id)
            if run is None:
                return
            summary = json.loads(run.summary_json or "{}")
            summary["outputs_status"] = status
            run.summary_json = json.dumps(summary, ensure_ascii=False, sort_keys=True)
            s.add(run)
            s.commit()

    @staticmethod
    def insert_rows(s: Session, rules_row: RuleSetRow, rows: dict[str, list[dict]]) -> None:
        """Bulk-insert result rows (table name → list of column dicts) inside session ``s``."""
        if s.get(RuleSetRow, rules_row.hash) is None:
            s.add(rules_row)
            s.flush()
        tables = {m.__tablename__: m for m in (Zone, ServiceValue, CarbonValue, InputFile, GepInterval)}
        for name, data in rows.items():
            stmt = insert(tables[name].__table__)
            for i in range(0, len(data), INSERT_BATCH_ROWS):   # same transaction; the driver's copy stays small
                s.execute(stmt, data[i:i + INSERT_BATCH_ROWS])

    def complete_run(self, run_id: str, rules_row: RuleSetRow, rows: dict[str, list[dict]], summary: dict) -> None:
        """Store every result row of a run and mark it complete, in one transaction."""
        with self.session() as s:
            run = s.get(Run, run_id)
            if run is None:
                raise StoreError(f"run {run_id} is not in the store")
            self.insert_rows(s, rules_row, rows)
            run.status = "complete"
            run.finished = now()
            run.summary_json = json.dumps(summary, ensure_ascii=False, sort_keys=True)
            s.add(run)
            s.commit()

    def runs(self) -> list[Run]:
        with self.session() as s:
            return list(s.exec(select(Run).order_by(Run.started.desc())).all())

    def run(self, run_id: str) -> Run:
        check_lookup_id(run_id, "run id", "list them with `eco-value runs`")
        with self.session() as s:
            run = s.get(Run, run_id)
            if run is None:
                # allow unique prefixes, taken literally (no LIKE wildcards)
                cands = prefix_matches(s, Run, run_id)
                if len(cands) == 1:
                    return cands[0]
                raise StoreError(f"no run '{run_id}' in {self.display_url} (list them with `eco-value runs`)")
            return run

    def rules_json(self, ruleset_hash: str) -> dict:
        with self.session() as s:
            row = s.get(RuleSetRow, ruleset_hash)
            if row is None:
                raise StoreError(f"rule set {ruleset_hash} is not in the store")
            return json.loads(row.content_json)

    def table(self, name: str, run_id: str | None = None, zone_kind: str | None = None) -> pd.DataFrame:
        """A result table as pandas, optionally of one run and one kind of zone (county, township, parcel, ...)."""
        models = {"services": ServiceValue, "carbon": CarbonValue, "zones": Zone, "inputs": InputFile, "runs": Run,
                  "gep_intervals": GepInterval}
        if name not in models:
            raise StoreError(f"unknown table '{name}'; choose one of {', '.join(models)}")
        m = models[name]
        # rows as plain tuples (SQLAlchemy Core), not ORM objects: ~50,000 rows of a 30 m pilot run
        # took ~2.5 s as model objects dumped to dicts
        cols = [c for c in m.__table__.c if c.name != "geometry_wkb"]
        with self.session() as s:
            q = select(*cols)
            if run_id is not None and name != "runs":
                q = q.where(m.run_id == run_id)
            if zone_kind is not None:
                col = getattr(m, "kind" if m is Zone else "zone_kind", None)
                if col is None:
                    raise StoreError(f"table '{name}' has no zones to select by kind")
                q = q.where(col == zone_kind)
            rows = s.connection().execute(q).all()
        return pd.DataFrame.from_records(rows, columns=[c.name for c in cols]) if rows else pd.DataFrame([])

    def count_rows(self, run_id: str) -> dict[str, int]:
        return {k: len(self.table(k, run_id)) for k in ("services", "carbon", "zones", "inputs")}


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
