"""Carbon stock and sink per pixel (see the package docstring for the equations)."""

from __future__ import annotations

from dataclasses import dataclass

import dask.array as da
import numpy as np
import xarray as xr

from ..rules import RuleSet
from ..rules.ecosystem import N_IDS, ecosystem_types, species_groups

N_SPECIES_CODES = N_IDS  # lookup tables indexed by a uint8 engine id (nodata 255 maps to 0)

# land-use-change categories of the lucc raster; "harvest" (forest land remaining forest land with a
# recorded harvest) comes only from recorded change events (:func:`lucc_with_events`)
LUCC = {"forest_remaining_forest": 1, "afforestation": 2, "deforestation": 3, "other": 4, "harvest": 5}
N_LUCC = len(LUCC) + 1   # bins of per-category sums (0 = nodata)


@dataclass(frozen=True)
class CarbonCoefficients:
    """Lookup tables derived from a rule set, indexed by engine id (species group or ecosystem type)."""

    k_vol_tc_per_m3: np.ndarray      # species group: D * BEF * (1 + R) * CF  [t C per m3 of stem volume]
    area_tc_per_ha: np.ndarray       # species group: per-area biomass * CF   [t C/ha] (bamboo, shrub)
    class_bio_tc_per_ha: np.ndarray  # ecosystem type: non-forest biomass * CF [t C/ha]
    class_dom_tc_per_ha: np.ndarray  # ecosystem type: DOM [t C/ha]
    class_soc_tc_per_ha: np.ndarray  # ecosystem type: SOC [t C/ha]
    soil_transition_yr: float
    co2_per_c: float
    forest_ids: tuple[int, ...] = ()  # ecosystem types counted as forest (land-use change categories)


def species_code(key: str) -> int:
    """Engine id of a species group."""
    return species_groups().id(key)


def volume_species(rules: RuleSet) -> list[str]:
    """Species groups whose biomass comes from stem volume, in vocabulary order."""
    return [g.name for g in species_groups().volume_groups(rules)]


def per_area_species(rules: RuleSet) -> list[str]:
    """Species groups with a per-area biomass (bamboo, shrub, ...), in vocabulary order."""
    return [g.name for g in species_groups().per_area_groups(rules)]


def class_param(rules: RuleSet, type_name: str, what: str) -> str:
    """The rule-set parameter ``carbon.class.<type>.<what>`` a type uses (its parent's if it has none)."""
    return ecosystem_types().required_param(rules, "carbon.class", type_name, what)


def volume_to_carbon_tc_per_m3(wood_density, bef, root_shoot, carbon_fraction):
    """Carbon in living biomass per cubic metre of stem volume (IPCC biomass expansion).

    ``k = D * BEF * (1 + R) * CF``

    Parameters
    ----------
    wood_density : float or array-like
        Basic wood density D [t dry matter / m3 stem volume].
    bef : float or array-like
        Biomass expansion factor BEF [-] (stem → above-ground biomass).
    root_shoot : float or array-like
        Root-to-shoot ratio R [-].
    carbon_fraction : float or array-like
        Carbon fraction of dry matter CF [t C / t dm].

    Returns
    -------
    k [t C / m3 of stem volume].

    References
    ----------
    IPCC 2006 Guidelines Vol. 4 Ch. 4, Eq. 2.8 / 4.5; China's forest carbon parameters (Fang et al.).
    """
    return wood_density * bef * (1.0 + root_shoot) * carbon_fraction


