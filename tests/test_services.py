"""GEP services: known answers on tiny rasters computed by hand from the MEE 2020 equations."""

from __future__ import annotations

import math

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from affine import Affine

from eco_value.grid import Grid
from eco_value.rules import load_rules
from eco_value.rules.ecosystem import ecosystem_types
from eco_value.services import SERVICES, ServiceContext
from eco_value.services.base import price_factor
from eco_value.services.soil_conservation import ls_factor, slope_radians

# per-pixel results of compute(ctx) are float32 (eco_value.grid.PIXEL_DTYPE): a known answer holds to
# a few float32 roundings (6e-8 each), not to float64's 1e-12
F32 = 1e-6

RULES = load_rules("cn2011-mee2020")
TYPE = {t.name: t.id for t in ecosystem_types()}   # engine ecosystem-type ids by name
RES = 10.0               # 10 m pixels: 100 m2 = 0.01 ha
A_M2, A_HA = 100.0, 0.01
CPI_2005_TO_2023 = 708.0 / 464.0   # NBS CPI (1978 = 100), as in the rule set
CPI_2020_TO_2023 = 708.0 / 686.5
CPI_2002_TO_2023 = 708.0 / 433.5   # dredging cost (LY/T 1721, 2002 budget norm)
CPI_2008_TO_2023 = 708.0 / 522.7   # LY/T 1721-2008 fertiliser and oxygen prices
CPI_2010_TO_2023 = 708.0 / 536.1   # water-purification treatment costs (Bai et al. 2017, 2010)


def layer(arr, nodata):
    a = np.asarray(arr)
    x = xr.DataArray(da.from_array(a, chunks=2), dims=("y", "x"))
    x.attrs["nodata"] = nodata
    return x


def ctx_for(lulc, precip=1200.0, aet=600.0, dem=None, fvc=0.5, sink=None, **tables):
    shape = np.shape(lulc)
    full = lambda v: np.broadcast_to(np.asarray(v, dtype="float32"), shape).copy()  # noqa: E731
    layers = {
        "land_cover@t2": layer(np.asarray(lulc, dtype="uint8"), 255),
        "precip": layer(full(precip), -9999.0),
        "aet": layer(full(aet), -9999.0),
        "dem": layer(full(0.0) if dem is None else dem.astype("float32"), -9999.0),
        "erosivity": layer(full(4000.0), -9999.0),
        "erodibility": layer(full(0.03), -9999.0),
        "fvc": layer(full(fvc), -9999.0),
        "bulk_density": layer(full(1.3), -9999.0),
    }
    grid = Grid("EPSG:32648", Affine(RES, 0, 0, 0, -RES, 0), shape[1], shape[0], chunk_px=2)
    tabs = {
        "provisioning": tables.get("provisioning", pd.DataFrame(
            [{"product": "rice", "land_cover": "cropland", "quantity": 100.0, "unit": "t", "price_cny_per_unit": 2700.0},
             {"product": "timber", "land_cover": "forest", "quantity": 10.0, "unit": "m3", "price_cny_per_unit": 850.0}])),
        "tourism": tables.get("tourism", pd.DataFrame([{"visitors": 1000, "spending_cny_per_visitor": 300.0}])),
    }
    s = None if sink is None else xr.DataArray(da.from_array(np.full(shape, sink), chunks=2), dims=("y", "x"))
    return ServiceContext(layers=layers, grid=grid, rules=RULES, year=2023, tables=tabs,
                          carbon_sink_tco2e_per_ha_yr=s)


def total(result):
    """(Σ quantity, Σ value) of a service's float32 pixels, accumulated in float64 as the engine's sums are."""
    return (float(result.quantity.astype("float64").sum().compute()),
            float(result.value_cny.astype("float64").sum().compute()))


def test_price_index_rebasing():
    assert price_factor(RULES, 2005, 2023) == pytest.approx(CPI_2005_TO_2023)
    assert price_factor(RULES, 2023, 2023) == 1.0


