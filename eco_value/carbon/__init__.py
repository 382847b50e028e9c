"""Forest carbon stock and sink, per pixel, as pure functions over aligned DataArrays.

Equations (IPCC 2006 Vol. 4; symbols per hectare of one pixel):

* living biomass carbon from inventory volume (Eq. 2.8 with BCEF = D * BEF)::

      C_bio = V * D * BEF * (1 + R) * CF                  [t C/ha]   V in m3/ha

* bamboo and shrub: per-area biomass B (t d.m./ha) * CF; other classes: class biomass * CF
* dead organic matter (DOM) and soil organic carbon (SOC): Tier 1 defaults per ecosystem type
  (``carbon.class.<type>``; a sub-type such as ``bamboo_forest`` uses its parent's unless given)
* stock-difference (Eq. 2.5/2.8) between the two inventory years t1 < t2::

      dC/dt = (C_bio,t2 - C_bio,t1 + DOM_t2 - DOM_t1) / (t2 - t1)
              + (SOC_t2 - SOC_t1) / D_soil                 [t C/ha/yr]   (Eq. 2.25, D_soil = 20 yr)

* CO2e = C × the CO2/C molar-mass ratio (``constants.molar_ratio_co2_c``); a positive sink is a removal.

Every coefficient comes from the rule set; :func:`coefficients` turns it into lookup tables by
engine id (species group, ecosystem type). Functions here never read files or print; they return
DataArrays with units in attrs.
"""

# The stock/sink engine (xarray + dask) loads on first use, so the InVEST-compatible mode
# (``eco_value.carbon.invest``) starts without importing xarray and dask.
_EXPORTS = ("CarbonCoefficients", "coefficients", "biomass_tc_per_ha", "stock_tc_per_ha", "stock_difference",
            "gain_loss", "species_code", "species_k", "LUCC", "volume_species", "per_area_species", "class_param",
            "N_SPECIES_CODES", "N_LUCC", "lucc_with_events")


def __getattr__(name):
    if name in _EXPORTS:
        from . import stock

        return getattr(stock, name)
    raise AttributeError(f"module 'eco_value.carbon' has no attribute {name!r}")