def biomass_carbon_tc_per_ha(volume_m3_per_ha, k_tc_per_m3, per_area_tc_per_ha, class_biomass_tc_per_ha):
    """Living biomass carbon (above + below ground) of one pixel.

    ``B = V * k(species) + a(species) + b(ecosystem type)``

    Parameters
    ----------
    volume_m3_per_ha : array-like
        Growing stock (stem volume) V [m3/ha]; 0 where none.
    k_tc_per_m3 : array-like
        Volume-to-carbon factor k of the pixel's species group [t C/m3] (:func:`volume_to_carbon_tc_per_m3`;
        0 for groups without stem volume).
    per_area_tc_per_ha : array-like
        Per-area biomass carbon a of the species group [t C/ha] (bamboo, shrub; else 0).
    class_biomass_tc_per_ha : array-like
        Non-forest biomass carbon b of the ecosystem type [t C/ha] (biomass * default CF).

    Returns
    -------
    Biomass carbon B [t C/ha].
    """
    return volume_m3_per_ha * k_tc_per_m3 + per_area_tc_per_ha + class_biomass_tc_per_ha


def net_sink_tco2e_per_ha_yr(biomass_t1, biomass_t2, dom_t1, dom_t2, soc_t1, soc_t2, years, soil_transition_yr,
                             co2_per_c):
    """Annual net carbon sink of one pixel by the stock-difference method.

    ``S = ((B2 - B1 + DOM2 - DOM1) / dt + (SOC2 - SOC1) / D_soil) * r``, r = the CO2/C molar-mass ratio (``constants.molar_ratio_co2_c``)

    Parameters
    ----------
    biomass_t1, biomass_t2 : array-like
        Living biomass carbon at the two inventories [t C/ha].
    dom_t1, dom_t2 : array-like
        Dead organic matter carbon [t C/ha].
    soc_t1, soc_t2 : array-like
        Soil organic carbon [t C/ha].
    years : float
        Time between the inventories dt [yr] (> 0).
    soil_transition_yr : float
        Years D_soil over which soil carbon moves to its new equilibrium after a land-use change [yr].
    co2_per_c : float
        Mass ratio CO2 / C [t CO2 / t C] (the rule set's ``constants.molar_ratio_co2_c``).

    Returns
    -------
    Net sink S [t CO2e/ha/yr]; positive = removal from the atmosphere, negative = emission.

    References
    ----------
    IPCC 2006 Guidelines Vol. 4 Ch. 2, Eq. 2.5 (stock difference) and Eq. 2.25 (soil carbon, default
    transition 20 years).
    """
    return ((biomass_t2 - biomass_t1 + dom_t2 - dom_t1) / years + (soc_t2 - soc_t1) / soil_transition_yr) * co2_per_c


def species_k(rules: RuleSet, key: str) -> float:
    """D * BEF * (1 + R) * CF for one species group [t C per m3]."""
    p = f"carbon.species.{key}"
    return volume_to_carbon_tc_per_m3(rules.value(f"{p}.wood_density"), rules.value(f"{p}.bef"),
                                      rules.value(f"{p}.root_shoot"), rules.value(f"{p}.carbon_fraction"))


def coefficients(rules: RuleSet) -> CarbonCoefficients:
    k = np.zeros(N_SPECIES_CODES)
    a = np.zeros(N_SPECIES_CODES)
    for key in volume_species(rules):
        k[species_code(key)] = species_k(rules, key)
    for key in per_area_species(rules):
        p = f"carbon.per_area.{key}"
        a[species_code(key)] = rules.value(f"{p}.biomass") * rules.value(f"{p}.carbon_fraction")
    cf = rules.value("carbon.default_carbon_fraction")
    bio = np.zeros(N_IDS)
    dom = np.zeros(N_IDS)
    soc = np.zeros(N_IDS)
    types = ecosystem_types()
    for t in types:
        bio[t.id] = rules.value(class_param(rules, t.name, "biomass")) * cf
        dom[t.id] = rules.value(class_param(rules, t.name, "dom"))
        soc[t.id] = rules.value(class_param(rules, t.name, "soc"))
    return CarbonCoefficients(k, a, bio, dom, soc, rules.value("carbon.soil_transition_years"),
                              rules.value("constants.molar_ratio_co2_c"), tuple(types.ids_under("forest")))


# 8-byte table items (float64, int64): gathered ~2x faster by indexing than by np.take (same values)
_ITEM_BYTES_8 = np.dtype(np.float64).itemsize


