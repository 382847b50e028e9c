"""Carbon engine: hand-computed known answers, zone additivity, Monte Carlo, hashes, laziness.

Known answers use the published species parameters directly (SFA 2011 guideline table as quoted in
shared/methods/carbon.md): D (t d.m./m3), BEF, R, CF; CO2/C = 44/12; IPCC Tier 1 DOM/SOC defaults
of accounting_rules/cn2011-mee2020.toml.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr

from eco_value.carbon import coefficients, stock_difference, stock_tc_per_ha
from eco_value.carbon.uncertainty import SufficientStats, monte_carlo
from eco_value.carbon import species_code
from eco_value.rules import load_rules
from eco_value.rules.ecosystem import ecosystem_types

RULES = load_rules("cn2011-mee2020")
TYPES = ecosystem_types()
TYPE = {t.name: t.id for t in TYPES}   # engine ecosystem-type ids by name (the engine's own vocabulary)
SPECIES = {  # engine species id: (D, BEF, R, CF) as published / as in the rule file
    species_code("cunninghamia"): (0.307, 1.634, 0.246, 0.520),      # 杉木
    species_code("cryptomeria"): (0.294, 2.593, 0.267, 0.524),       # 柳杉
    species_code("pinus_massoniana"): (0.380, 1.472, 0.187, 0.460),  # 马尾松
    species_code("cupressus"): (0.478, 1.732, 0.220, 0.510),         # 柏木
    species_code("alnus"): (0.443, 1.586, 0.289, 0.485),             # 桤木 (软阔类 values, unverified)
    species_code("broadleaf"): (0.482, 1.514, 0.262, 0.490),         # 阔叶混 (unverified)
}
FIR, BAMBOO, SHRUB = species_code("cunninghamia"), species_code("bamboo"), species_code("shrub")
CO2_PER_C = 44 / 12


def grid3(value, dtype, nodata):
    a = xr.DataArray(da.from_array(np.full((3, 3), value, dtype=dtype), chunks=2), dims=("y", "x"))
    a.attrs["nodata"] = nodata
    return a


def run3(v1, sp1, lc1, v2, sp2, lc2):
    f = lambda v: grid3(v, "float32", -9999.0)  # noqa: E731
    c = lambda v: grid3(v, "uint8", 255)  # noqa: E731
    out = stock_difference(f(v1), c(sp1), c(lc1), f(v2), c(sp2), c(lc2), (2020, 2023), coefficients(RULES))
    return {k: np.asarray(v.values) for k, v in out.items()}


@pytest.mark.parametrize("code", sorted(SPECIES))
def test_forest_remaining_forest_sink_per_species(code):
    d, bef, r, cf = SPECIES[code]
    out = run3(100.0, code, TYPE["forest"], 130.0, code, TYPE["forest"])
    expected = 30.0 * d * bef * (1 + r) * cf / 3.0 * CO2_PER_C
    np.testing.assert_allclose(out["sink_tco2e_per_ha_yr"], expected, rtol=1e-12)
    # stock 2023 = biomass + litter 13 + SOC 88 (t C/ha)
    np.testing.assert_allclose(out["stock_t2_tc_per_ha"], 130.0 * d * bef * (1 + r) * cf + 13.0 + 88.0, rtol=1e-12)
    assert (out["lucc"] == 1).all()


def test_cunninghamia_by_hand():
    # 0.307 * 1.634 * 1.246 * 0.520 = 0.32502129296 t C per m3; 30 m3 over 3 years
    out = run3(100.0, FIR, TYPE["forest"], 130.0, FIR, TYPE["forest"])
    assert out["sink_tco2e_per_ha_yr"][0, 0] == pytest.approx(11.917447408533, rel=1e-11)


def test_deforestation_loses_biomass_litter_and_soil_transition():
    out = run3(100.0, FIR, TYPE["forest"], 0.0, 0, TYPE["impervious"])
    # (0 - 32.502129296 + 0 - 13) / 3 + (70.4 - 88) / 20 = -16.047376432 t C/ha/yr
    assert out["sink_tco2e_per_ha_yr"][1, 1] == pytest.approx(-16.047376432 * CO2_PER_C, rel=1e-10)
    assert (out["lucc"] == 3).all()


def test_afforestation_of_cropland():
    out = run3(0.0, 0, TYPE["cropland"], 15.0, FIR, TYPE["forest"])
    # biomass 10.6 t d.m./ha * 0.47 = 4.982 -> 15 * 0.32502129296 = 4.8753193944; litter 0 -> 13; SOC 60.7 -> 88
    rate = (4.8753193944 - 4.982 + 13.0) / 3.0 + (88.0 - 60.7) / 20.0
    assert out["sink_tco2e_per_ha_yr"][2, 2] == pytest.approx(rate * CO2_PER_C, rel=1e-10)
    assert (out["lucc"] == 2).all()


def test_bamboo_and_shrub_per_area_stocks_and_no_change():
    bam = run3(0.0, BAMBOO, TYPE["forest"], 0.0, BAMBOO, TYPE["forest"])
    assert bam["stock_t2_tc_per_ha"][0, 0] == pytest.approx(65.0 * 0.504 + 13.0 + 88.0)
    assert bam["sink_tco2e_per_ha_yr"][0, 0] == 0.0
    shr = run3(0.0, SHRUB, TYPE["shrub"], 0.0, SHRUB, TYPE["shrub"])
    assert shr["stock_t2_tc_per_ha"][0, 0] == pytest.approx(20.0 * 0.47 + 5.0 + 88.0)


def test_nodata_pixels_give_nan_not_zero():
    f = grid3(100.0, "float32", -9999.0)
    lc = grid3(TYPE["forest"], "uint8", 255)
    lc2 = lc.copy(data=da.from_array(np.array([[255, 2, 2], [2, 2, 2], [2, 2, 2]], dtype="uint8"), chunks=2))
    lc2.attrs["nodata"] = 255
    sp = grid3(1, "uint8", 255)
    st = stock_tc_per_ha(f, sp, lc2, coefficients(RULES)).values
    assert np.isnan(st[0, 0]) and np.isfinite(st[1, 1])


def _stats():
    # one zone: 100 ha of fir from 100 to 130 m3/ha
    sv1 = np.zeros((1, 9)); sv2 = np.zeros((1, 9)); sa = np.zeros((1, 9)); ca = np.zeros((1, 10))
    sv1[0, 1], sv2[0, 1], sa[0, 1], ca[0, 2] = 100 * 100.0, 100 * 130.0, 100.0, 100.0
    return SufficientStats(sv1, sv2, sa, sa.copy(), ca, ca.copy(), 3.0)


def test_monte_carlo_mean_matches_deterministic_and_widens_with_uncertainty():
    mc = monte_carlo(_stats(), RULES, n=4000, seed=1)
    det = 100 * 11.917447408533
    assert mc["deterministic"][0] == pytest.approx(det, rel=1e-10)
    assert mc["mean"][0] == pytest.approx(det, rel=0.01)
    assert mc["low"][0] < det < mc["high"][0]
    wide = RULES.with_uncertainty("carbon.species.cunninghamia.bef", ci95_pct=60)
    mc2 = monte_carlo(_stats(), wide, n=4000, seed=1)
    assert (mc2["high"][0] - mc2["low"][0]) > 1.5 * (mc["high"][0] - mc["low"][0])


def test_monte_carlo_is_seeded():
    a = monte_carlo(_stats(), RULES, n=500, seed=3)
    b = monte_carlo(_stats(), RULES, n=500, seed=3)
    assert a["low"][0] == b["low"][0] and a["high"][0] == b["high"][0]


def test_changing_one_parameter_changes_hash_and_result():
    r2 = RULES.with_value("carbon.species.cunninghamia.bef", 1.7)
    assert r2.content_hash != RULES.content_hash
    a = monte_carlo(_stats(), RULES, n=0)["deterministic"][0]
    b = monte_carlo(_stats(), r2, n=0)["deterministic"][0]
    assert b == pytest.approx(a * 1.7 / 1.634, rel=1e-12)


def test_county_equals_sum_of_parcels_and_of_townships(pilot_run):
    store, res = pilot_run
    c = store.table("carbon", res.run_id)
    county = c[c.zone_kind == "county"].net_sink_tco2e_per_yr.sum()
    parcels = c[c.zone_kind == "parcel"].net_sink_tco2e_per_yr.sum()
    towns = c[c.zone_kind == "township"].net_sink_tco2e_per_yr.sum()
    assert parcels == pytest.approx(county, rel=1e-9)
    assert towns == pytest.approx(county, rel=1e-9)
    assert c[c.zone_kind == "parcel"].stock_t2_tc.sum() == pytest.approx(c[c.zone_kind == "county"].stock_t2_tc.sum(), rel=1e-9)


def test_run_records_the_rule_set_hash(pilot_run):
    store, res = pilot_run
    assert store.run(res.run_id).ruleset_hash == RULES.content_hash == res.summary["rules"]["hash"]


def test_the_valuation_is_lazy_until_one_compute(pilot_dir, tmp_path):
    """Counts scheduler invocations during a whole run: exactly one dask compute."""
    from eco_value.pipeline import RunOptions, run_valuation
    from eco_value.store import Store

    starts = []

    class Count(dask.callbacks.Callback):
        def _start(self, dsk):
            starts.append(len(dsk))

    with Count():
        run_valuation(pilot_dir / "catalog.toml", Store(f"sqlite:///{tmp_path / 's.sqlite'}"),
                      RunOptions(out_dir=tmp_path / "o", mc_draws=50, write_rasters=False))
    assert len(starts) == 1


def test_gain_loss_method_by_hand():
    from eco_value.carbon import gain_loss

    sp = grid3(1, "uint8", 255)
    harvest = xr.DataArray(np.full((3, 3), 2.0), dims=("y", "x"))
    out = gain_loss(None, sp, harvest, RULES).values
    # gain 9 m3/ha/yr x 0.32502129296 t C/m3; loss 2 m3/ha/yr x the same; x 44/12
    assert out[0, 0] == pytest.approx((9.0 - 2.0) * 0.32502129296 * 44 / 12, rel=1e-10)
