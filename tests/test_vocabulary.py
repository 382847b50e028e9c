"""The engine's vocabulary: ecosystem types and species groups, class schemes as data, layers by role@period.

The ``ast`` scan enforces that no product code or calendar year reaches services/, carbon/ or accounts/.
"""

from __future__ import annotations

import ast
import re
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest
import tomli_w

import eco_value
from eco_value.errors import InputError, RuleSetError
from eco_value.inputs.catalog import legacy_layer_key, load_catalog
from eco_value.inputs.schemes import load_scheme, read_scheme
from eco_value.rules import load_rules
from eco_value.rules.ecosystem import NODATA_ID, ecosystem_types, load_ecosystem_types, species_groups

ROOT = Path(eco_value.__file__).parent
ENGINE = ("services", "carbon", "accounts")
YEAR_IN_NAME = re.compile(r"(?:[A-Za-z]_?|_)(?:19|20)\d\d(?!\d)|(?<!\d)(?:19|20)\d\d_")
LAND_COVER_NAME = re.compile(r"lulc|land_cover|\blc\d?\b|\bl\d\b|class|types?\b|codes?\b|species|\bsp\d?\b", re.I)


# --- the ast rule ---------------------------------------------------------------------------------
def vocabulary_violations(source: str, name: str = "<src>") -> list[str]:
    """Product codes, product imports and calendar years in an engine module's source."""
    tree = ast.parse(source)
    out = []

    def where(node):
        return f"{name}:{getattr(node, 'lineno', '?')}"

    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] + ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            names = [a.name for a in node.names]
            if any("inputs" in m.split(".") or m.split(".")[-1] in ("classes", "schemes") for m in mods) \
                    or any("CLCD" in n or "PILOT_SPECIES" in n for n in names):
                out.append(f"{where(node)} imports a product's class scheme ({', '.join(mods + names)})")
        elif isinstance(node, ast.Name) and ("CLCD" in node.id or YEAR_IN_NAME.search(node.id)):
            out.append(f"{where(node)} name '{node.id}'")
        elif isinstance(node, ast.Attribute) and ("CLCD" in node.attr or YEAR_IN_NAME.search(node.attr)):
            out.append(f"{where(node)} attribute '{node.attr}'")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and YEAR_IN_NAME.search(node.name):
            out.append(f"{where(node)} definition '{node.name}'")
        elif isinstance(node, ast.arg) and YEAR_IN_NAME.search(node.arg):
            out.append(f"{where(node)} argument '{node.arg}'")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and YEAR_IN_NAME.search(node.value):
            out.append(f"{where(node)} string {node.value!r} holds a year-keyed name")
        elif isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) for op in node.ops) \
                    and any(_int_literal(o) for o in operands) \
                    and any(LAND_COVER_NAME.search(ast.unparse(o)) for o in operands if not _int_literal(o)):
                out.append(f"{where(node)} compares a class array with an integer literal: {ast.unparse(node)}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "isin" \
                and node.args and _int_literal(node.args[0]):
            out.append(f"{where(node)} isin() with integer literals: {ast.unparse(node)}")
    return out


def _int_literal(node) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, int) and not isinstance(node.value, bool)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return _int_literal(node.operand)
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return bool(node.elts) and all(_int_literal(e) for e in node.elts)
    return False


def test_engine_modules_hold_no_product_code_and_no_year():
    files = [f for sub in ENGINE for f in sorted((ROOT / sub).rglob("*.py"))]
    assert len(files) >= 15
    bad = [v for f in files for v in vocabulary_violations(f.read_text(encoding="utf-8"), f"{f.parent.name}/{f.name}")]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("src", [
    "from ..inputs.classes import CLCD",
    "from eco_value.inputs.schemes import load_scheme",
    "lc = layers['lulc_2023']",
    "v = ctx.layers['volume_2020']",
    "volume_2020 = 1.0",
    "m = lulc == 2",
    "m = ctx.land_cover != 8",
    "m = 5 == lc",
    "m = sp1 in (7, 8)",
    "m = ctx.land_cover.isin([1, 2])",
    "x = CLCD['forest']",
    "def f(year_2023):\n    pass",
])
def test_the_scan_catches(src):
    assert vocabulary_violations(src), src