def _take(table: np.ndarray, codes: xr.DataArray) -> xr.DataArray:
    """Lazy lookup ``table[id]`` of an engine-id array (dask-friendly, one ``np.take`` per chunk)."""
    data = codes.data
    if isinstance(data, da.Array):
        out = data.map_blocks(lambda c: np.take(table, c), dtype=table.dtype)
    else:   # 8-byte items: indexing gathers ~2x faster than np.take (same values)
        out = table[np.asarray(data)] if table.itemsize == _ITEM_BYTES_8 else np.take(table, np.asarray(data))
    return xr.DataArray(out, dims=codes.dims, coords=codes.coords)


def _valid(arr: xr.DataArray) -> xr.DataArray:
    nod = arr.attrs.get("nodata")
    return arr != nod if nod is not None else xr.ones_like(arr, dtype=bool)


def biomass_tc_per_ha(volume_m3_per_ha: xr.DataArray, species: xr.DataArray, lulc: xr.DataArray,
                      coef: CarbonCoefficients) -> xr.DataArray:
    """Living biomass carbon (above + below ground) of each pixel from its inventory rasters.

    ``B = V * k(species) + a(species) + b(ecosystem type)`` (:func:`biomass_carbon_tc_per_ha`), the
    factors looked up by engine id in ``coef``. A nodata volume counts as 0 m3/ha; a nodata species or
    ecosystem type as id 0 (no factor), so nodata pixels get the carbon of what remains, not NaN.

    Parameters
    ----------
    volume_m3_per_ha : xarray.DataArray (numpy- or dask-backed)
        Growing stock (stem volume) V [m3/ha]; its ``nodata`` attribute marks no data.
    species : xarray.DataArray of uint8
        Engine id of the pixel's species group [-] (``nodata`` attribute, usually 255).
    lulc : xarray.DataArray of uint8
        Engine id of the pixel's ecosystem type [-] (``nodata`` attribute, usually 255).
    coef : CarbonCoefficients
        Lookup tables by engine id from the rule set (:func:`coefficients`): k [t C/m3], a and b [t C/ha].

    Returns
    -------
    Biomass carbon B [t C/ha], a DataArray like ``lulc`` (lazy when the inputs are dask-backed).

    References
    ----------
    IPCC 2006 Guidelines Vol. 4 Ch. 4, Eq. 4.5 (biomass from growing stock); as in
    :func:`volume_to_carbon_tc_per_m3`.
    """
    v = xr.where(_valid(volume_m3_per_ha), volume_m3_per_ha.astype("float64"), 0.0)
    sp = xr.where(_valid(species), species, 0)
    lc = xr.where(_valid(lulc), lulc, 0)
    out = biomass_carbon_tc_per_ha(v, _take(coef.k_vol_tc_per_m3, sp), _take(coef.area_tc_per_ha, sp),
                                   _take(coef.class_bio_tc_per_ha, lc))
    out.attrs = {"units": "t C/ha", "long_name": "living biomass carbon per hectare"}
    return out


def stock_tc_per_ha(volume, species, lulc, coef: CarbonCoefficients) -> xr.DataArray:
    """Total carbon stock of each pixel: living biomass + dead organic matter + soil organic carbon.

    ``C = B + DOM(ecosystem type) + SOC(ecosystem type)``, B from :func:`biomass_tc_per_ha`.

    Parameters
    ----------
    volume : xarray.DataArray (numpy- or dask-backed)
        Growing stock (stem volume) [m3/ha]; ``nodata`` attribute (counts as 0).
    species : xarray.DataArray of uint8
        Engine id of the species group [-] (``nodata`` attribute).
    lulc : xarray.DataArray of uint8
        Engine id of the ecosystem type [-] (``nodata`` attribute; those pixels get NaN).
    coef : CarbonCoefficients
        Lookup tables by engine id from the rule set (:func:`coefficients`): k [t C/m3], biomass, DOM and
        SOC [t C/ha].

    Returns
    -------
    Carbon stock C [t C/ha]; NaN where ``lulc`` is nodata.

    References
    ----------
    IPCC 2006 Guidelines Vol. 4 Ch. 2, Eq. 2.3 (the five carbon pools; here biomass above + below
    ground, DOM and SOC).
    """
    lc = xr.where(_valid(lulc), lulc, 0)
    out = biomass_tc_per_ha(volume, species, lulc, coef) + _take(coef.class_dom_tc_per_ha, lc) \
        + _take(coef.class_soc_tc_per_ha, lc)
    out = out.where(_valid(lulc))
    out.attrs = {"units": "t C/ha", "long_name": "carbon stock per hectare (biomass + DOM + SOC)"}
    return out


