"""The command line a bureau officer uses: one command, JSON for machines, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def cli(*args, check=False, env=None):
    return subprocess.run([sys.executable, "-m", "eco_value.cli", *map(str, args)], capture_output=True, text=True,
                          check=check, env={**os.environ, **(env or {})})


def test_help_lists_every_command_with_one_line():
    out = cli("--help", check=True).stdout
    for cmd in ("pilot-data", "validate", "run", "runs", "show", "diff", "export-table", "report", "rules",
                "carbon-stock", "methods", "demo", "sensitivity"):
        assert cmd in out


def test_run_json_has_the_documented_keys_and_services_sum_to_total(pilot_dir, tmp_path):
    db = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    r = cli("run", pilot_dir / "catalog.toml", "--db", db, "--out", tmp_path / "out", "--mc-draws", "100", "--json")
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert {"run_id", "region", "period", "carbon", "gep", "outputs"} <= set(j)
    assert {"net_sink_tco2e_per_yr", "ci95_tco2e_per_yr", "stock_tc"} <= set(j["carbon"])
    services = j["gep"]["by_service"]
    assert len(services) == 10
    assert all({"quantity", "unit", "value_cny"} <= set(v) for v in services.values())
    assert sum(v["value_cny"] for v in services.values()) == pytest.approx(j["gep"]["total_cny"], rel=1e-12)
    assert all(v["value_cny"] >= 0 for v in services.values())
    lo, hi = j["gep"]["ci95_cny"]   # GEP Monte Carlo (eco_value.gep_uncertainty)
    assert lo < j["gep"]["total_cny"] < hi
    assert set(j["gep"]["by_service_ci95_cny"]) == set(services)
    tw = j["gep"]["by_township_ci95_cny"]   # the townships' GEP intervals (issue 15 item 2)
    assert len(tw) == 18 and all(0 < lo < hi for lo, hi in tw.values())
    for key in ("report", "geopackage", "parcel_csv", "township_csv"):
        assert os.path.exists(j["outputs"][key]), key
    runs = json.loads(cli("runs", "--db", db, "--json", check=True).stdout)
    assert runs[0]["run_id"] == j["run_id"] and runs[0]["status"] == "complete"
    show = json.loads(cli("show", j["run_id"][:8], "--db", db, "--json", check=True).stdout)
    assert show["summary"]["gep"]["total_cny"] == j["gep"]["total_cny"]
    exp = tmp_path / "parcels.csv"
    cli("export-table", "carbon", j["run_id"], "--out", exp, "--db", db, check=True)
    import pandas as pd
    df = pd.read_csv(exp)
    assert (df.zone_kind == "parcel").sum() > 1000


def test_invalid_catalog_gives_one_paragraph_and_exit_2(pilot_copy, tmp_path):
    (pilot_copy / "aet.tif").unlink()
    r = cli("run", pilot_copy / "catalog.toml", "--db", f"sqlite:///{tmp_path / 'x.sqlite'}")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "aet.tif" in r.stderr and "does not exist" in r.stderr and "Fix:" in r.stderr
    v = cli("validate", pilot_copy / "catalog.toml", "--json")
    assert v.returncode == 2 and json.loads(v.stdout)["problems"][0]["kind"] == "missing-file"


def test_unknown_rule_set_is_exit_2():
    r = cli("rules", "show", "nope")
    assert r.returncode == 2 and "available" in r.stderr


def test_rules_and_methods_commands():
    j = json.loads(cli("rules", "list", "--json", check=True).stdout)
    assert {r["name"] for r in j} >= {"cn2011-mee2020", "cn2011-ndrc2022"}
    d = json.loads(cli("rules", "diff", "cn2011-mee2020", "ipcc-tier1-mee2020", "--json", check=True).stdout)
    assert any(r["parameter"].endswith("carbon_fraction") for r in d)
    m = cli("methods", "--rules", "cn2011-mee2020", check=True).stdout
    assert "Water conservation" in m and "`carbon.species.cunninghamia.bef` | 1.634" in m


def test_db_from_environment(pilot_dir, tmp_path):
    db = f"sqlite:///{tmp_path / 'env.sqlite'}"
    r = cli("runs", "--json", env={"ECO_VALUE_DB": db})
    assert r.returncode == 0 and json.loads(r.stdout) == []
    assert (tmp_path / "env.sqlite").exists()


def test_outputs_carry_units_run_id_and_seea_tables(pilot_run):
    import pandas as pd
    import rasterio

    store, res = pilot_run
    folder = res.outputs["rasters"]
    with rasterio.open(f"{folder}/carbon_sink_tco2e_per_ha_yr.tif") as src:
        tags = src.tags()
        assert src.crs.to_epsg() == 32648 and src.nodata == -9999.0
        assert tags["run_id"] == res.run_id and tags["units"] == "t CO2e/ha/yr"
        assert src.overviews(1) or src.width <= 512
    m = pd.read_csv(res.outputs["seea_monetary_csv"])
    total = m[m.service == "GEP total"]["total"].iloc[0]
    assert total == pytest.approx(res.summary["gep"]["total_cny"], rel=1e-9)
    forest_cols = [c for c in m.columns if c.startswith("forest")]
    assert m[m.service != "GEP total"][forest_cols[0]].sum() > 0
    p = pd.read_csv(res.outputs["seea_physical_csv"])
    assert set(p.service) == set(res.summary["gep"]["by_service"])


def test_dayi_pilot_runs_with_every_service_townships_summing_to_county_and_plausible_gep(tmp_path):
    from eco_value.inputs.pilot import generate_pilot

    generate_pilot("dayi", tmp_path / "dayi", resolution_m=150, seed=3)
    db = f"sqlite:///{tmp_path / 'd.sqlite'}"
    r = cli("run", tmp_path / "dayi" / "catalog.toml", "--db", db, "--mc-draws", "100", "--json")
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert all(v["value_cny"] >= 0 for v in j["gep"]["by_service"].values())
    # plausibility on the synthetic Dayi pilot, not a known answer (see test_plausibility.py)
    assert 1e7 <= j["gep"]["total_cny"] / 1279 <= 1e8       # Dayi 1,279 km2 (UTM area of the outline)
    from eco_value.store import Store
    s = Store(db).table("services", j["run_id"])
    assert s[s.zone_kind == "township"].value_cny.sum() == pytest.approx(s[s.zone_kind == "county"].value_cny.sum(), rel=1e-9)