@pytest.mark.parametrize("src", [
    'SOURCE = "MEE 2020 guideline; LY/T 1721-2008"',
    "lc = ctx.layers['land_cover@t2']",
    "if dt <= 0:\n    pass",
    "ok = n == 0",
    "m = ctx.class_mask('water')",
])
def test_the_scan_allows(src):
    assert not vocabulary_violations(src), src


# --- ecosystem types and parameters with parent fallback ------------------------------------------------
def test_types_file_level1_names_are_the_rule_sets_class_keys():
    t = ecosystem_types()
    rules = load_rules("cn2011-mee2020")
    level1 = {x.name for x in t.level1()}
    assert level1 == {k.split(".")[0] for k in rules.group("carbon.class")}
    assert {x.level1 for x in t} == level1
    assert t.check_rules(rules, "carbon.class") == []
    assert set(t.ids_under("forest")) == {t.id("forest")} | {x.id for x in t if x.parent == "forest"}


def test_sub_type_uses_its_parent_parameter_unless_given_its_own():
    t = ecosystem_types()
    rules = load_rules("cn2011-mee2020")
    tab = t.table(rules, "gep.air_purification.so2")
    assert tab[t.id("bamboo_forest")] == tab[t.id("forest")] == rules.value("gep.air_purification.so2.forest")
    assert tab[t.id("paddy")] == 0.0 and tab[NODATA_ID] == 0.0   # cropland has no so2 → not covered
    own = rules.with_value("gep.air_purification.so2.forest", 100.0)
    own.params["gep.air_purification.so2.bamboo_forest"] = own.params["gep.air_purification.so2.forest"].model_copy(
        update={"value": 42.0})
    tab2 = t.table(own, "gep.air_purification.so2")
    assert tab2[t.id("bamboo_forest")] == 42.0 and tab2[t.id("mixed_forest")] == 100.0
    assert t.ids_with(rules, "gep.water_conservation.runoff_coefficient") == \
        [x.id for x in t if x.level1 in {k for k in rules.group("gep.water_conservation.runoff_coefficient")}]


def test_carbon_of_a_sub_type_equals_its_parent():
    from eco_value.carbon import coefficients

    t = ecosystem_types()
    c = coefficients(load_rules("cn2011-mee2020"))
    for sub in (x for x in t if x.parent):
        p = t.id(sub.parent)
        assert (c.class_soc_tc_per_ha[sub.id], c.class_dom_tc_per_ha[sub.id]) == (c.class_soc_tc_per_ha[p], c.class_dom_tc_per_ha[p])
    assert set(c.forest_ids) == set(t.ids_under("forest"))


def test_a_bad_types_file_is_refused(tmp_path):
    p = tmp_path / "types.toml"
    p.write_text('[types.a]\nid = 1\n[types.b]\nid = 1\n[types.c]\nid = 3\nparent = "nope"\n', encoding="utf-8")
    with pytest.raises(RuleSetError) as e:
        load_ecosystem_types(str(p))
    assert "id 1 is already used by 'a'" in str(e.value) and "parent 'nope'" in str(e.value)


def test_a_rule_set_species_group_without_an_id_is_refused():
    rules = load_rules("cn2011-mee2020")
    rules.params["carbon.species.pinus_yunnanensis.wood_density"] = rules.params["carbon.species.cunninghamia.wood_density"]
    with pytest.raises(RuleSetError, match="pinus_yunnanensis.*species_groups.toml"):
        species_groups().volume_groups(rules)


# --- class schemes --------------------------------------------------------------------------------
def test_clcd_scheme_translates_codes_to_engine_ids():
    s = load_scheme("CLCD")   # the old catalog spelling finds raster_inputs/schemes/clcd.toml
    t = ecosystem_types()
    codes = np.array([[1, 2, 8], [9, 255, 42]], dtype=np.uint8)
    out = s.translate(codes, 255)
    assert out.dtype == np.uint8
    assert out.tolist() == [[t.id("cropland"), t.id("forest"), t.id("impervious")], [t.id("wetland"), NODATA_ID, 0]]
    # other dtypes (int32, float) take the general path and agree
    assert s.translate(codes.astype(np.int32), 255).tolist() == out.tolist()
    f = codes.astype(np.float32)
    f[1, 1] = np.nan
    assert s.translate(f, None).tolist() == out.tolist()


