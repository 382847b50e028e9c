"""`eco-value compare`: difference maps, tables by service and township, refusal of different regions/grids."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from eco_value.cli import main
from eco_value.inputs.pilot import generate_pilot
from eco_value.outputs.compare import CompareError, compare_runs
from eco_value.pipeline import RunOptions, run_valuation
from eco_value.rules import diff as rules_diff
from eco_value.rules import load_rules
from eco_value.services import SERVICES
from eco_value.services.base import price_factor
from eco_value.store import Store

RES_M = 300.0


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("cmp") / "qionglai"
    generate_pilot("qionglai", d, resolution_m=RES_M, seed=3)
    db = f"sqlite:///{d.parent / 'store.sqlite'}"
    store = Store(db)
    a = run_valuation(d / "catalog.toml", store, RunOptions(out_dir=d.parent / "ra", mc_draws=50))
    b = run_valuation(d / "catalog.toml", store, RunOptions(rules="cn2011-mee2020-reservoir-high",
                                                            out_dir=d.parent / "rb", mc_draws=50))
    return store, db, a.run_id, b.run_id, d


def test_compare_with_itself_is_zero(two_runs, tmp_path, capsys):
    store, db, a, _b, _d = two_runs
    out = tmp_path / "self"
    with pytest.raises(SystemExit) as e:
        main(["compare", a, a, "--db", db, "--out", str(out), "--json"])
    assert e.value.code == 0
    d = json.loads(capsys.readouterr().out)
    assert d["services"] and all(r["value_diff_cny"] == 0 and r["quantity_diff"] == 0 and r["value_rel"] == 0
                                 for r in d["services"])
    assert {r["zone_kind"] for r in d["services"]} == {"county", "township"}
    assert all(g["gep_diff_cny"] == 0 for g in d["gep"])
    assert "gep_cny_per_km2" in d["maps"] and len(d["outputs"]["maps"]) == len(d["maps"])
    for name in d["maps"]:
        with rasterio.open(out / f"diff_{name}.tif") as src:
            arr = src.read(1, masked=True)
            assert src.profile["driver"] == "GTiff" and src.tags().get("note") == "run B minus run A"
        assert arr.count() > 0 and np.all(arr.compressed() == 0)
    assert (out / "compare.html").read_text().count("<tr>") > 5
    assert (out / "compare_services.csv").exists()


def test_compare_two_rule_sets_matches_rules_diff(two_runs, tmp_path):
    store, _db, a, b, _d = two_runs
    ra, rb = load_rules("cn2011-mee2020"), load_rules("cn2011-mee2020-reservoir-high")
    changed = {r["parameter"] for r in rules_diff(ra, rb)}
    assert changed == {"gep.water_conservation.price", "gep.water_conservation.price_year"}
    # what rules diff predicts: only water conservation's value changes, by the ratio of the rebased prices
    target = ra.meta.price_year
    pa = ra.value("gep.water_conservation.price") * price_factor(ra, int(ra.value("gep.water_conservation.price_year")), target)
    pb = rb.value("gep.water_conservation.price") * price_factor(rb, int(rb.value("gep.water_conservation.price_year")), target)
    # the services that read a changed parameter (the reservoir cost values water conservation and flood storage)
    affected = {k for k, svc in SERVICES.items()
                if any(c == p or c.startswith(p + ".") for c in changed for p in svc.SPEC.parameters)}
    assert affected == {"water_conservation", "flood_regulation"}
    d = compare_runs(store, a, b)
    seen = set()
    for r in d["services"]:
        assert r["quantity_diff"] == pytest.approx(0.0, abs=1e-6 * max(1.0, abs(r["quantity_a"])))
        if r["service"] in affected and r["value_a_cny"] > 0:
            # per pixel, value = quantity x price is rounded to float32 (eco_value.grid.PIXEL_DTYPE): the
            # ratio of the two runs' sums holds to float32 precision, not float64's
            assert r["value_b_cny"] / r["value_a_cny"] == pytest.approx(pb / pa, rel=1e-6)
            assert r["value_rel"] == pytest.approx(pb / pa - 1, rel=1e-6)
            seen.add(r["service"])
        elif r["service"] not in affected:
            assert r["value_diff_cny"] == pytest.approx(0.0, abs=1e-6 * max(1.0, abs(r["value_a_cny"])))
    assert seen == affected
    county = {r["service"]: r for r in d["services"] if r["zone_kind"] == "county"}
    gep = next(g for g in d["gep"] if g["zone_kind"] == "county")
    assert gep["gep_diff_cny"] == pytest.approx(sum(county[k]["value_diff_cny"] for k in affected), rel=1e-9)
    from eco_value.outputs.compare import write_difference_maps

    stats = write_difference_maps(store, d, tmp_path)
    with rasterio.open(tmp_path / "diff_water_conservation_value_cny_per_km2.tif") as s1, \
            rasterio.open(json.loads(store.run(a).summary_json)["outputs"]["rasters"] + "/water_conservation_value_cny_per_km2.tif") as s0:
        dv, va = s1.read(1, masked=True), s0.read(1, masked=True)
    m = va.compressed() != 0
    assert np.allclose(dv.compressed()[m] / va.compressed()[m], pb / pa - 1, rtol=1e-4)
    assert stats["carbon_sink_tco2e_per_ha_yr"]["min"] == 0 == stats["carbon_sink_tco2e_per_ha_yr"]["max"]


def test_compare_refuses_other_region(two_runs, tmp_path, capsys):
    store, db, a, _b, _d = two_runs
    d2 = tmp_path / "dayi"
    generate_pilot("dayi", d2, resolution_m=RES_M, seed=3)
    c = run_valuation(d2 / "catalog.toml", store, RunOptions(write_rasters=False, mc_draws=20))
    with pytest.raises(CompareError, match="same region"):
        compare_runs(store, a, c.run_id)
    with pytest.raises(SystemExit) as e:
        main(["compare", a, c.run_id, "--db", db, "--out", str(tmp_path / "x")])
    assert e.value.code == 2
    assert not (tmp_path / "x").exists()
    assert "same region" in capsys.readouterr().err


def test_compare_refuses_other_grid(two_runs, tmp_path):
    store, _db, a, _b, d = two_runs
    from eco_value.outputs.compare import _grid_of

    other = tmp_path / "q2"
    generate_pilot("qionglai", other, resolution_m=2 * RES_M, seed=3)
    c = run_valuation(other / "catalog.toml", store, RunOptions(out_dir=tmp_path / "rc", mc_draws=20))
    # same boundary file (the generator is deterministic), other cell size
    with pytest.raises(CompareError, match="different (grids|county boundaries)"):
        compare_runs(store, a, c.run_id)
    assert _grid_of(tmp_path / "rc" / "gep_cny_per_km2.tif")[2] != _grid_of(d.parent / "ra" / "gep_cny_per_km2.tif")[2]


def test_compare_out_is_safe(two_runs, tmp_path, capsys):
    store, db, a, b, d = two_runs
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as e:
        main(["compare", a, b, "--db", db, "--out", str(mine)])
    assert e.value.code == 2 and "--overwrite" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "mine"
    for never, word in ((d.parent / "ra", "results of run"), (d, "catalog")):   # even with --overwrite
        before = sorted(p.name for p in never.iterdir())
        with pytest.raises(SystemExit) as e:
            main(["compare", a, b, "--db", db, "--out", str(never), "--overwrite"])
        assert e.value.code == 2 and word in capsys.readouterr().err
        assert sorted(p.name for p in never.iterdir()) == before
