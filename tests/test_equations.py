"""Every equation function: a known answer with explicit arguments (no rule set, no grid), the same
result on numpy arrays and on dask-backed DataArrays, and each service reads exactly what its spec
declares. Slope and LS are checked against GDAL's ``gdaldem slope`` on a small DEM, outer ring included."""

from __future__ import annotations

import math
import shutil
import subprocess

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from eco_value.carbon.stock import biomass_carbon_tc_per_ha, net_sink_tco2e_per_ha_yr, volume_to_carbon_tc_per_m3
from eco_value.outputs.methods import render_methods
from eco_value.services import SERVICES
from eco_value.services.air_purification import pollutant_absorbed_t
from eco_value.services.base import UndeclaredInput
from eco_value.services.carbon_sequestration import carbon_sequestration_tco2e
from eco_value.services.climate_regulation import climate_regulation_kwh
from eco_value.services.flood_regulation import flood_regulation_m3
from eco_value.services.oxygen_release import oxygen_release_t
from eco_value.services.provisioning import provisioning_cny
from eco_value.services.recreation import recreation_cny
from eco_value.services.soil_conservation import (c_factor, ls_factor, ls_from_dem, slope_radians,
                                                  soil_conservation_t, soil_conservation_value_cny)
from eco_value.services.water_conservation import water_conservation_m3
from eco_value.services.water_purification import pollutant_removed_t

NAN = float("nan")


# --- known answers, by hand ---------------------------------------------------------------------

def test_water_conservation_known_answer_and_sign():
    # (1200 - 0.1 * 1200 - 600) mm * 100 m2 / 1000 = 48 m3
    assert water_conservation_m3(1200.0, 600.0, 0.1, 100.0) == pytest.approx(48.0, rel=1e-15)
    # ET > P (1 - alpha): the pixel's water balance is negative and stays negative (not clipped):
    # (500 - 100 - 600) * 100 / 1000 = -20 m3
    assert water_conservation_m3(500.0, 600.0, 0.2, 100.0) == pytest.approx(-20.0, rel=1e-15)
    # the regional total is the guideline's sum of the signed balances
    p, et, a = np.array([1200.0, 500.0]), np.array([600.0, 600.0]), np.array([0.1, 0.2])
    assert water_conservation_m3(p, et, a, 100.0).sum() == pytest.approx(28.0, rel=1e-15)
    assert math.isnan(water_conservation_m3(NAN, 600.0, 0.1, 100.0))


def test_carbon_services_known_answers():
    q = carbon_sequestration_tco2e(np.array([2.0, NAN, -1.0]), 0.01)
    np.testing.assert_array_equal(q, [0.02, 0.0, -0.01])
    assert oxygen_release_t(np.array([2.0]), 0.01, 32.0 / 44.0)[0] == pytest.approx(0.02 * 32 / 44, rel=1e-15)


def test_air_and_water_purification_known_answers():
    assert pollutant_absorbed_t(152.13, 0.81) == pytest.approx(152.13 * 0.81 / 1000, rel=1e-15)
    q = pollutant_removed_t(np.array([True, False, False]), np.array([False, True, False]), 5.0, 3.0, 0.01)
    np.testing.assert_allclose(q, [0.05, 0.03, 0.0], rtol=1e-15)


def test_flood_regulation_known_answer():
    # vegetation: 1000 mm * 0.4 * (1 - 0.25) * 100 m2 / 1000 = 30 m3; water: 2 m * 100 m2 = 200 m3
    q = flood_regulation_m3(np.full(3, 1000.0), 0.4, np.array([0.25, 0.0, 0.0]), np.array([True, False, False]),
                            np.array([False, True, False]), 2.0, 100.0)
    np.testing.assert_allclose(q, [30.0, 200.0, 0.0], rtol=1e-15)


