"""Rule sets: schema checks, sources, units, hashes, inheritance and diff."""

from __future__ import annotations

import shutil

import pytest

from eco_value.errors import RuleSetError
from eco_value.rules import available, diff, load_rules, rules_dir


def test_shipped_rule_sets_load_and_every_parameter_has_unit_and_source():
    names = available()
    assert {"cn2011-mee2020", "cn2011-ndrc2022", "ipcc-tier1-mee2020"} <= set(names)
    for n in names:
        r = load_rules(n)
        assert len(r.content_hash) == 64
        for k, p in r.params.items():
            assert p.unit and p.source, k


def test_hash_changes_with_one_value(tmp_path):
    src = rules_dir() / "cn2011-mee2020.toml"
    dst = tmp_path / "mine.toml"
    text = src.read_text(encoding="utf-8").replace('name = "cn2011-mee2020"', 'name = "mine"')
    dst.write_text(text, encoding="utf-8")
    a = load_rules(str(dst))
    dst.write_text(text.replace("value = 0.307", "value = 0.310"), encoding="utf-8")
    b = load_rules(str(dst))
    assert a.content_hash != b.content_hash
    assert b.value("carbon.species.cunninghamia.wood_density") == 0.310


def _broken(tmp_path, old, new):
    text = (rules_dir() / "cn2011-mee2020.toml").read_text(encoding="utf-8")
    assert old in text
    p = tmp_path / "broken.toml"
    p.write_text(text.replace(old, new, 1), encoding="utf-8")
    return str(p)


def test_unknown_key_is_an_error(tmp_path):
    with pytest.raises(RuleSetError, match="colour"):
        load_rules(_broken(tmp_path, 'unit = "t CO2e/t C"', 'unit = "t CO2e/t C"\ncolour = "red"'))


def test_missing_source_is_an_error(tmp_path):
    with pytest.raises(RuleSetError, match="source"):
        load_rules(_broken(tmp_path, 'source = "ipcc_molar"\nnote = "44/12"', 'note = "44/12"'))


def test_undefined_source_key_is_an_error(tmp_path):
    with pytest.raises(RuleSetError, match="nowhere"):
        load_rules(_broken(tmp_path, 'source = "ipcc_molar"\nnote = "44/12"', 'source = "nowhere"\nnote = "44/12"'))


def test_unknown_unit_is_an_error(tmp_path):
    with pytest.raises(RuleSetError, match="furlong"):
        load_rules(_broken(tmp_path, 'unit = "t CO2e/t C"', 'unit = "furlong"'))


def test_bare_value_is_an_error(tmp_path):
    with pytest.raises(RuleSetError, match="bare value"):
        load_rules(_broken(tmp_path, "[carbon.soil_transition_years]", "[carbon.extra]\nthing = 3\n[carbon.soil_transition_years]"))


def test_extends_overrides_and_diff_lists_the_changes():
    a = load_rules("cn2011-mee2020")
    b = load_rules("ipcc-tier1-mee2020")
    assert b.value("carbon.species.cunninghamia.carbon_fraction") == 0.47
    assert b.value("carbon.species.cunninghamia.wood_density") == a.value("carbon.species.cunninghamia.wood_density")
    rows = {r["parameter"]: r for r in diff(a, b)}
    assert rows["carbon.species.cunninghamia.root_shoot"]["cn2011-mee2020"] == 0.246
    assert rows["carbon.species.cunninghamia.root_shoot"]["ipcc-tier1-mee2020"] == 0.20
    assert "carbon.species.cunninghamia.wood_density" not in rows


def test_ndrc_variant_drops_oxygen_release():
    assert "oxygen_release" in load_rules("cn2011-mee2020").meta.services
    assert "oxygen_release" not in load_rules("cn2011-ndrc2022").meta.services


def test_unknown_rule_set_name():
    with pytest.raises(RuleSetError, match="available"):
        load_rules("no-such-rules")


def test_stored_rule_set_missing_a_newer_parameter_names_it_and_the_run():
    """Issue 16: a rule set stored before a parameter existed raised IndexError (files[-1] of no files)."""
    import pytest as _pt
    from eco_value.errors import RuleSetError
    from eco_value.rules import RuleSet, load_rules
    data = load_rules("cn2011-mee2020").canonical()
    del data["params"]["gep.climate_regulation.humidifier_energy"]
    del data["params"]["gep.price_index.cpi"]
    old = RuleSet.from_canonical(data, origin="stored with run r-123")
    for call in (lambda: old.value("gep.climate_regulation.humidifier_energy"), lambda: old.values("gep.price_index.cpi")):
        with _pt.raises(RuleSetError, match=r"stored with run r-123.*has no parameter 'gep\.(climate_regulation\.humidifier_energy|price_index\.cpi)'.*predates"):
            call()
    assert old.content_hash == RuleSet.from_canonical(data).content_hash   # origin is not content
