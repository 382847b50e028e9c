"""Specs drive validation (issue 16, item 2): the catalog must have every layer and table, and the rule
set every parameter, that the services selected by the rule set's ``[ruleset] services`` declare in
their ``SPEC``; one clear error names the service, what is missing and the fix."""

from __future__ import annotations

import re

import pytest

from eco_value.errors import InputError, RuleSetError
from eco_value.inputs.catalog import load_catalog
from eco_value.inputs.validate import check_structure
from eco_value.rules import available, check_declared_parameters, load_rules, rules_dir, selected_services
from eco_value.services import SERVICES


def _drop_catalog_entry(d, header):
    p = d / "catalog.toml"
    s = p.read_text(encoding="utf-8")
    new = re.sub(rf"^\[{re.escape(header)}\]\n(?:(?!\[).*\n)*", "", s, count=1, flags=re.M)
    assert new != s, header
    p.write_text(new, encoding="utf-8")


def _rule_set(tmp_path, drop_tables=(), services=None, name="mine"):
    """A copy of cn2011-mee2020 without the ``[table]`` blocks named, optionally selecting ``services``."""
    s = (rules_dir() / "cn2011-mee2020.toml").read_text(encoding="utf-8")
    s = s.replace('name = "cn2011-mee2020"', f'name = "{name}"', 1)
    for t in drop_tables:
        new = re.sub(rf"^\[{re.escape(t)}\]\n(?:(?!\[).*\n)*", "", s, count=1, flags=re.M)
        assert new != s, t
        s = new
    if services is not None:
        s = re.sub(r"^services = \[.*\]$", "services = [" + ", ".join(f'"{k}"' for k in services) + "]", s, count=1,
                   flags=re.M)
    p = tmp_path / f"{name}.toml"
    p.write_text(s, encoding="utf-8")
    return load_rules(str(p))


def _specs(*keys):
    return [SERVICES[k].SPEC for k in keys]


# --- catalog ------------------------------------------------------------------------------------------

def test_catalog_lacking_a_layer_a_selected_service_declares_names_the_service(pilot_copy):
    _drop_catalog_entry(pilot_copy, "layers.erosivity")
    cat = load_catalog(pilot_copy / "catalog.toml")
    probs = [p for p in check_structure(cat, services=_specs(*SERVICES)) if p.layer == "erosivity"]
    assert len(probs) == 1, probs    # one problem, not a generic one beside it
    p = probs[0]
    assert p.kind == "missing-layer" and p.file.endswith("catalog.toml")
    assert "service 'soil_conservation'" in p.problem and "MJ mm/(ha h yr)" in p.problem
    assert "add a [layers.erosivity] entry" in p.fix and "[ruleset] services" in p.fix


def test_a_layer_two_services_read_is_one_problem_naming_both(pilot_copy):
    _drop_catalog_entry(pilot_copy, "layers.aet")
    cat = load_catalog(pilot_copy / "catalog.toml")
    probs = [p for p in check_structure(cat, services=_specs(*SERVICES)) if p.layer == "aet"]
    assert len(probs) == 1
    assert "services 'water_conservation', 'climate_regulation'" in probs[0].problem


def test_a_role_at_period_layer_key_is_quoted_in_the_fix(pilot_copy):
    from eco_value.inputs.validate import check_declared_inputs

    _drop_catalog_entry(pilot_copy, 'layers."land_cover@t2"')
    cat = load_catalog(pilot_copy / "catalog.toml")
    probs = check_declared_inputs(cat, _specs("water_conservation"))
    assert len(probs) == 1 and 'add a [layers."land_cover@t2"] entry' in probs[0].fix


def test_catalog_lacking_a_declared_table_names_the_service(pilot_copy):
    _drop_catalog_entry(pilot_copy, "tables.tourism")
    cat = load_catalog(pilot_copy / "catalog.toml")
    probs = [p for p in check_structure(cat, services=_specs("recreation")) if p.layer == "tourism"]
    assert len(probs) == 1 and "service 'recreation'" in probs[0].problem and "[tables.tourism]" in probs[0].fix


def test_only_selected_services_are_required(pilot_copy):
    """A service the rule set does not select does not make its layer required by name."""
    _drop_catalog_entry(pilot_copy, "layers.erosivity")
    cat = load_catalog(pilot_copy / "catalog.toml")
    probs = check_structure(cat, services=_specs("water_conservation"))
    assert not any("soil_conservation" in p.problem for p in probs)