def test_water_conservation_equals_water_balance_on_random_rasters():
    rng = np.random.default_rng(0)
    lulc = rng.choice([1, 2, 3, 4, 8], size=(7, 9)).astype("uint8")
    p = rng.uniform(900, 1600, (7, 9))
    et = rng.uniform(400, 800, (7, 9))
    ctx = ctx_for(lulc, precip=p, aet=et)
    q, v = total(SERVICES["water_conservation"].compute(ctx))
    alpha = {2: 0.0267, 3: 0.0426, 4: 0.0937}   # MEE 2020 runoff coefficients (forest, shrub, grass)
    pf, ef = p.astype("float32").astype(float), et.astype("float32").astype(float)
    expected = sum(A_M2 * (pf[i] - pf[i] * alpha[c] - ef[i]) / 1000.0
                   for i, c in np.ndenumerate(lulc) if c in alpha)
    assert q == pytest.approx(expected, rel=F32)
    assert v == pytest.approx(expected * 6.1107 * CPI_2005_TO_2023, rel=F32)


def test_rusle_ls_on_a_tilted_plane_matches_the_closed_form():
    tan = 0.2
    dem = np.tile(np.arange(12) * RES * tan, (8, 1))
    theta = slope_radians(dem, RES)
    assert np.allclose(theta, math.atan(tan))
    ls = ls_factor(theta, RES)
    # slope 11.3 deg > 10 deg: S = 21.91 sin - 0.96 (Liu 1994); m = 0.5 (>= 5 %): L = (10/22.13)^0.5
    sin = math.sin(math.atan(tan))
    assert np.allclose(ls, (RES / 22.13) ** 0.5 * (21.91 * sin - 0.96), rtol=1e-12)
    gentle = ls_factor(np.array([math.atan(0.04)]), RES)[0]   # 4 %: m = 0.4, S = 10.8 sin + 0.03
    assert gentle == pytest.approx((RES / 22.13) ** 0.4 * (10.8 * math.sin(math.atan(0.04)) + 0.03), rel=1e-12)


def test_soil_conservation_known_answer_on_a_plane():
    tan = 0.2
    dem = np.tile(np.arange(6) * RES * tan, (6, 1))
    ctx = ctx_for(np.full((6, 6), TYPE["forest"]), dem=dem, fvc=0.5)
    res = SERVICES["soil_conservation"].compute(ctx)
    q = res.quantity.values
    sin = math.sin(math.atan(tan))
    ls = (RES / 22.13) ** 0.5 * (21.91 * sin - 0.96)
    c = 0.6508 - 0.3436 * math.log10(50.0)     # Cai et al. 2000 with FVC = 50 %
    per_pixel = 4000.0 * 0.03 * ls * (1 - c * 1.0) * A_HA
    assert q[3, 3] == pytest.approx(per_pixel, rel=1e-6)
    v = res.value_cny.values[3, 3]
    # N and P valued as diammonium phosphate: price / nutrient content (LY/T 1721-2008), by hand
    n_per_t = 2400.0 / 0.14 * CPI_2008_TO_2023      # CNY per tonne of N
    p_per_t = 2400.0 / 0.1501 * CPI_2008_TO_2023    # CNY per tonne of P
    expected_v = per_pixel * 0.24 / 1.3 * 12.6 * CPI_2002_TO_2023 + per_pixel * ((1.24 + 1.56 + 2.79) / 3e3 * n_per_t + (0.73 + 0.246 + 0.383) / 3e3 * p_per_t)
    assert v == pytest.approx(expected_v, rel=1e-6)
    assert res.details["n_price_cny_per_t"] == pytest.approx(n_per_t, rel=1e-12)


def test_flood_regulation_vegetation_and_water_storage():
    ctx = ctx_for([[TYPE["forest"], TYPE["water"]]], precip=1000.0)
    q, v = total(SERVICES["flood_regulation"].compute(ctx))
    expected = A_M2 * 1000.0 * 0.30 * (1 - 0.20) / 1000.0 + 1.2 * A_M2
    assert q == pytest.approx(expected, rel=F32)
    assert v == pytest.approx(expected * 6.1107 * CPI_2005_TO_2023, rel=F32)


