"""Queries that compare stored runs (no computation of results, only reading and differencing)."""

from __future__ import annotations

import json


def diff_runs(store, a: str, b: str) -> dict:
    ra, rb = store.run(a), store.run(b)
    ia = store.table("inputs", ra.id)
    ib = store.table("inputs", rb.id)
    from ..inputs.remote import content_id

    ha = {r["layer"]: content_id(r) for r in ia.to_dict("records")} if len(ia) else {}
    hb = {r["layer"]: content_id(r) for r in ib.to_dict("records")} if len(ib) else {}
    changed = sorted(k for k in set(ha) | set(hb) if ha.get(k) != hb.get(k))
    pa = store.rules_json(ra.ruleset_hash)["params"] if ra.ruleset_hash else {}
    pb = store.rules_json(rb.ruleset_hash)["params"] if rb.ruleset_hash else {}
    params = [{"parameter": k, "a": (pa.get(k) or {}).get("value"), "b": (pb.get(k) or {}).get("value"),
               "unit": (pa.get(k) or pb.get(k))["unit"]}
              for k in sorted(set(pa) | set(pb)) if (pa.get(k) or {}).get("value") != (pb.get(k) or {}).get("value")]
    sa = json.loads(ra.summary_json or "{}").get("gep", {}).get("by_service", {})
    sb = json.loads(rb.summary_json or "{}").get("gep", {}).get("by_service", {})
    services = {}
    for k in sorted(set(sa) | set(sb)):
        va = sa.get(k, {}).get("value_cny", 0.0)
        vb = sb.get(k, {}).get("value_cny", 0.0)
        services[k] = {"a": va, "b": vb, "change_pct": 100.0 * (vb - va) / va if va else None}
    ca = json.loads(ra.summary_json or "{}").get("carbon", {}).get("net_sink_tco2e_per_yr")
    cb = json.loads(rb.summary_json or "{}").get("carbon", {}).get("net_sink_tco2e_per_yr")
    return {"a": ra.id, "b": rb.id, "inputs_changed": changed,
            "rules": {"a": ra.ruleset_name, "b": rb.ruleset_name, "hash_a": ra.ruleset_hash, "hash_b": rb.ruleset_hash,
                      "parameters_changed": params},
            "services": services, "carbon_sink_tco2e_per_yr": {"a": ca, "b": cb}}


def check_lookup_id(value, what: str, hint: str) -> str:
    """Refuse an empty or whitespace-only id before it reaches a prefix search (where it would match everything)."""
    from ..errors import StoreError

    if not isinstance(value, str) or not value.strip():
        raise StoreError(f"the {what} {value!r} is empty; give a full id or a unique prefix of one ({hint})")
    return value


def prefix_matches(s, model, prefix: str) -> list:
    """Rows of ``model`` whose ``id`` starts with ``prefix`` taken literally: LIKE wildcards (``%``, ``_``) and
    the escape character are escaped, and the match is re-checked case-sensitively (SQLite's LIKE is not)."""
    from sqlmodel import select

    rows = s.exec(select(model).where(model.id.startswith(prefix, autoescape=True))).all()
    return [r for r in rows if r.id.startswith(prefix)]
