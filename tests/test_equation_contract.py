"""The contract of every equation function in services/ and carbon/stock.py (issue 16, items 1 and 4):

* numpy path = dask path: each one, called on numpy arrays and on dask-backed DataArrays holding the
  same values, gives equal results (1e-12 relative) and stays lazy on dask;
* a pvlib-style docstring: a ``Parameters`` section naming every argument with its unit in brackets
  (``[mm/yr]``, ``[-]``; boolean masks need none) and a ``Returns`` section with the returned unit.

Equation functions are found, not listed: every public function defined in those modules, except the
adapters and rule-set helpers in :data:`NOT_EQUATIONS`. A new equation without a numpy = dask case or
with an incomplete docstring fails here.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import dask.array as da
import numpy as np
import pytest
import xarray as xr

import eco_value.services as services_pkg
from eco_value.carbon import stock
from eco_value.services import provisioning, recreation, soil_conservation
from eco_value.services.base import nan_to_zero

from test_equations import CASES, NAN, RNG, SHAPE, _b, _pair, _u

# public functions of those modules that are not equations, and why
NOT_EQUATIONS = {
    "compute": "the adapter of a service (gathers inputs by its SPEC)",
    "nutrient_prices": "adapter helper: reads the rule set through the context",
    "finish": "packs a service's result",
    "price_factor": "CPI rebasing read from a rule set (tested in test_services)",
    "class_param": "rule-set lookup", "coefficients": "rule-set lookup", "species_code": "vocabulary lookup",
    "species_k": "rule-set lookup", "volume_species": "rule-set lookup", "per_area_species": "rule-set lookup",
    "gain_loss": "takes a rule set (tested in test_carbon)",
}
# per-block numpy kernels: their dask path is the function named (tested below through it)
NUMPY_KERNELS = {"slope_radians": "ls_from_dem", "ls_factor": "ls_from_dem"}


def _modules():
    mods = [importlib.import_module(f"eco_value.services.{m.name}") for m in pkgutil.iter_modules(services_pkg.__path__)
            if m.name != "base"]
    return mods + [stock]


def equation_functions() -> dict[str, object]:
    """``{"services.water_conservation.water_conservation_m3": fn, ...}`` found in the modules."""
    out = {}
    for m in _modules():
        for name, fn in inspect.getmembers(m, inspect.isfunction):
            if fn.__module__ != m.__name__ or name.startswith("_") or name in NOT_EQUATIONS:
                continue
            out[m.__name__.removeprefix("eco_value.") + "." + name] = fn
    return out


EQUATIONS = equation_functions()


# --- numpy path = dask path ---------------------------------------------------------------------------

def _coef():
    from eco_value.rules import load_rules
    return stock.coefficients(load_rules("cn2011-mee2020"))


def _codes(ids, nodata_share=0.1):
    """Engine ids drawn from ``ids`` with some nodata (255) pixels, as uint8."""
    a = RNG.choice(np.asarray(ids, dtype="uint8"), SHAPE)
    return np.where(RNG.random(SHAPE) < nodata_share, 255, a).astype("uint8")


def _carbon_inputs():
    from eco_value.rules.ecosystem import ecosystem_types, species_groups
    types = [t.id for t in ecosystem_types()]
    groups = [g.id for g in species_groups()]
    return (_u(0, 400).astype("float32"), _codes(groups), _codes(types),
            _u(0, 400).astype("float32"), _codes(groups), _codes(types))


# event id -> forced LUCC category (0 = keep the differencing); ids 1 and 2 force harvest, deforestation
_EVENT_LUCC = np.zeros(256, dtype=np.uint8)
_EVENT_LUCC[1], _EVENT_LUCC[2] = stock.LUCC["harvest"], stock.LUCC["deforestation"]


def _lucc_inputs():
    """A LUCC category raster (0 = nodata) and recorded event ids (0 = none, some nodata 255), as uint8."""
    return (RNG.integers(0, stock.N_LUCC - 1, SHAPE).astype("uint8"), _codes([0, 1, 2, 3]))


def _da(a, lazy):
    """A DataArray with nodata 255 on categorical inputs, backed by numpy or dask (uneven chunks)."""
    data = da.from_array(a, chunks=(3, 4)) if lazy else a
    attrs = {"nodata": 255} if a.dtype == np.uint8 else {"nodata": -9999.0}
    return xr.DataArray(data, dims=("y", "x"), attrs=attrs)


# cases of functions over DataArrays only (a numpy-backed and a dask-backed DataArray are compared)
DA_CASES = {
    "biomass_tc_per_ha": (lambda v, sp, lc: stock.biomass_tc_per_ha(v, sp, lc, _coef()), lambda: _carbon_inputs()[:3]),
    "stock_tc_per_ha": (lambda v, sp, lc: stock.stock_tc_per_ha(v, sp, lc, _coef()), lambda: _carbon_inputs()[:3]),
    "stock_difference": (lambda *a: stock.stock_difference(*a, (2020, 2023), _coef()), _carbon_inputs),
    "lucc_with_events": (lambda lucc, ev: stock.lucc_with_events(lucc, ev, _EVENT_LUCC), lambda: _lucc_inputs()),
}
# further cases over numpy arrays vs dask-backed DataArrays (the rest are test_equations.CASES)
MORE_CASES = {
    "volume_to_carbon_tc_per_m3": (stock.volume_to_carbon_tc_per_m3,
                                   lambda: (_u(0.3, 0.7), _u(1.1, 1.8), _u(0.15, 0.35), _u(0.45, 0.52)), ()),
    "provisioning_cny": (lambda q, p: np.asarray(provisioning.provisioning_cny(q, p)),
                         lambda: (_u(0, 1e4), _u(100, 5000)), ()),
    "nan_to_zero": (nan_to_zero, lambda: (np.where(_b(), NAN, _u(-5, 5)),), ()),
    "recreation_cny_visitors": (lambda s: recreation.recreation_cny(1000.0, 300.0, s)[0], lambda: (_u(0, 1e-3),), ()),
}
ALL_CASES = {**CASES, **MORE_CASES}


def _assert_close(a, b):
    np.testing.assert_allclose(np.asarray(a, dtype="float64"), np.asarray(b, dtype="float64"), rtol=1e-12, atol=0,
                               equal_nan=True)


@pytest.mark.parametrize("name", sorted(MORE_CASES))
def test_numpy_equals_dask_more(name):
    fn, make, extra = MORE_CASES[name]
    args = make()
    np_out = fn(*args, *extra)
    lazy = fn(*(_pair(a)[1] for a in args), *extra)
    if name != "provisioning_cny":    # a sum to one number (provisioning) computes by design
        assert isinstance(lazy, xr.DataArray) and isinstance(lazy.data, da.Array), "must stay lazy"
    _assert_close(np.asarray(lazy), np_out)
    assert np.isfinite(np.asarray(np_out)).any()


@pytest.mark.parametrize("name", sorted(DA_CASES))
def test_numpy_backed_equals_dask_backed_dataarray(name):
    fn, make = DA_CASES[name]
    args = make()
    eager = fn(*(_da(a, False) for a in args))
    lazy = fn(*(_da(a, True) for a in args))
    pairs = [(eager[k], lazy[k]) for k in eager] if isinstance(eager, dict) else [(eager, lazy)]
    for e, lz in pairs:
        assert isinstance(lz.data, da.Array), "must stay lazy"
        assert not isinstance(e.data, da.Array)
        _assert_close(lz.values, e.values)
        assert np.isfinite(e.values).any() and (e.values != 0).any()


def test_numpy_kernels_match_their_dask_path():
    dem = _u(500, 900)
    np_ls = soil_conservation.ls_factor(soil_conservation.slope_radians(dem, 30.0), 30.0)
    lazy = soil_conservation.ls_from_dem(_pair(dem)[1], 30.0)
    assert isinstance(lazy.data, da.Array)
    _assert_close(lazy.values, np_ls)


def test_every_equation_function_has_a_numpy_equals_dask_case():
    covered = set(ALL_CASES) | set(DA_CASES) | set(NUMPY_KERNELS)
    missing = sorted(k for k in EQUATIONS if k.rsplit(".", 1)[1] not in covered
                     and not any(c.startswith(k.rsplit(".", 1)[1]) for c in covered))
    assert not missing, f"equation functions without a numpy = dask case: {missing}"
    assert len(EQUATIONS) >= 20


def test_the_coverage_check_catches_an_equation_without_a_case(monkeypatch):
    def made_up_m3(precip_mm):
        """Made up."""
        return precip_mm
    monkeypatch.setattr(soil_conservation, "made_up_m3", made_up_m3, raising=False)
    made_up_m3.__module__ = soil_conservation.__name__
    found = equation_functions()
    assert "services.soil_conservation.made_up_m3" in found
    with pytest.raises(AssertionError, match="made_up_m3"):
        monkeypatch.setattr(__import__(__name__), "EQUATIONS", found)
        test_every_equation_function_has_a_numpy_equals_dask_case()


def test_the_tolerance_check_can_fail():
    with pytest.raises(AssertionError):
        _assert_close(np.array([1.0, 2.0]), np.array([1.0, 2.0 * (1 + 1e-11)]))
    _assert_close(np.array([1.0, NAN]), np.array([1.0, NAN]))


# --- pvlib-style docstrings ----------------------------------------------------------------------------

SECTION = re.compile(r"^\s*(\w[\w ]*)\n\s*-{3,}\s*$", re.M)
UNIT = re.compile(r"\[[^\]]+\]")


def docstring_problems(fn) -> list[str]:
    """What a function's docstring lacks of pvlib's form (empty when complete)."""
    doc = inspect.getdoc(fn) or ""
    heads = list(SECTION.finditer(doc))
    sections = {m.group(1).strip(): doc[m.end(): heads[i + 1].start() if i + 1 < len(heads) else len(doc)]
                for i, m in enumerate(heads)}
    probs = [f"no {s} section" for s in ("Parameters", "Returns") if s not in sections]
    if "Returns" in sections and not UNIT.search(sections["Returns"]):
        probs.append("Returns gives no unit in brackets")
    if "Parameters" not in sections:
        return probs
    entries = {}   # argument name -> (type, description)
    lines = sections["Parameters"].strip("\n").splitlines()
    current = None
    for line in lines:
        m = re.match(r"^(\w[\w, ]*?)\s*:\s*(.*)$", line)
        if m and not line.startswith(" "):
            current = [n.strip() for n in m.group(1).split(",")]
            for n in current:
                entries[n] = [m.group(2), ""]
        elif current:
            for n in current:
                entries[n][1] += line + "\n"
    for arg in inspect.signature(fn).parameters:
        if arg not in entries:
            probs.append(f"argument '{arg}' not in Parameters")
        elif "bool" not in entries[arg][0] and not UNIT.search(entries[arg][1]):
            probs.append(f"argument '{arg}' has no unit in brackets")
    return probs


@pytest.mark.parametrize("name", sorted(EQUATIONS))
def test_equation_has_a_pvlib_style_docstring(name):
    """Every equation function, the carbon engine's DataArray wrappers and the lazy LS included (no exemption)."""
    probs = docstring_problems(EQUATIONS[name])
    assert not probs, f"{name}: {probs}"


def test_docstring_check_catches_a_missing_unit_and_a_missing_section():
    def good(precip_mm, mask, a, b):
        """Doc.

        Parameters
        ----------
        precip_mm : array-like
            Precipitation [mm/yr].
        mask : bool array-like
            Where it applies.
        a, b : float
            Coefficients [-].

        Returns
        -------
        Q [m3/yr].
        """

    def no_unit(precip_mm):
        """Doc.

        Parameters
        ----------
        precip_mm : array-like
            Precipitation in mm.

        Returns
        -------
        Q [m3/yr].
        """

    def no_returns(precip_mm, area):
        """Doc.

        Parameters
        ----------
        precip_mm : array-like
            Precipitation [mm/yr].
        """

    assert docstring_problems(good) == []
    assert docstring_problems(no_unit) == ["argument 'precip_mm' has no unit in brackets"]
    assert docstring_problems(no_returns) == ["no Returns section", "argument 'area' not in Parameters"]