def test_air_purification_known_answer():
    ctx = ctx_for([[TYPE["forest"]]])
    q, v = total(SERVICES["air_purification"].compute(ctx))
    so2, nox, dust = 152.13 * A_HA / 1000, 6.0 * A_HA / 1000, 21655.0 * A_HA / 1000
    assert q == pytest.approx(so2 + nox + dust, rel=F32)
    assert v == pytest.approx((so2 * 1200 + nox * 630 + dust * 150) * CPI_2005_TO_2023, rel=F32)


def test_water_purification_known_answer():
    ctx = ctx_for([[TYPE["water"], TYPE["cropland"]]])
    q, v = total(SERVICES["water_purification"].compute(ctx))
    assert q == pytest.approx((1.2 + 0.16 + 0.016) * A_HA, rel=F32)
    assert v == pytest.approx((1.2 * 700 + 0.16 * 875 + 0.016 * 2800) * A_HA * CPI_2010_TO_2023, rel=F32)


def test_carbon_sequestration_and_oxygen_use_the_carbon_engine_sink():
    ctx = ctx_for(np.full((2, 2), TYPE["forest"]), sink=10.0)
    q, v = total(SERVICES["carbon_sequestration"].compute(ctx))
    assert q == pytest.approx(4 * 10.0 * A_HA)
    assert v == pytest.approx(q * 68.15)
    qo, vo = total(SERVICES["oxygen_release"].compute(ctx))
    assert qo == pytest.approx(q * 32 / 44, rel=1e-12)
    assert vo == pytest.approx(qo * 1000.0 * CPI_2008_TO_2023, rel=1e-12)


def test_climate_regulation_transpiration_and_evaporation():
    ctx = ctx_for([[TYPE["forest"], TYPE["water"]]], aet=700.0)
    q, v = total(SERVICES["climate_regulation"].compute(ctx))
    e_pt = 2837.27 * A_M2 * 116.0 / (3600.0 * 3.0)
    e_w = 700.0 / 1000.0 * A_M2 * 116.0 / 365.0              # m3 evaporated on the 116 cooling days
    e_we = e_w * 2450.0 * 1000.0 / 3600.0 / 3.0 + e_w * 120.0  # cooling (AC, EER 3) + humidifier 120 kWh/m3
    assert q == pytest.approx(e_pt + e_we, rel=F32)
    assert v == pytest.approx((e_pt + e_we) * 0.5224, rel=F32)   # Sichuan residential tariff, 2023


def test_provisioning_and_recreation_conserve_the_statistics():
    ctx = ctx_for([[TYPE["cropland"], TYPE["forest"], TYPE["forest"]], [TYPE["water"], TYPE["impervious"], TYPE["cropland"]]])
    q, v = total(SERVICES["provisioning"].compute(ctx))
    assert v == pytest.approx(100 * 2700.0 + 10 * 850.0, rel=1e-12)
    assert q == pytest.approx(100.0)          # tonnes only; timber is m3
    qr, vr = total(SERVICES["recreation"].compute(ctx))
    assert qr == pytest.approx(1000.0) and vr == pytest.approx(300_000.0)
    rec = SERVICES["recreation"].compute(ctx).value_cny.values
    assert rec[1, 1] == 0.0 and rec[0, 1] == rec[1, 0] > 0        # built-up gets no recreation value


def test_every_service_declares_its_spec():
    for key, mod in SERVICES.items():
        s = mod.SPEC
        assert s.key == key and s.equation and s.source and s.quantity_unit and s.category in {"provisioning", "regulating", "cultural"}


def test_price_year_rebases_with_the_cpi():
    ctx = ctx_for([[TYPE["forest"]]], precip=1200.0, aet=600.0)
    ctx.price_year = 2020
    q, v = total(SERVICES["water_conservation"].compute(ctx))
    assert v == pytest.approx(q * 6.1107 * 686.5 / 464.0, rel=F32)
