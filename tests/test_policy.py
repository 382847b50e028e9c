"""Policy instruments: land-unit value, damage compensation, GEP-linked quota allocation."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from eco_value.inputs.schemes import load_scheme
from eco_value.policy import allocate, allocation_scores, damage, largest_remainder, present_value, value_unit

CLCD = {n: c for c, n in load_scheme("clcd").int_codes().items()}   # the pilot rasters are CLCD-coded


def _write(gdf, path):
    gdf.to_file(path, driver="GPKG" if str(path).endswith(".gpkg") else "GeoJSON")
    return path


def test_whole_county_gives_the_run_total_and_halves_add_up(pilot_run, pilot_dir, tmp_path):
    store, res = pilot_run
    county = gpd.read_file(pilot_dir / "boundary.gpkg")
    # the county outline in WGS 84 (any CRS is accepted)
    whole = _write(county.to_crs("EPSG:4326"), tmp_path / "county.geojson")
    d = value_unit(store, res.run_id, whole)
    assert d["gep_total_cny"] == pytest.approx(res.summary["gep"]["total_cny"], rel=1e-9)
    assert d["carbon"]["net_sink_tco2e_per_yr"] == pytest.approx(res.summary["carbon"]["net_sink_tco2e_per_yr"], rel=1e-9)
    g = county.geometry.iloc[0]
    minx, miny, maxx, maxy = g.bounds
    cut = (minx + maxx) / 2 + 1234.5          # not on a pixel edge
    west = shapely.intersection(g, shapely.box(minx - 1, miny - 1, cut, maxy + 1))
    east = shapely.intersection(g, shapely.box(cut, miny - 1, maxx + 1, maxy + 1))
    dw = value_unit(store, res.run_id, _write(gpd.GeoDataFrame(geometry=[west], crs=county.crs), tmp_path / "w.gpkg"))
    de = value_unit(store, res.run_id, _write(gpd.GeoDataFrame(geometry=[east], crs=county.crs), tmp_path / "e.gpkg"))
    assert dw["gep_total_cny"] + de["gep_total_cny"] == pytest.approx(d["gep_total_cny"], rel=1e-9)
    for k in d["by_service"]:
        assert dw["by_service"][k]["value_cny"] + de["by_service"][k]["value_cny"] == pytest.approx(d["by_service"][k]["value_cny"], rel=1e-9, abs=1e-6)
    assert d["market_realisable_cny"] + d["public_good_cny"] == pytest.approx(d["gep_total_cny"])
    pv = value_unit(store, res.run_id, whole, years=20, discount_rate=0.045)
    assert pv["present_value_cny"] == pytest.approx(pv["gep_total_cny"] * (1 - 1.045 ** -20) / 0.045, rel=1e-12)


def test_present_value_by_hand():
    assert present_value(100.0, 3, 0.1) == pytest.approx(100 / 1.1 + 100 / 1.21 + 100 / 1.331)
    assert present_value(100.0, 3, 0.0) == 300.0


def _after_lulc(pilot_dir, tmp_path, change):
    with rasterio.open(pilot_dir / "lulc_2023.tif") as src:
        a, prof = src.read(1), src.profile
        transform = src.transform
    b = change(a.copy())
    prof.update(driver="GTiff")
    out = tmp_path / "after.tif"
    with rasterio.open(out, "w", **prof) as d:
        d.write(b, 1)
    return out, a, transform


def _forest_block(a, size=4):
    """Top-left corner of a size x size block of forest pixels, two pixels clear of the county edge (the
    hand-computed values assume every pixel wholly inside the county: coverage 1)."""
    f = a == CLCD["forest"]
    m = 2
    for r in range(m, a.shape[0] - size - m, 3):
        for c in range(m, a.shape[1] - size - m, 3):
            if f[r - m:r + size + m, c - m:c + size + m].all():
                return r, c
    raise AssertionError("no forest block")


def test_no_change_gives_exactly_zero(pilot_run, pilot_dir, tmp_path):
    store, res = pilot_run
    after, a, t = _after_lulc(pilot_dir, tmp_path, lambda x: x)
    r, c = _forest_block(a)
    poly = shapely.box(*rasterio.transform.array_bounds(4, 4, t * rasterio.Affine.translation(c, r)))
    p = _write(gpd.GeoDataFrame(geometry=[poly], crs="EPSG:32648"), tmp_path / "p.gpkg")
    d = damage(store, res.run_id, after, p, recovery_years=10)
    assert d["yearly_gep_loss_cny"] == 0.0 and d["carbon_stock_lost_tco2e"] == 0.0 and d["compensation_cny"] == 0.0


def test_forest_to_built_up_loss_equals_hand_computed_pixel_values(pilot_run, pilot_dir, tmp_path):
    store, res = pilot_run
    probe, a, t = _after_lulc(pilot_dir, tmp_path, lambda x: x)
    r, c = _forest_block(a)
    after, _, _ = _after_lulc(pilot_dir, tmp_path, lambda x: (x.__setitem__((slice(r, r + 4), slice(c, c + 4)), CLCD["impervious"]), x)[1])
    poly = shapely.box(*rasterio.transform.array_bounds(4, 4, t * rasterio.Affine.translation(c, r)))
    p = _write(gpd.GeoDataFrame(geometry=[poly], crs="EPSG:32648"), tmp_path / "p.gpkg")
    d = damage(store, res.run_id, after, p, recovery_years=10, discount_rate=0.03)
    F32 = 1e-6   # the engine's per-pixel results are float32 (eco_value.grid.PIXEL_DTYPE); the hand values float64
    # by hand for the 16 pixels (90 m): water conservation Q = A (P - alpha P - ET) / 1000 -> 0 on built-up
    with rasterio.open(pilot_dir / "precip.tif") as s1, rasterio.open(pilot_dir / "aet.tif") as s2:
        P = s1.read(1)[r:r + 4, c:c + 4].astype(float)
        ET = s2.read(1)[r:r + 4, c:c + 4].astype(float)
    A = 90.0 * 90.0
    wc = np.sum(A * (P - 0.0267 * P - ET) / 1000.0)
    assert d["by_service"]["water_conservation"]["quantity"] == pytest.approx(wc, rel=F32)
    # air purification: forest SO2 + NOx + dust per ha -> 0 on built-up
    ha = A / 1e4 * 16
    assert d["by_service"]["air_purification"]["quantity"] == pytest.approx(ha * (152.13 + 6.0 + 21655.0) / 1000, rel=F32)
    # climate regulation: forest transpiration EPP 2837.27 kJ/m2/d x 116 cooling days / (3600 x 3)
    assert d["by_service"]["climate_regulation"]["quantity"] == pytest.approx(2837.27 * A * 16 * 116 / (3600 * 3), rel=F32)
    assert d["carbon_stock_lost_tco2e"] > 0 and d["yearly_gep_loss_cny"] > 0
    n, rr = 10, 0.03
    assert d["interim_loss_cny"] == pytest.approx(sum(d["yearly_gep_loss_cny"] * (1 - k / n) / (1 + rr) ** k for k in range(n)))
    # a larger damaged area never gives a smaller loss
    big = shapely.box(*rasterio.transform.array_bounds(8, 8, t * rasterio.Affine.translation(c - 2, r - 2)))
    after_big, _, _ = _after_lulc(pilot_dir, tmp_path, lambda x: (x.__setitem__((slice(r - 2, r + 6), slice(c - 2, c + 6)), CLCD["impervious"]), x)[1])
    pb = _write(gpd.GeoDataFrame(geometry=[big], crs="EPSG:32648"), tmp_path / "pb.gpkg")
    db_ = damage(store, res.run_id, after_big, pb, recovery_years=10, discount_rate=0.03)
    assert db_["yearly_gep_loss_cny"] >= d["yearly_gep_loss_cny"]
    assert db_["compensation_cny"] >= d["compensation_cny"]


def test_allocation_by_township_sums_exactly_and_is_stored(pilot_run):
    store, res = pilot_run
    d = allocate(store, res.run_id, 1_000_003, "t standard coal", "township", "gep_linked")
    q = [x["quota"] for x in d["allocation"]]
    assert sum(q) == 1_000_003 and min(q) >= 0
    from eco_value.store.models import PolicyResult
    with store.session() as s:
        assert s.get(PolicyResult, d["policy_result_id"]).kind == "allocation"


zones = st.dictionaries(st.text("abcdefgh", min_size=1, max_size=3), st.tuples(st.floats(0, 1e6), st.floats(0, 1e9)),
                        min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(zones, st.integers(0, 10**7), st.floats(0, 1))
def test_allocation_properties(z, total, wg):
    base = {k: v[0] for k, v in z.items()}
    gep = {k: v[1] for k, v in z.items()}
    if sum(base.values()) <= 0 and sum(gep.values()) <= 0:
        return
    sc = allocation_scores(base, gep, 1 - wg, wg)
    if sum(sc.values()) <= 0:
        return
    q = largest_remainder(total, sc)
    assert sum(q.values()) == total and min(q.values()) >= 0
    # invariant to the order of zones
    rev = dict(reversed(list(sc.items())))
    assert largest_remainder(total, rev) == q
    # monotone: only zone k's GEP rises -> its quota never falls
    k = sorted(z)[0]
    gep2 = dict(gep)
    gep2[k] = gep[k] * 1.5 + 1000.0
    q2 = largest_remainder(total, allocation_scores(base, gep2, 1 - wg, wg))
    assert q2[k] >= q[k]


def test_policy_results_appear_in_report_and_explain(pilot_run, pilot_dir, tmp_path):
    import subprocess
    import sys

    from eco_value.outputs.report import write_report

    store, res = pilot_run
    county = gpd.read_file(pilot_dir / "boundary.gpkg")
    g = county.geometry.iloc[0].centroid.buffer(1500)
    u = value_unit(store, res.run_id, _write(gpd.GeoDataFrame(geometry=[g], crs=county.crs), tmp_path / "u.gpkg"),
                   years=10, discount_rate=0.04)
    a = allocate(store, res.run_id, 5000, "t CO2", "township", "equal_weights")
    html = write_report(store, res.run_id, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "Policy instruments" in html and u["policy_result_id"][:8] in html and a["policy_result_id"][:8] in html
    proc = subprocess.run([sys.executable, "-m", "eco_value.cli", "explain", res.run_id, "--policy", u["policy_result_id"],
                           "--db", store.url], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    out = proc.stdout
    assert "PV = V" in out and f"{u['present_value_cny']:,.2f}" in out