def test_climate_regulation_known_answer():
    # forest: 3600 kJ/m2/d * 100 m2 * 90 d / (3600 * 3) = 3000 kWh
    # water:  730 mm / 1000 * 100 m2 * 90 / 365 = 18 m3 on cooling days; 18 * (680 / 3 + 120) = 6240 kWh
    q = climate_regulation_kwh(np.array([3600.0, 0.0]), np.array([730.0, 730.0]), np.array([False, True]), 100.0,
                               90.0, 3.0, 680.0, 120.0)
    np.testing.assert_allclose(q, [3000.0, 6240.0], rtol=1e-14)


def test_recreation_and_provisioning_known_answers():
    q, v = recreation_cny(1000.0, 300.0, np.array([0.25, 0.75]))
    np.testing.assert_allclose(q, [250.0, 750.0], rtol=1e-15)
    np.testing.assert_allclose(v, [75000.0, 225000.0], rtol=1e-15)
    assert provisioning_cny(np.array([100.0, 10.0]), np.array([2700.0, 850.0])) == 278500.0


def test_soil_conservation_known_answers():
    # R K LS (1 - C P) A = 4000 * 0.03 * 2 * (1 - 0.2) * 0.01 = 1.92 t
    assert soil_conservation_t(4000.0, 0.03, 2.0, 0.2, 1.0, 0.01) == pytest.approx(1.92, rel=1e-15)
    # 1.92 * 0.24 / 1.2 * 20 + 1.92 * (0.001 * 5000 + 0.0005 * 3000) = 7.68 + 12.48
    assert soil_conservation_value_cny(1.92, 0.24, 1.2, 20.0, 0.001, 5000.0, 0.0005, 3000.0) == pytest.approx(20.16, rel=1e-14)
    c = c_factor(np.array([0.0, 0.5, 0.9]), 0.6508, 0.3436)
    np.testing.assert_allclose(c, [1.0, 0.6508 - 0.3436 * math.log10(50.0), 0.0], rtol=1e-15)
    # 10 % slope: m = 0.5, S = 16.8 sin - 0.5 (9 % .. 10 deg)
    theta = math.atan(0.1)
    assert ls_factor(np.array(theta), 10.0) == pytest.approx((10 / 22.13) ** 0.5 * (16.8 * math.sin(theta) - 0.5), rel=1e-14)


def test_carbon_stock_equations_known_answers():
    assert volume_to_carbon_tc_per_m3(0.5, 1.5, 0.2, 0.5) == pytest.approx(0.45, rel=1e-15)
    assert biomass_carbon_tc_per_ha(100.0, 0.45, 0.0, 2.0) == pytest.approx(47.0, rel=1e-15)
    # ((50 - 40 + 2 - 1) / 5 + (90 - 80) / 20) * 44/12 = 2.7 * 44/12 = 9.9
    assert net_sink_tco2e_per_ha_yr(40.0, 50.0, 1.0, 2.0, 80.0, 90.0, 5.0, 20.0, 44.0 / 12.0) == pytest.approx(9.9, rel=1e-14)


# --- numpy path == dask path ----------------------------------------------------------------------

RNG = np.random.default_rng(16)
SHAPE = (7, 9)


def _pair(a):
    """The same data as numpy and as a dask-backed DataArray (uneven chunks)."""
    return a, xr.DataArray(da.from_array(a, chunks=(3, 4)), dims=("y", "x"))


def _u(lo, hi):
    return RNG.uniform(lo, hi, SHAPE)


def _b():
    return RNG.random(SHAPE) < 0.5