def stock_difference(v1, sp1, lc1, v2, sp2, lc2, years: tuple[int, int], coef: CarbonCoefficients) -> dict[str, xr.DataArray]:
    """Annual net carbon sink by the stock-difference method, per pixel, from two inventories.

    Stocks at t1 and t2 as in :func:`stock_tc_per_ha`, the sink by :func:`net_sink_tco2e_per_ha_yr`
    (biomass and DOM over dt = t2 - t1, soil carbon over the rule set's transition period), and the
    land-use-change category from the two ecosystem types (forest at both, at t2 only, at t1 only, else).

    Parameters
    ----------
    v1, v2 : xarray.DataArray (numpy- or dask-backed)
        Growing stock (stem volume) at t1, t2 [m3/ha]; ``nodata`` attribute (counts as 0).
    sp1, sp2 : xarray.DataArray of uint8
        Engine id of the species group at t1, t2 [-] (``nodata`` attribute).
    lc1, lc2 : xarray.DataArray of uint8
        Engine id of the ecosystem type at t1, t2 [-] (``nodata`` attribute; a pixel nodata at either
        date is NaN in the sink and stocks and 0 in ``lucc``).
    years : tuple of int
        Inventory years (t1, t2) [yr], t2 > t1 (else ``ValueError``).
    coef : CarbonCoefficients
        Lookup tables by engine id from the rule set (:func:`coefficients`): k [t C/m3], biomass, DOM and
        SOC [t C/ha], soil transition [yr], CO2/C [t CO2/t C], forest types.

    Returns
    -------
    dict of DataArrays: ``sink_tco2e_per_ha_yr`` [t CO2e/ha/yr] (positive = removal from the atmosphere),
    ``stock_t1_tc_per_ha`` and ``stock_t2_tc_per_ha`` [t C/ha], ``lucc`` [class] (uint8, :data:`LUCC`;
    0 = nodata).

    References
    ----------
    IPCC 2006 Guidelines Vol. 4 Ch. 2, Eq. 2.5 (stock difference) and Eq. 2.25 (soil carbon).
    """
    t1, t2 = years
    dt = float(t2 - t1)
    if dt <= 0:
        raise ValueError(f"inventory years must increase, got {years}")
    valid = _valid(lc1) & _valid(lc2)
    l1 = xr.where(_valid(lc1), lc1, 0)
    l2 = xr.where(_valid(lc2), lc2, 0)
    # The carbon engine stays float64 per pixel (grid.PIXEL_DTYPE is not for it): the sink is a small
    # difference of two large stocks (B2 - B1 cancels) and float32 stocks (6e-8 relative each) shift a
    # zone's sink by up to 3e-5 where gains and losses offset; and a carbon credit package ties the stored
    # stocks and sinks to its own float64 recomputation to 1e-9 (exchange/package.py: pools re-add to the
    # stock, POOL_SUM_REL; removals equal the stock change), which float32 per pixel breaks (~4e-9)
    b1 = biomass_tc_per_ha(v1, sp1, lc1, coef)
    b2 = biomass_tc_per_ha(v2, sp2, lc2, coef)
    dom1, dom2 = _take(coef.class_dom_tc_per_ha, l1), _take(coef.class_dom_tc_per_ha, l2)
    soc1, soc2 = _take(coef.class_soc_tc_per_ha, l1), _take(coef.class_soc_tc_per_ha, l2)
    sink = net_sink_tco2e_per_ha_yr(b1, b2, dom1, dom2, soc1, soc2, dt, coef.soil_transition_yr,
                                    coef.co2_per_c).where(valid)
    sink.attrs = {"units": "t CO2e/ha/yr", "long_name": "net carbon sink per hectare per year (stock difference)"}
    s1 = (b1 + dom1 + soc1).where(valid)
    s2 = (b2 + dom2 + soc2).where(valid)
    s1.attrs = s2.attrs = {"units": "t C/ha", "long_name": "carbon stock per hectare"}
    forest = np.zeros(N_IDS, dtype=bool)   # is-forest by type id: one lookup per pixel (isin sorts and searches)
    forest[list(coef.forest_ids)] = True
    f1, f2 = _take(forest, l1), _take(forest, l2)
    lucc = xr.where(f1 & f2, LUCC["forest_remaining_forest"],
                    xr.where(f2, LUCC["afforestation"], xr.where(f1, LUCC["deforestation"], LUCC["other"])))
    lucc = lucc.where(valid, 0).astype("uint8")
    lucc.attrs = {"units": "class", "classes": str(LUCC)}
    return {"sink_tco2e_per_ha_yr": sink, "stock_t1_tc_per_ha": s1, "stock_t2_tc_per_ha": s2, "lucc": lucc}


