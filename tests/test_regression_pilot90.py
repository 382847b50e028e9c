"""Regression: every stored number of the 90 m Qionglai pilot equals the value stored before the
vocabulary refactor (ecosystem types, class schemes, roles@periods) to 1e-10 relative (1e-12 until issue 17's
zone sums by runs of equal ids, pairwise within a run, moved stored values by up to 1.5e-12 relative).

The fixture tests/data/pilot90_snapshot.json was written by THIS module's `snapshot()` from a run of the
code at commit ffc7927 (before the refactor), with the settings of the shared `pilot_run` fixture
(conftest: 90 m, seed 7, 500 Monte Carlo draws). It holds, exactly:
- every numeric leaf of the run summary (GEP by service and by land cover, carbon account, extent, ...);
- every county and township row of the services and carbon tables, and zone areas;
- the SEEA physical and monetary supply tables (columns keyed by ecosystem type, not their label);
- for the 4 499 parcels (too many to store whole under 200 KB): every 100th parcel's rows, per-column
  sums, two signed pseudo-random projections of each column compared to ``REL`` of the column's sum of
  absolute values, and a sha256 of all parcel values rounded to 8 significant digits; together they
  catch a change of any single parcel above ~1e-8 relative (all sampled parcels, counties, townships:
  ``REL``);
- per output map: the sum and count of finite pixels.
The run itself is the session-wide `pilot_run` fixture that other tests share, so this test adds only
the comparison (a second or two).

Regenerate (only on purpose, e.g. after a deliberate change of results, and say so in the commit):
    python tests/test_regression_pilot90.py
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

FIXTURE = Path(__file__).parent / "data" / "pilot90_snapshot.json"
REL = 1e-10   # was 1e-12: zone sums by runs (pairwise within a run, issue 17) move stored values by <= 1.5e-12 relative
SAMPLE_EVERY = 100
SVC_COLS = ["quantity", "value_cny"]
CARBON_COLS = ["area_ha", "stock_t1_tc", "stock_t2_tc", "net_sink_tco2e_per_yr", "ci95_low_tco2e_per_yr",
               "ci95_high_tco2e_per_yr", "afforestation_tco2e_per_yr", "deforestation_tco2e_per_yr",
               "forest_remaining_tco2e_per_yr"]
# summary leaves that are not results (paths, ids, hashes)
_SKIP_SUMMARY = {"outputs", "run_id", "rules"}


def _leaves(obj, prefix=""):
    if isinstance(obj, dict):
        for k in sorted(obj):
            if prefix == "" and k in _SKIP_SUMMARY:
                continue
            if prefix == "/gep" and k == "uncertainty":   # GEP Monte Carlo: tests/test_gep_uncertainty.py
                continue
            yield from _leaves(obj[k], f"{prefix}/{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _leaves(v, f"{prefix}[{i}]")
    elif isinstance(obj, bool) or obj is None or isinstance(obj, str):
        yield prefix, obj
    elif isinstance(obj, (int, float)):
        yield prefix, float(obj)


def _weights(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, n)


def _col_stats(vals: np.ndarray) -> dict:
    vals = np.asarray(vals, dtype="float64")
    return {"n": int(vals.size), "sum": float(vals.sum()), "sum_abs": float(np.abs(vals).sum()),
            "proj1": float((vals * _weights(vals.size, 1)).sum()), "proj2": float((vals * _weights(vals.size, 2)).sum()),
            "sha256_8sig": hashlib.sha256(" ".join(f"{v:.7e}" for v in vals).encode()).hexdigest()}


BOOKKEEPING = ("/outputs_status", "/input_warnings", "/warnings")


def snapshot(store, res) -> dict:
    """Every stored number of one run, in a form a later run can be compared with."""
    import rasterio

    run_id = res.run_id
    svc = store.table("services", run_id)
    carb = store.table("carbon", run_id)
    zones = store.table("zones", run_id)
    # run bookkeeping (whether the files were written, input warnings) is not a stored value
    snap: dict = {"summary": {k: v for k, v in _leaves(res.summary) if not k.startswith(BOOKKEEPING)}}

    rows = {}
    for kind in ("county", "township"):
        s = svc[svc.zone_kind == kind]
        for r in s.itertuples():
            rows[f"services/{kind}/{r.zone_id}/{r.service}"] = {c: float(getattr(r, c)) for c in SVC_COLS} | {"unit": r.unit, "price_year": int(r.price_year)}
        c = carb[carb.zone_kind == kind]
        for r in c.itertuples():
            rows[f"carbon/{kind}/{r.zone_id}"] = {k: float(getattr(r, k)) for k in CARBON_COLS} | {"period": [int(r.period_start), int(r.period_end)]}
        z = zones[zones.kind == kind]
        for r in z.itertuples():
            rows[f"zones/{kind}/{r.zone_id}"] = {"area_ha": float(r.area_ha), "population": None if r.population is None or (isinstance(r.population, float) and math.isnan(r.population)) else int(r.population)}
    snap["rows"] = rows

    # parcels: sample + column statistics in a fixed (sorted) order
    ps = svc[svc.zone_kind == "parcel"].sort_values(["zone_id", "service"])
    pc = carb[carb.zone_kind == "parcel"].sort_values("zone_id")
    pz = zones[zones.kind == "parcel"].sort_values("zone_id")
    parcel_ids = list(pz.zone_id)
    sample = set(parcel_ids[::SAMPLE_EVERY])
    prow = {}
    for r in ps[ps.zone_id.isin(sample)].itertuples():
        prow[f"services/parcel/{r.zone_id}/{r.service}"] = {c: float(getattr(r, c)) for c in SVC_COLS}
    for r in pc[pc.zone_id.isin(sample)].itertuples():
        prow[f"carbon/parcel/{r.zone_id}"] = {k: float(getattr(r, k)) for k in CARBON_COLS}
    for r in pz[pz.zone_id.isin(sample)].itertuples():
        prow[f"zones/parcel/{r.zone_id}"] = {"area_ha": float(r.area_ha)}
    snap["parcel_sample"] = prow
    stats = {"n_parcels": len(parcel_ids), "ids_sha256": hashlib.sha256("\n".join(parcel_ids).encode()).hexdigest()}
    for service, g in ps.groupby("service"):
        for c in SVC_COLS:
            stats[f"services/{service}/{c}"] = _col_stats(g[c].to_numpy())
    for c in CARBON_COLS:
        stats[f"carbon/{c}"] = _col_stats(pc[c].to_numpy())
    stats["zones/area_ha"] = _col_stats(pz.area_ha.to_numpy())
    snap["parcel_stats"] = stats

    # SEEA tables (output CSVs)
    seea = {}
    for key in ("seea_physical_csv", "seea_monetary_csv"):
        with open(res.outputs[key], encoding="utf-8") as f:
            for r in csv.DictReader(f):
                for col, v in r.items():
                    col = col.split(" ")[0]   # "forest 森林" → "forest": the type, not its label
                    try:
                        seea[f"{key}/{r['service']}/{col}"] = float(v)
                    except ValueError:
                        seea[f"{key}/{r['service']}/{col}"] = v
    snap["seea"] = seea

    maps = {}
    for tif in sorted(Path(res.outputs["rasters"]).glob("*.tif")):
        with rasterio.open(tif) as ds:
            a = ds.read(1, masked=True).astype("float64").filled(np.nan)
        fin = np.isfinite(a)
        maps[tif.name] = {"sum": float(a[fin].sum()), "n": int(fin.sum())}
    snap["maps"] = maps
    return snap


# --- comparison -------------------------------------------------------------------------------------
def _close(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        if a == b or (math.isnan(a) and math.isnan(b)):
            return True
        return abs(a - b) <= REL * max(abs(a), abs(b))
    return a == b


def _compare(expected, actual, path, errors, scale=None):
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            errors.append(f"{path}: expected a mapping, got {actual!r}")
            return
        missing = sorted(set(expected) - set(actual))
        extra = sorted(set(actual) - set(expected))
        if missing:
            errors.append(f"{path}: missing {missing[:8]}{' …' if len(missing) > 8 else ''}")
        if extra:
            errors.append(f"{path}: unexpected {extra[:8]}{' …' if len(extra) > 8 else ''}")
        for k in expected:
            if k in actual:
                _compare(expected[k], actual[k], f"{path}/{k}", errors)
    elif isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            errors.append(f"{path}: expected {expected!r}, got {actual!r}")
            return
        for i, (e, a) in enumerate(zip(expected, actual)):
            _compare(e, a, f"{path}[{i}]", errors)
    elif not _close(expected, actual):
        errors.append(f"{path}: expected {expected!r}, got {actual!r}")


def _compare_stats(expected: dict, actual: dict, errors: list[str]) -> None:
    for key, e in expected.items():
        a = actual.get(key)
        if not isinstance(e, dict):
            if a != e:
                errors.append(f"parcel_stats/{key}: expected {e!r}, got {a!r}")
            continue
        if a is None:
            errors.append(f"parcel_stats/{key}: missing")
            continue
        tol = REL * max(e["sum_abs"], 1e-300)
        for k in ("sum", "proj1", "proj2"):
            if abs(e[k] - a[k]) > tol:
                errors.append(f"parcel_stats/{key}/{k}: expected {e[k]!r}, got {a[k]!r} (tolerance {tol:.3g})")
        if e["n"] != a["n"] or not _close(e["sum_abs"], a["sum_abs"]):
            errors.append(f"parcel_stats/{key}: n/sum_abs {e['n']}/{e['sum_abs']!r} != {a['n']}/{a['sum_abs']!r}")
        if e["sha256_8sig"] != a["sha256_8sig"]:
            errors.append(f"parcel_stats/{key}: parcel values differ beyond 8 significant digits somewhere (hash)")
    extra = set(actual) - set(expected)
    if extra:
        errors.append(f"parcel_stats: unexpected {sorted(extra)}")


@pytest.fixture(scope="module")
def snap(pilot_run):
    store, res = pilot_run
    return json.loads(json.dumps(snapshot(store, res)))  # same float round trip as the fixture


def test_pilot90_values_equal_the_stored_pre_refactor_values(snap):
    expected = json.loads(FIXTURE.read_text(encoding="utf-8"))
    errors: list[str] = []
    for part in ("summary", "rows", "parcel_sample", "seea", "maps"):
        _compare(expected[part], snap[part], part, errors)
    _compare_stats(expected["parcel_stats"], snap["parcel_stats"], errors)
    assert not errors, f"{len(errors)} stored values changed:\n" + "\n".join(errors[:40])


def test_snapshot_comparison_detects_a_changed_parcel(pilot_run, snap):
    """The comparison itself can fail: one parcel's value nudged by 1e-7 relative is reported."""
    store, res = pilot_run
    svc = store.table("services", res.run_id)
    ps = svc[svc.zone_kind == "parcel"].sort_values(["zone_id", "service"])
    g = ps[ps.service == "water_conservation"]
    vals = g["value_cny"].to_numpy().copy()
    assert _col_stats(vals) == snap["parcel_stats"]["services/water_conservation/value_cny"]
    i = int(np.flatnonzero(vals)[7])
    vals[i] *= 1 + 1e-7
    errors: list[str] = []
    _compare_stats({"x": snap["parcel_stats"]["services/water_conservation/value_cny"]}, {"x": _col_stats(vals)}, errors)
    assert errors and all("parcel_stats/x" in e for e in errors), errors


if __name__ == "__main__":  # write the fixture from the current code
    import tempfile

    from conftest import SEED, SMALL_RES_M  # noqa: E402  (run from tests/)

    from eco_value.inputs.pilot import generate_pilot
    from eco_value.pipeline import RunOptions, run_valuation
    from eco_value.store import Store

    with tempfile.TemporaryDirectory() as td:
        d = Path(td) / "pilot" / "qionglai"
        generate_pilot("qionglai", d, resolution_m=SMALL_RES_M, seed=SEED)
        store = Store(f"sqlite:///{Path(td) / 'run.sqlite'}")
        res = run_valuation(d / "catalog.toml", store, RunOptions(out_dir=Path(td) / "out" / "results", mc_draws=500))
        FIXTURE.parent.mkdir(exist_ok=True)
        FIXTURE.write_text(json.dumps(snapshot(store, res), indent=0, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size / 1024:.0f} KB)")
