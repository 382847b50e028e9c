"""The engine's typed interface (issue 16 item 3): ZoneSums accessors give the stored run's own numbers,
RunSummary round-trips today's summary dict exactly (keys, values and order)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eco_value import engine
from eco_value.engine import EngineUsageError, RunSummary, ServiceTotal


@pytest.fixture(scope="module")
def sums(pilot_run):
    from eco_value.pipeline import stored_run_context

    store, res = pilot_run
    _run, cat, rules, opts = stored_run_context(store, res.run_id)
    return engine.zone_sums(cat, rules, opts)


def test_zone_sums_equal_the_stored_rows_exactly(pilot_run, sums):
    store, res = pilot_run
    svc = store.table("services", res.run_id).set_index(["zone_kind", "zone_id", "service"])
    carbon = store.table("carbon", res.run_id).set_index(["zone_kind", "zone_id"])
    zones = store.table("zones", res.run_id).set_index(["kind", "zone_id"])
    assert set(sums.zones) == {"county", "township", "parcel"}
    for kind, z in sums.zones.items():
        assert z.n == len(z.ids) == int((zones.index.get_level_values(0) == kind).sum()) > 0
        for i in (0, z.n - 1):
            zid = z.ids[i]
            assert z.area_ha[i] == zones.loc[(kind, zid), "area_ha"]
            assert z.carbon_sink_tco2e_per_yr[i] == carbon.loc[(kind, zid), "net_sink_tco2e_per_yr"]
            assert z.carbon_stock_t1_tc[i] == carbon.loc[(kind, zid), "stock_t1_tc"]
            assert z.lucc(i)["deforestation"][0] == carbon.loc[(kind, zid), "deforestation_tco2e_per_yr"]
            for key in sums.services:
                assert z.quantity(key)[i] == svc.loc[(kind, zid, key), "quantity"]
                assert z.value_cny(key)[i] == svc.loc[(kind, zid, key), "value_cny"]
                assert sums.service_unit(key) == svc.loc[(kind, zid, key), "unit"]
    county = sums["county"]
    g = res.summary["gep"]
    for key in sums.services:   # by ecosystem type: the county's sums split, nothing lost
        assert county.by_type(key).sum() == pytest.approx(g["by_service"][key]["value_cny"], rel=1e-12, abs=1e-6)
        assert county.by_type(key, "quantity").sum() == pytest.approx(g["by_service"][key]["quantity"], rel=1e-12, abs=1e-9)
    st = county.sufficient_stats(5.0)
    assert st.dt == 5.0 and st.sv1.shape == st.sv2.shape and st.ca1.shape == county.type_area_ha(1).shape
    assert np.array_equal(st.ca2, county.type_area_ha(2))
    assert set(county.gep_mc_sums(0)) >= {"a_ha", "p_m3", "et_m3"}


def test_asking_for_what_a_zone_kind_does_not_hold_is_a_clear_error(sums):
    with pytest.raises(EngineUsageError, match="parcel sums hold no value_cny of 'water_conservation' by ecosystem type"):
        sums["parcel"].by_type("water_conservation")
    with pytest.raises(EngineUsageError, match="no zone kind 'village'"):
        sums["village"]
    with pytest.raises(EngineUsageError, match="measure must be one of"):
        sums["county"].by_type("water_conservation", "value")
    with pytest.raises(EngineUsageError, match="period must be 1 or 2"):
        sums["county"].type_area_ha(3)


def test_run_summary_round_trips_the_stored_summary_exactly(pilot_run):
    store, res = pilot_run
    # the run's in-memory summary keeps the assembly's key order; the store's copy is sorted
    assert json.dumps(RunSummary.from_dict(res.summary).to_dict()) == json.dumps(res.summary)
    for d in (res.summary, json.loads(store.run(res.run_id).summary_json)):
        s = RunSummary.from_dict(d)
        assert s.to_dict() == d
        assert s.carbon.net_sink_tco2e_per_yr == d["carbon"]["net_sink_tco2e_per_yr"]
        assert s.carbon.ci95_tco2e_per_yr == d["carbon"]["ci95_tco2e_per_yr"]
        w = s.gep.by_service["water_conservation"]
        assert isinstance(w, ServiceTotal) and w.value_cny == d["gep"]["by_service"]["water_conservation"]["value_cny"]
        assert w.used_share == d["gep"]["by_service"]["water_conservation"]["used_share"]
        assert s.gep.total_cny == d["gep"]["total_cny"] and s.gep.actual_total_cny == d["gep"]["actual_total_cny"]
        assert s.extra["outputs_status"] == d["outputs_status"]   # keys added by the run lifecycle are kept


def test_run_summary_keeps_keys_it_does_not_know_where_they_are():
    d = {"run_id": "r", "region": "x", "adcode": "1", "name_zh": "", "synthetic_inputs": True, "period": [1, 2],
         "rules": {}, "area_km2": 1.0,
         "carbon": {"net_sink_tco2e_per_yr": 1.0, "ci95_tco2e_per_yr": [0.5, 1.5], "mc_mean_tco2e_per_yr": 1.0,
                    "mc_draws": 2, "mc_seed": 3, "approach1_ci95_pct": None, "stock_tc": 9.0, "stock_t1_tc": 8.0,
                    "by_lucc_tco2e_per_yr": {}, "by_lucc_area_ha": {}, "forest_sink_tco2e_per_ha_yr": 0.1, "new": 1},
         "gep": {"total_cny": 2.0, "by_service": {"a": {"quantity": 1.0, "unit": "t", "value_cny": 2.0, "zone_ci": [1]}},
                 "price_year": 2020, "cny_per_km2": 2.0, "per_capita_cny": None, "by_land_cover_cny": {},
                 "by_land_cover_quantity": {}},
         "extent": {}, "population": None}
    s = RunSummary.from_dict(d)
    assert s.to_dict() == d and s.carbon.extra == {"new": 1} and s.gep.by_service["a"].extra == {"zone_ci": [1]}
    assert "uncertainty" not in s.to_dict()["gep"] and "input_warnings" not in s.to_dict()
