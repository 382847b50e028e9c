"""Regression: every stored number of the 90 m Qionglai pilot equals the snapshot within 1e-6 relative.

The snapshot was written by THIS module's `snapshot()` from the float64 per-pixel kernel (commit 5d29381,
values unchanged since the vocabulary refactor, whose snapshot matched it to 1e-12), with the settings of
the shared `pilot_run` fixture (conftest: 90 m, seed 7, 500 Monte Carlo draws). Two files:
- tests/data/pilot90_snapshot.json: every numeric leaf of the run summary (GEP by service and by land
  cover, carbon account, extent, ...); every county and township row of the services and carbon tables
  and the zone areas; the SEEA physical and monetary supply tables (columns keyed by ecosystem type, not
  their label); per output map the sum and count of finite pixels;
- tests/data/pilot90_parcels.json.xz: every one of the 4 499 parcels' stored values (every service's
  quantity and value, every carbon column, the area), each to 9 significant digits (5e-10 relative, far
  below the tolerance), in parcel-id order.

Tolerance (issue 17: the per-pixel kernel in float32, sums in float64): a value e matches a if
``|a - e| <= 1e-6 * max(|e|, 1e-3 * M)``, M the largest |value| of the same column among the zones of
the same kind (parcels, townships; for the summary and the SEEA tables: among the siblings, i.e. the
entries of the same table row). So it is 1e-6 of the value itself, except where a value is (near) zero
— a zone whose signed sink or water balance nearly cancels, or a zone barely touching a type — where
the absolute floor 1e-9 * M applies: a per-pixel rounding of 6e-8 relative (float32) of pixels of
that column's magnitude cannot shift a cancelling sum by less than that, while a genuine error of a
parcel still shows (`test_snapshot_comparison_detects_a_changed_parcel`: 1e-5 relative on one parcel
value, and on the county, is caught). Strings, counts and periods compare exactly.

Regenerate (only on purpose, e.g. after a deliberate change of results, and say so in the commit):
    python tests/test_regression_pilot90.py
"""

from __future__ import annotations

import csv
import json
import lzma
import math
from pathlib import Path

import numpy as np
import pytest

FIXTURE = Path(__file__).parent / "data" / "pilot90_snapshot.json"
PARCELS = Path(__file__).parent / "data" / "pilot90_parcels.json.xz"
REL = 1e-6            # relative tolerance of every stored value (issue 17)
FLOOR = 1e-3          # absolute floor: FLOOR * the column's largest |value| (see the module docstring)
SIG_DIGITS = 9        # parcel values as stored
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


BOOKKEEPING = ("/outputs_status", "/input_warnings", "/warnings")


def _sig(v: float) -> float:
    return float(f"{v:.{SIG_DIGITS - 1}e}")


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

    # parcels: every value, columns in parcel-id order
    pz = zones[zones.kind == "parcel"].sort_values("zone_id")
    ids = list(pz.zone_id)
    cols: dict[str, list] = {"zones/area_ha": [_sig(v) for v in pz.area_ha]}
    ps = svc[svc.zone_kind == "parcel"]
    for service, g in ps.groupby("service"):
        g = g.set_index("zone_id").reindex(ids)
        for c in SVC_COLS:
            cols[f"services/{service}/{c}"] = [_sig(v) for v in g[c]]
        cols[f"services/{service}/unit"] = sorted(set(g["unit"]))
    pc = carb[carb.zone_kind == "parcel"].set_index("zone_id").reindex(ids)
    for c in CARBON_COLS:
        cols[f"carbon/{c}"] = [_sig(v) for v in pc[c]]
    snap["parcels"] = {"ids": ids, "columns": cols}

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