CASES = {
    "water_conservation_m3": (water_conservation_m3, lambda: (_u(300, 2000), _u(200, 1500), _u(0, 0.5)), (900.0,)),
    "carbon_sequestration_tco2e": (carbon_sequestration_tco2e, lambda: (np.where(_b(), NAN, _u(-5, 10)),), (0.81,)),
    "oxygen_release_t": (oxygen_release_t, lambda: (_u(-5, 10),), (0.81, 32 / 44)),
    "pollutant_absorbed_t": (pollutant_absorbed_t, lambda: (_u(0, 200),), (0.81,)),
    "pollutant_removed_t": (pollutant_removed_t, lambda: (_b(), _b()), (5.0, 3.0, 0.81)),
    "flood_regulation_m3": (lambda p, r, v, w: flood_regulation_m3(p, 0.4, r, v, w, 2.0, 900.0),
                            lambda: (_u(300, 2000), _u(0, 1), _b(), _b()), ()),
    "climate_regulation_kwh": (lambda e, et, w: climate_regulation_kwh(e, et, w, 900.0, 90.0, 3.0, 680.0, 120.0),
                               lambda: (_u(0, 3000), np.where(_b(), NAN, _u(200, 1500)), _b()), ()),
    "recreation_cny": (lambda s: recreation_cny(1000.0, 300.0, s)[1], lambda: (_u(0, 1e-3),), ()),
    "c_factor": (lambda f: c_factor(f, 0.6508, 0.3436), lambda: (_u(-0.1, 1.0),), ()),
    "soil_conservation_t": (soil_conservation_t, lambda: (_u(1000, 5000), _u(0, 0.05), _u(0, 10), _u(0, 1), _u(0, 1)), (0.81,)),
    "soil_conservation_value_cny": (lambda q, rho: soil_conservation_value_cny(q, 0.24, rho, 20.0, 0.001, 5000.0, 0.0005, 3000.0),
                                    lambda: (_u(0, 100), _u(1.0, 1.6)), ()),
    "ls_from_dem": (lambda dem: ls_from_dem(dem, 30.0), lambda: (np.where(RNG.random(SHAPE) < 0.05, NAN, _u(500, 900)),), ()),
    "biomass_carbon_tc_per_ha": (biomass_carbon_tc_per_ha, lambda: (_u(0, 300), _u(0, 0.6), _u(0, 20), _u(0, 10)), ()),
    "net_sink_tco2e_per_ha_yr": (lambda *a: net_sink_tco2e_per_ha_yr(*a, 5.0, 20.0, 44 / 12),
                                 lambda: tuple(_u(0, 100) for _ in range(6)), ()),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_numpy_equals_dask(name):
    fn, make, extra = CASES[name]
    args = make()
    np_out = np.asarray(fn(*args, *extra))
    lazy = fn(*(_pair(a)[1] for a in args), *extra)
    assert isinstance(lazy, xr.DataArray) and isinstance(lazy.data, da.Array), "must stay lazy"
    np.testing.assert_array_equal(lazy.values, np_out)
    assert np.isfinite(np_out).any()


# --- specs drive the code ---------------------------------------------------------------------------

def _bound_run(key):
    from test_services import ctx_for
    from eco_value.rules.ecosystem import ecosystem_types
    ids = [t.id for t in ecosystem_types()]
    lc = np.array(ids * 3, dtype="uint8")[:12].reshape(3, 4)
    dem = np.arange(12, dtype="float32").reshape(3, 4) * 3.0
    ctx = ctx_for(lc, dem=dem, sink=1.5)
    b = ctx.bind(SERVICES[key].SPEC)
    res = SERVICES[key].compute(b)
    float(res.value_cny.sum())   # the graph builds and computes
    return b.reads


@pytest.mark.parametrize("key", list(SERVICES))
def test_service_reads_exactly_what_its_spec_declares(key):
    spec = SERVICES[key].SPEC
    reads = _bound_run(key)
    assert reads.layers == set(spec.layer_keys)
    assert reads.tables == set(spec.tables)
    assert reads.derived == set(spec.derived)
    undeclared = {p for p in reads.parameters if not spec.declares_parameter(p)}
    assert not undeclared
    unused = {d for d in spec.parameters if not any(p == d or p.startswith(d + ".") for p in reads.parameters)}
    assert not unused, f"{key} declares parameters it never reads: {unused}"


def test_context_refuses_undeclared_inputs():
    from test_services import ctx_for
    ctx = ctx_for(np.full((2, 2), 10, dtype="uint8"), sink=1.0).bind(SERVICES["water_conservation"].SPEC)
    with pytest.raises(UndeclaredInput, match="layer 'dem'"):
        ctx.layers["dem"]
    with pytest.raises(UndeclaredInput, match="parameter 'gep.air_purification.price_year'"):
        ctx.rules.value("gep.air_purification.price_year")
    with pytest.raises(UndeclaredInput, match="table 'tourism'"):
        ctx.tables["tourism"]
    with pytest.raises(UndeclaredInput, match="carbon_sink"):
        ctx.derived("carbon_sink")
    assert ctx.layers["precip"] is not None


def test_methods_render_from_the_spec():
    from eco_value.rules import load_rules
    text = render_methods(load_rules("cn2011-mee2020"))
    for m in SERVICES.values():
        s = m.SPEC
        section = text.split(f"### {s.name_en} {s.name_zh}")[1].split("###")[0]
        for p in s.parameters:
            assert f"`{p}`" in section, (s.key, p)
        for x in s.layers:
            assert f"{x.key} [{x.unit}]" in section, (s.key, x.key)


# --- slope and LS against GDAL ------------------------------------------------------------------------

def _dem():
    y, x = np.mgrid[0:6, 0:7].astype("float64")
    return 100.0 + 3.0 * x ** 2 + 7.0 * y + 4.0 * np.sin(x * y)   # curved, steep and gentle parts


def _gdaldem_slope_deg(dem, res, tmp_path, name):
    import rasterio
    from affine import Affine
    src, out = tmp_path / f"{name}.tif", tmp_path / f"{name}_slope.tif"
    with rasterio.open(src, "w", driver="GTiff", width=dem.shape[1], height=dem.shape[0], count=1, dtype="float64",
                       crs="EPSG:32648", transform=Affine(res, 0, 0, 0, -res, 0), nodata=-9999.0) as ds:
        ds.write(dem, 1)
    subprocess.run(["gdaldem", "slope", "-alg", "ZevenbergenThorne", "-q", str(src), str(out)], check=True)
    with rasterio.open(out) as ds:
        return ds.read(1, masked=True)


@pytest.mark.skipif(shutil.which("gdaldem") is None, reason="gdaldem missing: apt-get install gdal-bin (.ci/run does)")
def test_slope_and_ls_match_gdaldem_including_the_outer_ring(tmp_path):
    dem, res = _dem(), 30.0
    ours = np.degrees(slope_radians(dem, res))
    # inside: gdaldem (central differences) agrees; it leaves the outer ring as no data
    g = _gdaldem_slope_deg(dem, res, tmp_path, "dem")
    assert g.mask[0].all() and g.mask[-1].all() and g.mask[:, 0].all() and g.mask[:, -1].all()
    np.testing.assert_allclose(ours[1:-1, 1:-1], g[1:-1, 1:-1].data, rtol=2e-6)
    # the ring: gdaldem on the DEM extended by one pixel of linear extrapolation computes the one-sided
    # difference there (z_-1 = 2 z_0 - z_1 makes its central difference (z_1 - z_0) / res)
    ext = np.pad(dem, 1, mode="reflect", reflect_type="odd")
    g_ring = _gdaldem_slope_deg(ext, res, tmp_path, "ext")[1:-1, 1:-1]
    np.testing.assert_allclose(ours, g_ring.data, rtol=2e-6)
    assert not g_ring.mask.any()
    # LS of the engine's lazy path (dask chunks of 2, ring included) = LS of gdaldem's slope
    lazy = ls_from_dem(xr.DataArray(da.from_array(dem, chunks=2), dims=("y", "x")), res).values
    np.testing.assert_allclose(lazy, ls_factor(np.radians(g_ring.data.astype("float64")), res), rtol=1e-5)


def test_plane_has_its_slope_on_the_outer_ring_too():
    """The defect: boundary='nearest' repeated the edge outwards and halved the slope on the ring."""
    y, x = np.mgrid[0:5, 0:6].astype("float64")
    dem = 0.1 * 30.0 * x + 0.05 * 30.0 * y        # rises 10 % eastwards and 5 % southwards
    lazy = ls_from_dem(xr.DataArray(da.from_array(dem, chunks=2), dims=("y", "x")), 30.0).values
    expect = ls_factor(np.full(dem.shape, math.atan(math.hypot(0.1, 0.05))), 30.0)
    np.testing.assert_allclose(lazy, expect, rtol=1e-12)
