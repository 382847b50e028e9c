"""Queries that compare stored runs (no computation of results, only reading and differencing)."""

from __future__ import annotations

import json


def diff_runs(store, a: str, b: str) -> dict:
    ra, rb = store.run(a), store.run(b)
    ia = store.table("inputs", ra.id)
    ib = store.table("inputs", rb.id)
    ha = dict(zip(ia.layer, ia.sha256)) if len(ia) else {}
    hb = dict(zip(ib.layer, ib.sha256)) if len(ib) else {}
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
