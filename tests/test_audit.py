"""Audit: explain reproduces the stored parcel value from the numbers it prints; rerun is bit-identical."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def test_explain_chain_reproduces_the_stored_parcel_values(pilot_run):
    store, res = pilot_run
    c = store.table("carbon", res.run_id)
    parcels = c[c.zone_kind == "parcel"]
    # a parcel with land-use change and one with forest growth
    pick = [parcels.loc[parcels.deforestation_tco2e_per_yr.idxmin()].zone_id,
            parcels.loc[parcels.net_sink_tco2e_per_yr.idxmax()].zone_id]
    db = store.url
    for pid in pick:
        out = subprocess.run([sys.executable, "-m", "eco_value.cli", "explain", res.run_id, "--parcel", pid, "--db", db, "--json"],
                             capture_output=True, text=True, check=True)
        d = json.loads(out.stdout)
        # recompute from the printed chain only
        total_c = 0.0
        for t in d["carbon"]["terms"]:
            p = {x["name"].rsplit(".", 1)[-1]: x["value"] for x in t["parameters"]}
            i = t["inputs"]
            if "SV_t1_m3" in i:
                k = p["wood_density"] * p["bef"] * (1 + p["root_shoot"]) * p["carbon_fraction"]
                total_c += k * (i["SV_t2_m3"] - i["SV_t1_m3"]) / i["dt_yr"]
            elif "biomass" in p and "dom" not in p:
                total_c += p["biomass"] * p["carbon_fraction"] * (i["A_t2_ha"] - i["A_t1_ha"]) / i["dt_yr"]
            else:
                da_ = i["A_t2_ha"] - i["A_t1_ha"]
                cf = [x["value"] for x in t["parameters"] if x["name"] == "carbon.default_carbon_fraction"][0]
                total_c += (p["biomass"] * cf + p["dom"]) * da_ / i["dt_yr"] + p["soc"] * da_ / p["soil_transition_years"]
        sink = total_c * d["carbon"]["co2_per_c"]["value"]
        assert sink == pytest.approx(d["carbon"]["stored_net_sink_tco2e_per_yr"], rel=1e-9, abs=1e-9)
        w = d["water_conservation"]
        q = sum((t["inputs"]["sum_A_P_m2mm"] * (1 - t["parameters"][0]["value"]) - t["inputs"]["sum_A_ET_m2mm"]) / 1000
                for t in w["terms"])
        # the chain is float64; the stored water value comes from the float32 per-pixel kernel (eco_value.grid.
        # PIXEL_DTYPE), within 1e-6 of float64 (tests/test_regression_pilot90.py); the carbon engine is float64
        assert q * w["price"]["value"] * w["price_index_factor"] == pytest.approx(w["stored"]["value_cny"], rel=1e-6, abs=1e-6)


def test_explain_text_output_and_pixel_mode(pilot_run):
    store, res = pilot_run
    out = subprocess.run([sys.executable, "-m", "eco_value.cli", "explain", res.run_id, "--pixel", "340000,3365000",
                          "--db", store.url], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "Carbon sink" in out.stdout and "t CO2e/yr" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "eco_value.cli", "explain", res.run_id, "--parcel", "nope", "--db", store.url],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "not in run" in bad.stderr


def test_rerun_matches_bit_for_bit(pilot_run):
    from eco_value.audit import rerun

    store, res = pilot_run
    d = rerun(store, res.run_id)
    assert d["matches"], d["mismatches"][:3]
    assert d["values_compared"] > 10_000


def _run_with_an_older_rule_set(store, run_id: str, tmp_path, missing: str) -> str:
    """A copy of the store in which the run's stored rule set lacks ``missing`` (as a run stored by a
    release before that parameter existed); the run points at that rule set by its own hash."""
    from sqlmodel import select

    from eco_value.rules import RuleSet
    from eco_value.store import Store
    from eco_value.store.models import RuleSetRow, Run

    import sqlite3

    # through SQLite's backup API, never shutil.copy: the store is in WAL mode (a file copy misses the
    # -wal frames), and closing a plain file descriptor on the database releases this process's POSIX
    # locks on it, so the shared store's later writes were lost to other processes ("no policy result",
    # "disk I/O error" in tests that ran after this one)
    src = sqlite3.connect(store.url.split("sqlite:///", 1)[1])
    dst = sqlite3.connect(tmp_path / "old.sqlite")
    with dst:
        src.backup(dst)
    src.close()
    dst.close()
    old = Store(f"sqlite:///{tmp_path / 'old.sqlite'}")
    data = old.rules_json(old.run(run_id).ruleset_hash)
    del data["params"][missing]
    rs = RuleSet.from_canonical(data)
    with old.session() as s:
        s.add(RuleSetRow(hash=rs.content_hash, name=rs.name, title=rs.meta.title, content_json=rs.canonical_json()))
        run = s.exec(select(Run).where(Run.id == run_id)).one()
        run.ruleset_hash = rs.content_hash
        s.add(run)
        s.commit()
    return old.url


@pytest.mark.parametrize("command", [["explain", "--parcel", None], ["rerun"]], ids=["explain", "rerun"])
def test_a_run_whose_stored_rule_set_predates_a_parameter_is_refused_by_name(pilot_run, tmp_path, command):
    """Issue 16 item 5: explain/rerun of an old run exit 2 naming the parameter and the run (was: internal error)."""
    store, res = pilot_run
    missing = "gep.water_conservation.price"
    db = _run_with_an_older_rule_set(store, res.run_id, tmp_path, missing)
    parcel = store.table("zones", res.run_id).query("kind == 'parcel'").zone_id.iloc[0]
    args = [parcel if a is None else a for a in command]
    out = subprocess.run([sys.executable, "-m", "eco_value.cli", args[0], res.run_id, *args[1:], "--db", db],
                         capture_output=True, text=True)
    err = " ".join(out.stderr.split())
    assert out.returncode == 2, out.stderr
    assert "internal error" not in err
    assert f"has no parameter '{missing}'" in err and f"stored with run {res.run_id}" in err and "predates" in err
