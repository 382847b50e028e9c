"""Soil conservation 土壤保持 (RUSLE: potential minus actual erosion; MEE 2020 valuation)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from .base import LAND_COVER, PRICE_INDEX, LayerSpec, ServiceContext, ServiceSpec, finish

SPEC = ServiceSpec(
    key="soil_conservation", name_en="Soil conservation", name_zh="土壤保持", category="regulating",
    layers=(LayerSpec("erosivity", "MJ mm/(ha h yr)"), LayerSpec("erodibility", "t ha h/(ha MJ mm)"),
            LayerSpec("dem", "m"), LayerSpec("fvc", "1"), LayerSpec("bulk_density", "t/m3"), LAND_COVER),
    parameters=("gep.soil_conservation.c_factor_a", "gep.soil_conservation.c_factor_b", "gep.soil_conservation.p_factor",
                "gep.soil_conservation.silting_share", "gep.soil_conservation.dredging_cost",
                "gep.soil_conservation.price_year", "gep.soil_conservation.soil_n_content",
                "gep.soil_conservation.soil_p_content", "gep.soil_conservation.fertiliser_price",
                "gep.soil_conservation.fertiliser_price_year", "gep.soil_conservation.fertiliser_n_content",
                "gep.soil_conservation.fertiliser_p_content", *PRICE_INDEX),
    quantity_unit="t",
    equation="Q = R*K*LS*(1 - C*P) * A_ha; V = lambda*Q/rho*c_dredge + Q*(N% * p_fert/N_fert + P% * p_fert/P_fert); "
             "slope by central differences, one-sided on the raster's outer ring",
    source="MEE 2020 guideline (RUSLE, Wischmeier & Smith 1978; C after Cai et al. 2000; S after McCool 1987 / Liu 1994); "
           "N and P valued as fertiliser (LY/T 1721-2008: fertiliser price / nutrient content of the fertiliser)",
)

# RUSLE topographic constants: coefficients of the published equations that :func:`ls_factor` uses, not
# tunable parameters (a bureau that wants other equations changes the function, not a value).
# L = (lambda / 22.13)^m, Wischmeier & Smith 1978 (USDA Agriculture Handbook 537): the unit plot is
# 72.6 ft = 22.13 m long; m = 0.5 for slopes >= 5 %, 0.4 for 3.5-4.5 %, 0.3 for 1-3 %, 0.2 below 1 %.
# The handbook leaves 3-3.5 % and 4.5-5 % open; here the classes are closed at tan 1 %, 3 % and 5 %
# (m = 0.4 from 3 % up to 5 %).
UNIT_PLOT_LENGTH_M = 22.13
L_EXPONENT_BREAK_1_TAN = 0.01    # 1 % slope: m = 0.2 below
L_EXPONENT_BREAK_2_TAN = 0.03    # 3 % slope: m = 0.3 below
L_EXPONENT_BREAK_3_TAN = 0.05    # 5 % slope: m = 0.4 below, 0.5 from here on
L_EXPONENT_BELOW_1_PCT = 0.2
L_EXPONENT_1_TO_3_PCT = 0.3
L_EXPONENT_3_TO_5_PCT = 0.4
L_EXPONENT_FROM_5_PCT = 0.5
# S after McCool et al. 1987 (Trans. ASAE 30(5), 1387-1396, eqs. for long slopes, break at 9 %):
# S = 10.8 sin(theta) + 0.03 for slope < 9 %, S = 16.8 sin(theta) - 0.50 for slope >= 9 %.
SLOPE_BREAK_TAN = 0.09           # 9 % slope
MCCOOL_GENTLE_SIN_COEF = 10.8
MCCOOL_GENTLE_INTERCEPT = 0.03
MCCOOL_STEEP_SIN_COEF = 16.8
MCCOOL_STEEP_OFFSET = 0.50       # subtracted
# S after Liu, Nearing & Risse 1994 (Trans. ASAE 37(6), 1835-1840) on steep slopes:
# S = 21.91 sin(theta) - 0.96, used here above 10 deg (McCool's steep equation from 9 % up to 10 deg).
STEEP_SLOPE_DEG = 10.0
LIU_SIN_COEF = 21.91
LIU_OFFSET = 0.96                # subtracted


def slope_radians(dem: np.ndarray, res_m: float) -> np.ndarray:
    """Slope angle of a DEM by finite differences.

    ``theta = arctan(hypot(dz/dx, dz/dy))``, central differences inside the array and one-sided
    (first-order) differences on its outer ring, so a plane gives its exact slope everywhere.

    Parameters
    ----------
    dem : numpy array, 2-D (at least 2 x 2)
        Elevation [m]; NaN marks no data (its neighbours get NaN).
    res_m : float
        Cell size [m] (square cells).

    Returns
    -------
    Slope [rad], same shape. Inside the array it equals GDAL's ``gdaldem slope -alg ZevenbergenThorne``
    (tested); on the outer ring gdaldem gives no data (or, with ``-compute_edges``, half the slope across
    the edge, as it repeats the edge value outwards); here the one-sided difference keeps the slope.

    References
    ----------
    Zevenbergen & Thorne 1987, Earth Surf. Process. Landf. 12, 47-56 (second-order finite differences).
    """
    # float32 in, float32 out (a float32 DEM's neighbours differ exactly: no precision is lost); wider kept
    gy, gx = np.gradient(dem.astype(np.result_type(dem.dtype, np.float32), copy=False), res_m)
    return np.arctan(np.hypot(gx, gy))


def ls_factor(theta: np.ndarray, cell_m: float) -> np.ndarray:
    """RUSLE slope length and steepness factor LS for slope angle ``theta`` with slope length = cell size.

    ``LS = L * S`` with ``L = (lambda / 22.13)^m``, m = 0.2 / 0.3 / 0.4 / 0.5 for tan(theta) < 1 % / < 3 % /
    < 5 % / >= 5 %, and ``S = 10.8 sin(theta) + 0.03`` (tan(theta) < 9 %), ``16.8 sin(theta) - 0.50``
    (9 % <= tan(theta), theta <= 10 deg), ``21.91 sin(theta) - 0.96`` (theta > 10 deg). The coefficients are
    the module's named constants (``L_EXPONENT_*``, ``MCCOOL_*``, ``LIU_*``). NaN in gives NaN out.

    Parameters
    ----------
    theta : numpy array
        Slope angle [rad] (:func:`slope_radians`).
    cell_m : float
        Slope length lambda, taken as the cell size [m].

    Returns
    -------
    LS [-], same shape as ``theta``.

    References
    ----------
    Wischmeier, W.H. & Smith, D.D. 1978. Predicting rainfall erosion losses. USDA Agriculture Handbook 537
    (L: the 22.13 m unit plot and the exponent m by slope class).
    McCool, D.K., Brown, L.C., Foster, G.R., Mutchler, C.K. & Meyer, L.D. 1987. Revised slope steepness
    factor for the Universal Soil Loss Equation. Trans. ASAE 30(5), 1387-1396 (S below and above 9 %).
    Liu, B.Y., Nearing, M.A. & Risse, L.M. 1994. Slope gradient effects on soil loss for steep slopes.
    Trans. ASAE 37(6), 1835-1840 (S on steep slopes, here above 10 deg).
    """
    theta = np.asarray(theta)
    tan = np.tan(theta)
    sin = np.sin(theta)
    # L = (lambda / 22.13)^m with one of four exponents: the four powers are numbers, picked per pixel
    base = cell_m / UNIT_PLOT_LENGTH_M
    dt = theta.dtype if theta.dtype.kind == "f" else np.float64
    length = np.select([tan < L_EXPONENT_BREAK_1_TAN, tan < L_EXPONENT_BREAK_2_TAN, tan < L_EXPONENT_BREAK_3_TAN],
                       [np.asarray(base ** m, dtype=dt) for m in (L_EXPONENT_BELOW_1_PCT, L_EXPONENT_1_TO_3_PCT,
                                                                  L_EXPONENT_3_TO_5_PCT)],
                       np.asarray(base ** L_EXPONENT_FROM_5_PCT, dtype=dt))
    s = np.where(tan < SLOPE_BREAK_TAN, MCCOOL_GENTLE_SIN_COEF * sin + MCCOOL_GENTLE_INTERCEPT,
                 np.where(np.degrees(theta) <= STEEP_SLOPE_DEG, MCCOOL_STEEP_SIN_COEF * sin - MCCOOL_STEEP_OFFSET,
                          LIU_SIN_COEF * sin - LIU_OFFSET))
    return length * s


def ls_from_dem(dem, res_m: float):
    """RUSLE LS factor of a DEM: :func:`ls_factor` of :func:`slope_radians`, on numpy or dask alike.

    On a dask-backed DataArray the chunks overlap by one pixel (``map_overlap``, ``boundary="none"``), so
    chunk edges see their true neighbours and the result equals the numpy path; only the raster's outer
    ring uses one-sided differences (:func:`slope_radians`). Pixels next to no data get NaN.

    Parameters
    ----------
    dem : numpy array or xarray.DataArray (numpy- or dask-backed), 2-D
        Elevation [m]; NaN marks no data.
    res_m : float
        Cell size [m] (square cells); also the slope length lambda of :func:`ls_factor`.

    Returns
    -------
    LS [-], same shape: a numpy array for a numpy ``dem``, else a DataArray with ``dem``'s dims and coords
    (lazy when ``dem`` is dask-backed).

    References
    ----------
    Zevenbergen & Thorne 1987 (slope); Wischmeier & Smith 1978, McCool et al. 1987, Liu et al. 1994 (LS),
    as in :func:`ls_factor`.
    """
    if isinstance(dem, xr.DataArray):
        data = dem.data
        if hasattr(data, "map_overlap"):
            out = data.map_overlap(lambda b: ls_factor(slope_radians(b, res_m), res_m), depth=1,
                                   boundary="none", dtype=np.result_type(data.dtype, np.float32))
        else:
            out = ls_factor(slope_radians(np.asarray(data), res_m), res_m)
        return xr.DataArray(out, dims=dem.dims, coords=dem.coords)
    return ls_factor(slope_radians(np.asarray(dem), res_m), res_m)


def c_factor(fvc, a: float, b: float):
    """RUSLE cover-management factor C from fractional vegetation cover.

    ``C = 1`` (FVC = 0); ``a - b * log10(100 * FVC)`` clipped to 0..1 (above 78.3 % it is 0 with the
    published a = 0.6508, b = 0.3436).

    Parameters
    ----------
    fvc : array-like
        Fractional vegetation cover [-], 0..1.
    a, b : float
        Coefficients of the regression [-].

    Returns
    -------
    C [-], 0..1.

    References
    ----------
    Cai Chongfa et al. 2000, J. Soil Water Conserv. 14(2) (C from vegetation cover).
    """
    pct = (fvc * 100.0).clip(min=1e-6)
    c = (a - b * np.log10(pct)).clip(0.0, 1.0)
    return xr.where(fvc <= 0, 1.0, c)


def soil_conservation_t(erosivity, erodibility, ls, c, p, pixel_area_ha):
    """Soil kept in place by the vegetation and practices of one pixel: potential minus actual erosion.

    ``Q = R * K * LS * (1 - C * P) * A``

    Parameters
    ----------
    erosivity : array-like
        Rainfall erosivity R [MJ mm/(ha h yr)].
    erodibility : array-like
        Soil erodibility K [t ha h/(ha MJ mm)].
    ls : array-like
        Slope length and steepness factor LS [-] (:func:`ls_from_dem`).
    c : array-like
        Cover-management factor C [-] (:func:`c_factor`).
    p : array-like or float
        Support-practice factor P [-].
    pixel_area_ha : float
        Pixel area A [ha].

    Returns
    -------
    Soil conservation Q [t/yr per pixel]; >= 0 when 0 <= C, P <= 1.

    References
    ----------
    Wischmeier & Smith 1978 (USLE); Renard et al. 1997 (RUSLE); MEE 2020 GEP guideline (土壤保持).
    """
    return erosivity * erodibility * ls * (1.0 - c * p) * pixel_area_ha


def soil_conservation_value_cny(q_t, silting_share, bulk_density_t_per_m3, dredging_cny_per_m3, soil_n_content,
                                n_price_cny_per_t, soil_p_content, p_price_cny_per_t):
    """Value of soil conservation: reduced sedimentation plus the N and P kept in the soil.

    ``V = Q * lambda / rho * c_dredge + Q * (N% * p_N + P% * p_P)``

    Parameters
    ----------
    q_t : array-like
        Soil conservation Q [t/yr].
    silting_share : float
        Share lambda of the eroded soil that silts up reservoirs and rivers [-].
    bulk_density_t_per_m3 : array-like
        Soil bulk density rho [t/m3] (= g/cm3).
    dredging_cny_per_m3 : float
        Dredging cost [CNY/m3].
    soil_n_content, soil_p_content : float
        N and P content of the soil [-] (mass fraction).
    n_price_cny_per_t, p_price_cny_per_t : float
        Price of one tonne of pure N, resp. P [CNY/t] (:func:`nutrient_prices`).

    Returns
    -------
    Value V [CNY/yr].

    References
    ----------
    MEE 2020 GEP guideline (土壤保持); LY/T 1721-2008 (nutrients valued as fertiliser).
    """
    return q_t * silting_share / bulk_density_t_per_m3 * dredging_cny_per_m3 \
        + q_t * (soil_n_content * n_price_cny_per_t + soil_p_content * p_price_cny_per_t)


def compute(ctx: ServiceContext):
    ctx = ctx.bind(SPEC)
    r = ctx.rules
    dem = ctx.masked_float("dem")
    res = ctx.grid.res_m
    # pixels next to nodata get NaN slope and no soil-conservation value
    ls = ctx.neighbourhood("dem", lambda d: ls_from_dem(d, res)).fillna(0.0)
    R = ctx.masked_float("erosivity")
    K = ctx.masked_float("erodibility")
    C = c_factor(ctx.masked_float("fvc"), r.value("gep.soil_conservation.c_factor_a"), r.value("gep.soil_conservation.c_factor_b"))
    P = ctx.by_class("gep.soil_conservation.p_factor", default=r.value("gep.soil_conservation.p_factor.other"))
    eligible = ctx.class_mask("cropland", "forest", "shrub", "grassland", "wetland")
    q = soil_conservation_t(R, K, ls, C, P, ctx.pixel_area_ha).where(eligible & dem.notnull(), 0.0)
    dredge = ctx.rebase(r.value("gep.soil_conservation.dredging_cost"), int(r.value("gep.soil_conservation.price_year")))
    pn, pp = nutrient_prices(ctx)
    rho = ctx.masked_float("bulk_density")  # g/cm3 == t/m3
    value = soil_conservation_value_cny(q, r.value("gep.soil_conservation.silting_share"), rho, dredge,
                                        r.value("gep.soil_conservation.soil_n_content"), pn,
                                        r.value("gep.soil_conservation.soil_p_content"), pp)
    return finish(SPEC, ctx, q, value.fillna(0.0), ls=ls, c_factor=C, n_price_cny_per_t=pn, p_price_cny_per_t=pp)


def nutrient_prices(ctx: ServiceContext) -> tuple[float, float]:
    """CNY per tonne of pure N and of pure P: fertiliser price / nutrient content of that fertiliser.

    LY/T 1721-2008 values the N and P kept in the soil as the diammonium phosphate that would replace
    them: one tonne of N is 1 / N_fert tonnes of fertiliser (likewise P).
    """
    r = ctx.rules
    fert = ctx.rebase(r.value("gep.soil_conservation.fertiliser_price"),
                      int(r.value("gep.soil_conservation.fertiliser_price_year")))
    return (fert / r.value("gep.soil_conservation.fertiliser_n_content"),
            fert / r.value("gep.soil_conservation.fertiliser_p_content"))
