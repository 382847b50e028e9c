"""Plausibility tests on the SYNTHETIC pilot (issue 16, item 4) -- not known answers.

The pilot's rasters are made up (``eco_value/inputs/pilot.py``), so no published figure is *the*
answer for them. These tests only check that the engine's results on them land in the ranges the
literature gives for real counties of the kind the pilot imitates (subtropical plantations in
south-west China); a result outside the range means a unit or equation went wrong. Known answers --
exact values computed by hand from explicit arguments -- live in ``test_equations.py``,
``test_services.py`` and ``test_carbon.py``.
"""

from __future__ import annotations

import pytest


def test_plausibility_pilot_forest_sink_in_the_subtropical_plantation_range(pilot_run):
    """Plausibility: forest remaining forest sinks 1-5 t C/ha/yr (~4-18 t CO2e/ha/yr) in subtropical
    plantations of SW China (shared/methods/carbon.md; accounting_rules/README.md cites the anchors);
    deforestation is a source and afforestation a sink; the Monte Carlo brackets the figure."""
    _store, res = pilot_run
    c = res.summary["carbon"]
    assert 4.0 <= c["forest_sink_tco2e_per_ha_yr"] <= 18.0
    assert c["by_lucc_tco2e_per_yr"]["deforestation"] < 0 < c["by_lucc_tco2e_per_yr"]["afforestation"]
    lo, hi = c["ci95_tco2e_per_yr"]
    assert lo < c["net_sink_tco2e_per_yr"] < hi
    assert c["mc_mean_tco2e_per_yr"] == pytest.approx(c["net_sink_tco2e_per_yr"], rel=0.01)


def test_plausibility_pilot_gep_per_km2_in_the_published_county_range(pilot_run):
    """Plausibility: GEP per km2 of county GEP studies lies between 10 and 100 million CNY (README,
    results section); every service's value is non-negative on the pilot."""
    _store, res = pilot_run
    g = res.summary["gep"]
    assert 1e7 <= g["cny_per_km2"] <= 1e8
    assert g["cny_per_km2"] == pytest.approx(g["total_cny"] / res.summary["area_km2"], rel=1e-12)
    assert all(v["value_cny"] >= 0 for v in g["by_service"].values())