def test_scheme_with_large_codes_nodata_and_sub_types(tmp_path):
    p = tmp_path / "x.toml"
    p.write_text('[scheme]\nname = "x"\nproduct = "p"\nsource = "s"\n'
                 '[codes."0201"]\ntype = "orchard"\n[codes."0202"]\ntype = "tea_garden"\n'
                 '[codes."111000"]\ntype = "forest"\n[nodata]\ncodes = [0]\n', encoding="utf-8")
    s = read_scheme(p)
    t = ecosystem_types()
    a = np.array([201, 202, 111000, 0, 5], dtype=np.int32)
    assert s.translate(a, -1).tolist() == [t.id("orchard"), t.id("tea_garden"), t.id("forest"), NODATA_ID, 0]
    assert sorted(s) == [0, 201, 202, 111000]


def test_scheme_naming_an_unknown_type_is_refused(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text('[scheme]\nname = "bad"\n[codes."1"]\ntype = "jungle"\n[codes."2"]\nlabel = "no type"\n', encoding="utf-8")
    with pytest.raises(InputError) as e:
        read_scheme(p)
    msg = str(e.value)
    assert "jungle" in msg and "'2' has no `type" in msg and str(p) in msg


def test_scheme_without_product_or_source_is_refused(tmp_path):
    p = tmp_path / "uncited.toml"
    p.write_text('[scheme]\nname = "uncited"\nproduct = "p"\n[codes."1"]\ntype = "forest"\n', encoding="utf-8")
    with pytest.raises(InputError) as e:
        read_scheme(p)
    msg = str(e.value)
    assert "1 problem(s): [scheme] has no `source = " in msg and "has no `product" not in msg and str(p) in msg


def test_vector_codes_are_normalised_and_zero_padded_to_the_scheme_width(tmp_path):
    s = load_scheme("dilei-6digit")
    assert [s.canonical(v) for v in (30100, 30100.0, " 030200 ", "30100.0", None, float("nan"))] == \
        ["030100", "030100", "030200", "030100", "", ""]
    assert s.types_of([30100, "030200", None], file="f", field_name="DI_LEI") == ["forest", "bamboo_forest", None]
    with pytest.raises(InputError) as e:
        s.types_of(["030100", "999999", 999999.0, "12"], file="xb.shp", field_name="DI_LEI")
    msg = str(e.value)
    assert "3 value(s) of DI_LEI" in msg and "'12' (1×), '999999' (2×)" in msg and "xb.shp" in msg


def test_a_species_scheme_is_refused_where_land_classes_are_read():
    with pytest.raises(InputError, match="pilot_species' maps codes to species_groups"):
        load_scheme("pilot_species", "ecosystem_type")
    assert load_scheme("pilot_species", "species_group").vocabulary == "species_group"


def test_forest_is_the_forest_type_and_its_sub_types():
    t = ecosystem_types()
    assert t.is_forest("forest") and t.is_forest("bamboo_forest") and t.is_forest("sparse_forest")
    assert not t.is_forest("shrub") and not t.is_forest("tea_garden") and not t.is_forest("") \
        and not t.is_forest("jungle")
    assert t.ids_of(["forest", None, ""]).tolist() == [t["forest"].id, 0, 0]


# --- roles and periods ------------------------------------------------------------------------------
def test_legacy_layer_names_map_to_role_and_period():
    assert legacy_layer_key("lulc_2019", (2019, 2024)) == "land_cover@t1"
    assert legacy_layer_key("volume_2024", (2019, 2024)) == "volume@t2"
    assert legacy_layer_key("precip", (2019, 2024)) == "precip"
    with pytest.raises(ValueError, match="neither year of the period"):
        legacy_layer_key("volume_2021", (2019, 2024))


def _legacy_catalog(pilot_dir: Path, dest: Path) -> Path:
    """The pilot catalog as the generator wrote it before layers had roles (year-keyed, classes = ...)."""
    with open(pilot_dir / "catalog.toml", "rb") as f:
        raw = tomllib.load(f)
    y1, y2 = raw["catalog"]["period"]
    old = {"land_cover": "lulc"}
    layers = {}
    for k, v in raw["layers"].items():
        role, _, period = k.partition("@")
        v = dict(v)
        if "scheme" in v:
            v["classes"] = {"clcd": "CLCD"}.get(v.pop("scheme"), "pilot_species")
        layers[f"{old.get(role, role)}_{y1 if period == 't1' else y2}" if period else k] = v
    raw["layers"] = layers
    raw["catalog"]["reference_layer"] = f"lulc_{y1}"
    p = dest / "catalog.toml"
    with open(p, "wb") as f:
        tomli_w.dump(raw, f)
    return p


def test_old_catalogs_are_read_with_roles(pilot_copy):
    new = load_catalog(pilot_copy / "catalog.toml")
    old = load_catalog(_legacy_catalog(pilot_copy, pilot_copy))
    assert set(old.layers) == set(new.layers)
    assert old.catalog.reference_layer == "land_cover@t1"
    assert old.layers["land_cover@t2"].scheme == "CLCD" and old.layers["land_cover@t2"].classes == "CLCD"
    assert {k: v.path for k, v in old.layers.items()} == {k: v.path for k, v in new.layers.items()}


def test_old_catalog_with_a_year_outside_the_period_is_refused(pilot_copy):
    p = _legacy_catalog(pilot_copy, pilot_copy)
    text = p.read_text(encoding="utf-8")
    with open(p, "rb") as f:
        y2 = tomllib.load(f)["catalog"]["period"][1]
    p.write_text(text.replace(f"[layers.volume_{y2}]", "[layers.volume_2031]"), encoding="utf-8")
    with pytest.raises(InputError) as e:
        load_catalog(p)
    assert "volume_2031" in str(e.value) and "volume@t1" in str(e.value)


def test_another_period_needs_no_code_change(pilot_dir, tmp_path):
    """The same inputs declared as a 2019-2024 inventory: the forest-remaining sink (no class change, so
    no soil term) is the 2020-2023 value times 3/5, to 1e-12; names follow the period's years."""
    import json

    from eco_value.pipeline import RunOptions, run_valuation
    from eco_value.store import Store

    d = tmp_path / "p"
    shutil.copytree(pilot_dir, d, ignore=shutil.ignore_patterns("results"))
    with open(d / "catalog.toml", "rb") as f:
        raw = tomllib.load(f)
    y1, y2 = raw["catalog"]["period"]
    raw["catalog"]["period"] = [2019, 2024]
    with open(d / "catalog.toml", "wb") as f:
        tomli_w.dump(raw, f)
    res = run_valuation(d / "catalog.toml", Store(f"sqlite:///{tmp_path / 's.sqlite'}"),
                        RunOptions(out_dir=tmp_path / "o", mc_draws=0, write_rasters=False))
    base = json.loads((Path(__file__).parent / "data" / "pilot90_snapshot.json").read_text(encoding="utf-8"))["summary"]
    frf = res.summary["carbon"]["by_lucc_tco2e_per_yr"]["forest_remaining_forest"]
    # the snapshot is of the float64 kernel; the float32 one matches it to 1e-6 (tests/test_regression_pilot90.py)
    assert frf == pytest.approx(base["/carbon/by_lucc_tco2e_per_yr/forest_remaining_forest"] * (y2 - y1) / 5, rel=1e-6)
    assert res.summary["period"] == [2019, 2024]
    assert "area_ha_by_class_2024" in res.summary["extent"] and "area_ha_by_class_2019" in res.summary["extent"]
    assert res.summary["extent"]["area_ha_by_class_2024"] == pytest.approx(
        {k.split("/")[-1]: v for k, v in base.items() if k.startswith(f"/extent/area_ha_by_class_{y2}/")}, rel=1e-10)
    # (areas are exact sums of pixel areas; summed by runs of equal zone ids they differ from the snapshot's
    #  order of additions by ~1e-12 relative, far below 1e-10)
