"""Actual (used) GEP beside potential GEP (eco_value/accounts/actual.py)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from eco_value.inputs.beneficiaries import read_beneficiary_inputs
from eco_value.accounts.actual import DEFAULT, Beneficiaries, apply_actual, use_params, use_shares
from eco_value.accounts.zonal import zone_weights
from eco_value.errors import InputError
from eco_value.services import SERVICES

P = use_params()
Q = {"provisioning": 10.0, "water_conservation": 1000.0, "soil_conservation": 50.0, "flood_regulation": 400.0,
     "air_purification": 8.0, "water_purification": 4.0, "carbon_sequestration": 30.0, "oxygen_release": 20.0,
     "climate_regulation": 6000.0, "recreation": 100.0}


def test_default_share_is_miyun_ratio():
    assert P.default_share == pytest.approx(53.28 / 254.32, abs=0.005)
    assert "10.3389/fevo.2024.1367768" in P.citation
    s = use_shares(Q, Beneficiaries(area_km2=1.0))
    assert s["provisioning"][0] == s["recreation"][0] == 1.0
    assert s["water_conservation"] == (P.default_share, DEFAULT)
    assert set(s) == set(Q) and set(Q) == set(SERVICES)


def test_full_use_gives_actual_equal_potential():
    huge = Beneficiaries(area_km2=1.0, population=1e9, water_use_m3=1e12, emission_t={"air": 1e9, "water": 1e9})
    s = use_shares(Q, huge)
    for k in Q:
        if k in ("soil_conservation", "oxygen_release"):      # no beneficiary input defined: the default
            assert s[k] == (P.default_share, DEFAULT)
        else:
            assert s[k][0] == 1.0, k


def test_zero_use_gives_zero_actual():
    none = Beneficiaries(area_km2=1.0, population=0.0, water_use_m3=0.0, emission_t={"air": 0.0, "water": 0.0})
    s = use_shares(Q, none)
    for k in ("water_conservation", "flood_regulation", "air_purification", "water_purification", "climate_regulation"):
        assert s[k][0] == 0.0


def test_known_answers():
    b = Beneficiaries(area_km2=2.0, population=10.0, water_use_m3=250.0, emission_t={"air": 2.0, "water": 3.0})
    s = use_shares(Q, b)
    assert s["water_conservation"][0] == pytest.approx(250.0 / 1000.0)
    assert s["air_purification"][0] == pytest.approx(2.0 / 8.0)
    assert s["water_purification"][0] == pytest.approx(3.0 / 4.0)
    assert 10.0 * P.cooling_kwh_per_person < 6000.0        # below full use: the share is the ratio itself
    assert s["climate_regulation"][0] == pytest.approx(10.0 * P.cooling_kwh_per_person / 6000.0)
    assert s["flood_regulation"][0] == pytest.approx(min(1.0, 5.0 / P.flood_full_use_density))


def _tiny(tmp_path, pop: np.ndarray | None, water: str | None, emis: str | None):
    """A 2×2 grid, county = all 4 pixels, townships T1 (left column) and T2 (right column)."""
    import rasterio
    from rasterio.transform import from_origin

    layers, tables = {}, {}
    if pop is not None:
        p = tmp_path / "pop.tif"
        with rasterio.open(p, "w", driver="GTiff", width=2, height=2, count=1, dtype="float32", crs="EPSG:32648",
                           transform=from_origin(0, 200, 100, 100), nodata=-1) as dst:
            dst.write(pop.astype("float32"), 1)
        layers["population"] = SimpleNamespace(path=str(p), band=1, nodata=-1, scheme=None)
    for key, text in (("water_use", water), ("emissions", emis)):
        if text is not None:
            (tmp_path / f"{key}.csv").write_text(text)
            tables[key] = SimpleNamespace(path=str(tmp_path / f"{key}.csv"))
    cat = SimpleNamespace(layers=layers, tables=tables, path_of=lambda x: tmp_path / x)
    import geopandas as gpd
    from shapely.geometry import box

    from eco_value.grid import Grid

    grid = Grid("EPSG:32648", from_origin(0, 200, 100, 100), 2, 2, chunk_px=1)   # chunks of one pixel
    z = lambda ids, boxes: zone_weights(gpd.GeoDataFrame({"id": ids}, geometry=boxes, crs="EPSG:32648"), "id", grid)  # noqa: E731
    from eco_value.engine import ZoneSums

    ctx = {"grid": grid, "zones": {"county": ZoneSums("county", None, "id", z(["C"], [box(0, 0, 200, 200)]), {}),
                                   "township": ZoneSums("township", None, "id", z(["T1", "T2"], [box(0, 0, 100, 200),
                                                                                               box(100, 0, 200, 200)]), {})}}
    zones = [dict(kind="county", zone_id="C", area_ha=4.0, population=None, parent_id=""),
             dict(kind="township", zone_id="T1", area_ha=2.0, population=None, parent_id=""),
             dict(kind="township", zone_id="T2", area_ha=2.0, population=None, parent_id="")]
    q = {"C": 1000.0, "T1": 600.0, "T2": 400.0}
    svc = []
    for zid, qq in q.items():
        kind = "county" if zid == "C" else "township"
        for key in ("water_conservation", "climate_regulation", "provisioning", "water_purification", "soil_conservation"):
            svc.append(dict(zone_kind=kind, zone_id=zid, service=key, quantity=qq, value_cny=2.0 * qq))
    summary = {"gep": {"total_cny": 5 * 2000.0, "by_service": {k: {"value_cny": 2000.0} for k in
                                                            ("water_conservation", "climate_regulation", "provisioning",
                                                             "water_purification", "soil_conservation")}}}
    result = {"rows": {"zones": zones, "service_results": svc}, "summary": summary,
              "tables": {"township": [{"zone_id": "T1"}, {"zone_id": "T2"}]}}
    return result, cat, ctx


def _by(result):
    return {(r["zone_id"], r["service"]): r for r in result["rows"]["service_results"]}


def test_known_answer_on_a_tiny_raster(tmp_path):
    pop = np.array([[0.5, 0.0], [0.5, 1.0]])          # T1 (left column) 1 person, T2 1 person, county 2
    result, cat, ctx = _tiny(tmp_path, pop, "zone_id,water_use_m3\nT1,300\nT2,100\n", "zone_id,medium,load_t\nC,water,250\n")
    apply_actual(result, read_beneficiary_inputs(cat, ctx["grid"]), ctx["zones"])
    r = _by(result)
    assert r[("C", "water_conservation")]["used_share"] == pytest.approx(400 / 1000)      # county = Σ townships
    assert r[("T1", "water_conservation")]["actual_value_cny"] == pytest.approx(1200 * 300 / 600)
    assert r[("T2", "water_conservation")]["actual_value_cny"] == pytest.approx(800 * 100 / 400)
    assert 2 * P.cooling_kwh_per_person < 1000 and P.cooling_kwh_per_person < 400
    assert r[("C", "climate_regulation")]["used_share"] == pytest.approx(2 * P.cooling_kwh_per_person / 1000)
    assert r[("T2", "climate_regulation")]["used_share"] == pytest.approx(1 * P.cooling_kwh_per_person / 400)
    # emissions only for the county: the townships take the county's measured share, not the default
    assert r[("C", "water_purification")]["used_share"] == pytest.approx(0.25)
    assert r[("T1", "water_purification")]["used_share"] == pytest.approx(0.25)
    assert r[("T1", "soil_conservation")]["used_share"] == P.default_share
    assert r[("T1", "provisioning")]["actual_value_cny"] == r[("T1", "provisioning")]["value_cny"]
    for row in result["rows"]["service_results"]:       # actual ≤ potential everywhere
        assert 0 <= row["actual_value_cny"] <= row["value_cny"]
    g = result["summary"]["gep"]
    assert g["actual_total_cny"] == pytest.approx(sum(r[("C", k)]["actual_value_cny"] for k in g["by_service"]))
    assert g["actual"]["inputs"] == ["population", "emissions", "water_use"]
    assert result["tables"]["township"][0]["gep_actual_cny"] == pytest.approx(
        sum(v["actual_value_cny"] for (z, _k), v in r.items() if z == "T1"))


def test_no_beneficiary_inputs_gives_default(tmp_path):
    result, cat, ctx = _tiny(tmp_path, None, None, None)
    apply_actual(result, read_beneficiary_inputs(cat, ctx["grid"]), ctx["zones"])
    for row in result["rows"]["service_results"]:
        assert row["used_share"] == (1.0 if row["service"] == "provisioning" else P.default_share)


def test_negative_population_is_refused(tmp_path):
    result, cat, ctx = _tiny(tmp_path, np.array([[1.0, -3.0], [-2.0, -1.0]]), None, None)
    with pytest.raises(InputError, match=r"2 pixel\(s\) have a negative population \(e.g. -3, -2\)"):
        apply_actual(result, read_beneficiary_inputs(cat, ctx["grid"]), ctx["zones"])


def test_pipeline_stores_actual(pilot_run):
    store, res = pilot_run
    g = res.summary["gep"]
    assert 0 < g["actual_total_cny"] < g["total_cny"]
    svc = store.table("services", res.run_id)
    assert (svc.actual_value_cny <= svc.value_cny + 1e-6).all() and svc.used_share.between(0, 1).all()
    stored = json.loads(store.run(res.run_id).summary_json)["gep"]
    assert stored["actual_total_cny"] == pytest.approx(g["actual_total_cny"])
    county = svc[svc.zone_kind == "county"]
    assert county.actual_value_cny.sum() == pytest.approx(g["actual_total_cny"], rel=1e-9)
    import pandas as pd

    seea = pd.read_csv(res.outputs["seea_monetary_csv"])
    assert seea.loc[seea.service == "GEP total", "actual_used_cny"].iloc[0] == pytest.approx(g["actual_total_cny"], rel=1e-9)
    html = open(res.outputs["report"], encoding="utf-8").read()
    assert "actual (used) GEP" in html and "10.3389/fevo.2024.1367768" in html


def test_a_net_loss_counts_in_full(tmp_path):
    result, cat, ctx = _tiny(tmp_path, None, None, None)
    row = next(r for r in result["rows"]["service_results"] if r["zone_id"] == "T1" and r["service"] == "soil_conservation")
    row["value_cny"] = -100.0
    apply_actual(result, read_beneficiary_inputs(cat, ctx["grid"]), ctx["zones"])
    assert row["used_share"] == 1.0 and row["actual_value_cny"] == -100.0
