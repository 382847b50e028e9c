"""Soil conservation 土壤保持 (RUSLE: potential minus actual erosion; MEE 2020 valuation)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from .base import ServiceContext, ServiceSpec, finish

SPEC = ServiceSpec(
    key="soil_conservation", name_en="Soil conservation", name_zh="土壤保持", category="regulating",
    layers=("erosivity", "erodibility", "dem", "fvc", "bulk_density", "land_cover@t2"),
    parameters=("gep.soil_conservation",),
    quantity_unit="t",
    equation="Q = R*K*LS*(1 - C*P) * A_ha; V = lambda*Q/rho*c_dredge + Q*(N%*p_N + P%*p_P)",
    source="MEE 2020 guideline (RUSLE, Wischmeier & Smith 1978; C after Cai et al. 2000; S after McCool 1987 / Liu 1994)",
)

# RUSLE topographic constants (Wischmeier & Smith 1978; McCool et al. 1987; Liu et al. 1994):
# parts of the published equations, not tunable parameters.
UNIT_PLOT_LENGTH_M = 22.13
SLOPE_BREAK_TAN = 0.09           # 9 % slope
STEEP_SLOPE_DEG = 10.0


def slope_radians(dem: np.ndarray, res_m: float) -> np.ndarray:
    """Slope [rad] by central differences (exact for a plane)."""
    gy, gx = np.gradient(dem.astype(np.float64), res_m)
    return np.arctan(np.hypot(gx, gy))


def ls_factor(theta: np.ndarray, cell_m: float) -> np.ndarray:
    """RUSLE LS for slope angle ``theta`` [rad] with slope length = cell size [m].

    L = (lambda / 22.13)^m, m = 0.2/0.3/0.4/0.5 for tan < 1 % / < 3 % / < 5 % / >= 5 %;
    S = 10.8 sin + 0.03 (tan < 9 %), 16.8 sin - 0.5 (9 % .. 10 deg), 21.91 sin - 0.96 (> 10 deg).
    """
    tan = np.tan(theta)
    sin = np.sin(theta)
    m = np.select([tan < 0.01, tan < 0.03, tan < 0.05], [0.2, 0.3, 0.4], 0.5)
    length = (cell_m / UNIT_PLOT_LENGTH_M) ** m
    s = np.where(tan < SLOPE_BREAK_TAN, 10.8 * sin + 0.03,
                 np.where(np.degrees(theta) <= STEEP_SLOPE_DEG, 16.8 * sin - 0.5, 21.91 * sin - 0.96))
    return length * s


def c_factor(fvc: xr.DataArray, a: float, b: float) -> xr.DataArray:
    """C = 1 (FVC = 0), a - b*log10(100*FVC) (0 < FVC <= 78.3 %), 0 above (Cai et al. 2000)."""
    pct = (fvc * 100.0).clip(min=1e-6)
    c = (a - b * np.log10(pct)).clip(0.0, 1.0)
    return xr.where(fvc <= 0, 1.0, c)


def compute(ctx: ServiceContext):
    r = ctx.rules
    dem = ctx.masked_float("dem")
    res = ctx.grid.res_m
    # pixels next to nodata get NaN slope and no soil-conservation value (a one-pixel ring at the border)
    ls_data = dem.data.map_overlap(lambda b: ls_factor(slope_radians(b, res), res), depth=1,
                                   boundary="nearest", dtype="float64")
    ls = xr.DataArray(ls_data, dims=dem.dims, coords=dem.coords).fillna(0.0)
    R = ctx.masked_float("erosivity")
    K = ctx.masked_float("erodibility")
    C = c_factor(ctx.masked_float("fvc"), r.value("gep.soil_conservation.c_factor_a"), r.value("gep.soil_conservation.c_factor_b"))
    P = ctx.by_class("gep.soil_conservation.p_factor", default=r.value("gep.soil_conservation.p_factor.other"))
    eligible = ctx.class_mask("cropland", "forest", "shrub", "grassland", "wetland")
    potential = R * K * ls
    q = (potential * (1.0 - C * P) * ctx.pixel_area_ha).where(eligible & dem.notnull(), 0.0)
    y = int(r.value("gep.soil_conservation.price_year"))
    dredge = ctx.rebase(r.value("gep.soil_conservation.dredging_cost"), y)
    pn = ctx.rebase(r.value("gep.soil_conservation.n_price"), y)
    pp = ctx.rebase(r.value("gep.soil_conservation.p_price"), y)
    rho = ctx.masked_float("bulk_density")  # g/cm3 == t/m3
    value = q * r.value("gep.soil_conservation.silting_share") / rho * dredge \
        + q * (r.value("gep.soil_conservation.soil_n_content") * pn + r.value("gep.soil_conservation.soil_p_content") * pp)
    return finish(SPEC, ctx, q, value.fillna(0.0), ls=ls, c_factor=C)