def test_run_refuses_a_catalog_lacking_a_declared_layer_before_computing(pilot_copy):
    from eco_value.pipeline import RunOptions, run_valuation
    from eco_value.store import Store

    _drop_catalog_entry(pilot_copy, "layers.aet")
    with pytest.raises(InputError) as e:
        run_valuation(pilot_copy / "catalog.toml", Store(f"sqlite:///{pilot_copy / 's.sqlite'}"),
                      RunOptions(write_rasters=False))
    msg = str(e.value)
    assert "layer 'aet'" in msg and "'water_conservation'" in msg and "'climate_regulation'" in msg


# --- rule set -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", available())
def test_shipped_rule_sets_have_every_parameter_their_services_declare(name):
    rules = load_rules(name)
    specs = selected_services(rules, SERVICES)
    assert specs
    check_declared_parameters(rules, specs)


def test_rule_set_lacking_a_declared_parameter_names_service_parameter_and_fix(tmp_path):
    rules = _rule_set(tmp_path, drop_tables=["gep.water_conservation.price", "gep.water_conservation.price_year"])
    with pytest.raises(RuleSetError) as e:
        check_declared_parameters(rules, selected_services(rules, SERVICES))
    msg = str(e.value)
    assert "service 'water_conservation' declares parameters 'gep.water_conservation.price', " \
           "'gep.water_conservation.price_year'" in msg
    assert "mine.toml" in msg and "Fix: add each to mine.toml" in msg and "[ruleset] services" in msg
    assert "soil_conservation" not in msg
    # flood regulation values stored water at the same reservoir price: named too
    assert "service 'flood_regulation' declares parameters 'gep.water_conservation.price', " \
           "'gep.water_conservation.price_year'" in msg


def test_a_missing_parameter_group_is_named(tmp_path):
    rules = _rule_set(tmp_path, drop_tables=["gep.water_conservation.runoff_coefficient"])
    with pytest.raises(RuleSetError, match=r"service 'water_conservation' declares parameter "
                                           r"'gep\.water_conservation\.runoff_coefficient'"):
        check_declared_parameters(rules, selected_services(rules, SERVICES))


def test_a_service_not_selected_needs_no_parameters(tmp_path):
    keep = [k for k in SERVICES if k != "climate_regulation"]
    rules = _rule_set(tmp_path, drop_tables=["gep.climate_regulation.cooling_days"], services=keep)
    specs = selected_services(rules, SERVICES)
    assert [s.key for s in specs] == keep
    check_declared_parameters(rules, specs)


def test_unknown_service_in_the_rule_set_is_refused(tmp_path):
    """It used to be dropped silently (compute_services kept only known names)."""
    rules = _rule_set(tmp_path, services=["water_conservation", "water_conservaton"])
    with pytest.raises(RuleSetError, match=r"mine\.toml.*unknown service\(s\) 'water_conservaton'.*known services: "
                                           r"provisioning, water_conservation"):
        selected_services(rules, SERVICES)


def test_stored_rule_set_lacking_a_parameter_names_the_run(tmp_path):
    from eco_value.rules import RuleSet

    data = load_rules("cn2011-mee2020").canonical()
    del data["params"]["gep.water_conservation.price"]
    old = RuleSet.from_canonical(data, origin="stored with run r-42")
    with pytest.raises(RuleSetError, match=r"(?s)stored with run r-42.*'gep\.water_conservation\.price'.*predates"):
        check_declared_parameters(old, selected_services(old, SERVICES))


def test_run_refuses_a_rule_set_lacking_a_declared_parameter(pilot_copy, tmp_path):
    from eco_value.pipeline import RunOptions, run_valuation
    from eco_value.store import Store

    rules = _rule_set(tmp_path, drop_tables=["gep.climate_regulation.cooling_days"])
    with pytest.raises(RuleSetError, match=r"service 'climate_regulation' declares parameter "
                                           r"'gep\.climate_regulation\.cooling_days'"):
        run_valuation(pilot_copy / "catalog.toml", Store(f"sqlite:///{tmp_path / 's.sqlite'}"),
                      RunOptions(rules=rules, write_rasters=False))