def write(snap: dict) -> None:
    """The two fixture files from one snapshot."""
    rest = {k: v for k, v in snap.items() if k != "parcels"}
    FIXTURE.write_text(json.dumps(rest, indent=0, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    PARCELS.write_bytes(lzma.compress(json.dumps(snap["parcels"], separators=(",", ":")).encode(), preset=9 | lzma.PRESET_EXTREME))


def load() -> dict:
    snap = json.loads(FIXTURE.read_text(encoding="utf-8"))
    snap["parcels"] = json.loads(lzma.decompress(PARCELS.read_bytes()))
    return snap


# --- comparison -------------------------------------------------------------------------------------
def _column(part: str, key: str, field: str | None) -> str:
    """The column a value belongs to (its floor is FLOOR * the column's largest |value|)."""
    if part == "rows":   # services/<kind>/<zone>/<service>, carbon/<kind>/<zone>, zones/<kind>/<zone>
        bits = key.split("/")
        return "/".join([bits[0], bits[1], *bits[3:], field or ""])
    if part in ("summary", "seea"):   # siblings: the entries of one table row
        return key.rsplit("/", 1)[0]
    return f"{part}/{key}/{field}"   # maps: a map's sum stands alone


def _numbers(part: str, flat: dict) -> dict:
    """(key, field) → float of one part of a snapshot."""
    out = {}
    for k, v in flat.items():
        if isinstance(v, dict):
            for f, x in v.items():
                if isinstance(x, float):
                    out[(k, f)] = x
        elif isinstance(v, float):
            out[(k, None)] = v
    return out


def _exact(part: str, flat: dict) -> dict:
    out = {}
    for k, v in flat.items():
        if isinstance(v, dict):
            out.update({(k, f): x for f, x in v.items() if not isinstance(x, float)})
        elif not isinstance(v, float):
            out[(k, None)] = v
    return out


def deviations(expected: dict, actual: dict) -> tuple[list[str], dict[str, float]]:
    """(errors, the largest relative deviation per column) of ``actual`` against ``expected``."""
    errors: list[str] = []
    worst: dict[str, float] = {}

    def check(label: str, col: str, e: float, a: float, col_max: float) -> None:
        if e == a or (math.isnan(e) and math.isnan(a)):
            worst.setdefault(col, 0.0)
            return
        d = abs(a - e)
        rel = d / max(abs(e), FLOOR * col_max, 1e-300)
        worst[col] = max(worst.get(col, 0.0), rel if not math.isnan(rel) else math.inf)
        if not d <= REL * max(abs(e), FLOOR * col_max):
            errors.append(f"{label}: expected {e!r}, got {a!r} (relative {d / max(abs(e), 1e-300):.3g})")

    for part in ("summary", "rows", "seea", "maps"):
        e_num, a_num = _numbers(part, expected[part]), _numbers(part, actual[part])
        e_ex, a_ex = _exact(part, expected[part]), _exact(part, actual[part])
        for what, e_d, a_d in (("numbers", e_num, a_num), ("fields", e_ex, a_ex)):
            missing, extra = sorted(set(e_d) - set(a_d), key=str), sorted(set(a_d) - set(e_d), key=str)
            if missing:
                errors.append(f"{part}: missing {what} {missing[:8]}")
            if extra:
                errors.append(f"{part}: unexpected {what} {extra[:8]}")
        for k, e in e_ex.items():
            if k in a_ex and a_ex[k] != e:
                errors.append(f"{part}/{k}: expected {e!r}, got {a_ex[k]!r}")
        col_max: dict[str, float] = {}
        for (k, f), e in e_num.items():
            c = _column(part, k, f)
            col_max[c] = max(col_max.get(c, 0.0), abs(e) if not math.isnan(e) else 0.0)
        for (k, f), e in e_num.items():
            if (k, f) in a_num:
                c = _column(part, k, f)
                check(f"{part}/{k}" + (f"/{f}" if f else ""), f"{part}/{c}", e, a_num[(k, f)], col_max[c])

    ep, ap = expected["parcels"], actual["parcels"]
    if ep["ids"] != ap["ids"]:
        errors.append(f"parcels: ids differ ({len(ep['ids'])} expected, {len(ap['ids'])} now)")
        return errors, worst
    for col, e_vals in ep["columns"].items():
        a_vals = ap["columns"].get(col)
        if a_vals is None:
            errors.append(f"parcels/{col}: missing")
            continue
        if col.endswith("/unit"):
            if a_vals != e_vals:
                errors.append(f"parcels/{col}: expected {e_vals!r}, got {a_vals!r}")
            continue
        e_arr, a_arr = np.asarray(e_vals, dtype="float64"), np.asarray(a_vals, dtype="float64")
        m = float(np.nanmax(np.abs(e_arr))) if e_arr.size else 0.0
        for i in range(len(ids := ep["ids"])):
            if e_arr[i] != a_arr[i]:
                check(f"parcels/{ids[i]}/{col}", f"parcels/{col}", float(e_arr[i]), float(a_arr[i]), m)
            else:
                worst.setdefault(f"parcels/{col}", 0.0)
    extra = set(ap["columns"]) - set(ep["columns"])
    if extra:
        errors.append(f"parcels: unexpected columns {sorted(extra)}")
    return errors, worst


@pytest.fixture(scope="module")
def snap(pilot_run):
    store, res = pilot_run
    return json.loads(json.dumps(snapshot(store, res)))  # same float round trip as the fixture


def test_pilot90_values_equal_the_stored_values_within_1e_6(snap):
    errors, _ = deviations(load(), snap)
    assert not errors, f"{len(errors)} stored values changed:\n" + "\n".join(errors[:40])


def test_snapshot_comparison_detects_a_changed_parcel(snap):
    """The comparison itself can fail: one parcel's value, or the county's, nudged by 1e-5 relative is
    reported (and nothing else is)."""
    base = load()
    errors, _ = deviations(base, base)
    assert errors == []
    for nudge in ("parcel", "county"):
        changed = json.loads(json.dumps(base))
        if nudge == "parcel":
            vals = changed["parcels"]["columns"]["services/water_conservation/value_cny"]
            i = int(np.flatnonzero(vals)[7])
            vals[i] *= 1 + 1e-5
            where = f"parcels/{changed['parcels']['ids'][i]}/services/water_conservation/value_cny"
        else:
            key = next(k for k in changed["rows"] if k.startswith("services/county/") and k.endswith("/soil_conservation"))
            changed["rows"][key]["value_cny"] *= 1 + 1e-5
            where = f"rows/{key}/value_cny"
        errors, worst = deviations(base, changed)
        assert len(errors) == 1 and errors[0].startswith(where + ":"), errors
        assert max(worst.values()) == pytest.approx(1e-5, rel=1e-3)


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
        write(json.loads(json.dumps(snapshot(store, res))))
        print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size / 1024:.0f} KB), {PARCELS} ({PARCELS.stat().st_size / 1024:.0f} KB)")