def lucc_with_events(lucc: xr.DataArray, events: xr.DataArray, event_lucc: np.ndarray) -> xr.DataArray:
    """Land-use-change category with recorded change events overriding the land-cover differencing.

    ``out = event_lucc[event]`` where an event is recorded and it names a category, else ``lucc``.

    Parameters
    ----------
    lucc : DataArray of uint8
        Category from differencing the land cover [class] (:func:`stock_difference`; 0 = nodata, kept).
    events : DataArray of uint8
        Engine id of the change event recorded for the pixel's stand [-] (0 = none).
    event_lucc : ndarray (256,)
        Category id each event id forces [class] (0 = keep the differencing, and for nodata), from the
        change-event table.

    Returns
    -------
    The category per pixel [class] (uint8, :data:`LUCC`). Only the attribution changes: the stocks and the sink
    stay the stock difference of the pixel.
    """
    forced = _take(np.asarray(event_lucc, dtype=np.uint8), events)   # nodata (255) forces nothing: lut[255] = 0
    out = xr.where((forced > 0) & (lucc > 0), forced, lucc).astype("uint8")
    out.attrs = dict(lucc.attrs)
    return out


def gain_loss(area_ha: xr.DataArray, species: xr.DataArray, harvest_m3_per_ha: xr.DataArray | None,
              rules: RuleSet) -> xr.DataArray:
    """Gain-loss method (IPCC Eq. 2.7, 2.9, 2.12) when only one inventory and increments exist.

    ``gain = I_v * D * BEF * (1 + R) * CF`` from the species' annual volume increment;
    ``loss = H * D * BEF * (1 + R) * CF`` for wood removals H (m3/ha/yr). Returns t CO2e/ha/yr.
    """
    coef = coefficients(rules)
    inc = np.zeros(N_SPECIES_CODES)
    for key in volume_species(rules):
        inc[species_code(key)] = rules.value(f"carbon.species.{key}.annual_increment")
    sp = xr.where(_valid(species), species, 0)
    k = _take(coef.k_vol_tc_per_m3, sp)
    gain = _take(inc, sp) * k
    loss = 0.0 if harvest_m3_per_ha is None else harvest_m3_per_ha * k
    out = (gain - loss) * coef.co2_per_c
    out.attrs = {"units": "t CO2e/ha/yr", "long_name": "net carbon sink per hectare (gain-loss)"}
    return out
