"""Shared fixtures: a small synthetic pilot (coarse resolution keeps the suite fast) and stores."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from eco_value.inputs.pilot import generate_pilot

SMALL_RES_M = 90.0
PILOT300_RES_M = 300.0   # the coarse pilot that tests copy and break (cat_dir)
SEED = 7


@pytest.fixture(scope="session")
def pilot_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pilot") / "qionglai"
    generate_pilot("qionglai", d, resolution_m=SMALL_RES_M, seed=SEED)
    return d


@pytest.fixture
def pilot_copy(pilot_dir, tmp_path) -> Path:
    """A private copy of the pilot inputs that a test may break."""
    return _private_copy(pilot_dir, tmp_path)


def pg_url() -> str | None:
    return os.environ.get("ECO_VALUE_TEST_PG")


def db_urls(tmp_path: Path) -> list[str]:
    urls = [f"sqlite:///{tmp_path / 'store.sqlite'}"]
    if pg_url():
        urls.append(pg_url())
    return urls


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """Each store test runs on SQLite and on a real PostgreSQL (ECO_VALUE_TEST_PG)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite'}"
    url = pg_url()
    if not url:
        pytest.skip("NO POSTGRESQL: set ECO_VALUE_TEST_PG=postgresql://... (the .ci/run script starts one)")
    _reset_pg(url)
    return url


def _reset_pg(url: str) -> None:
    from sqlalchemy import create_engine, text

    from eco_value.store.db import _ENGINES, resolve_url

    u = resolve_url(url)
    _ENGINES.pop(u, None)
    eng = create_engine(u)
    with eng.begin() as c:
        c.execute(text("DROP SCHEMA public CASCADE"))
        c.execute(text("CREATE SCHEMA public"))
    eng.dispose()


@pytest.fixture(scope="session")
def pilot_run(pilot_dir, tmp_path_factory):
    """One full valuation of the small pilot, stored in SQLite."""
    from eco_value.pipeline import RunOptions, run_valuation
    from eco_value.store import Store

    db = tmp_path_factory.mktemp("db") / "run.sqlite"
    store = Store(f"sqlite:///{db}")
    out = tmp_path_factory.mktemp("out") / "results"
    res = run_valuation(pilot_dir / "catalog.toml", store, RunOptions(out_dir=out, mc_draws=500))
    return store, res


def pytest_terminal_summary(terminalreporter):
    if not pg_url():
        terminalreporter.write_sep("!", "POSTGRESQL STORE TESTS WERE SKIPPED: no ECO_VALUE_TEST_PG (run .ci/run to start one)",
                                   red=True, bold=True)


def make_fake_run(store, sinks: list[float], run_id: str | None = None, rel_ci: float = 0.08, prefix: str = "P") -> str:
    """A complete run with parcels of the given net sinks (t CO2e/yr), stored directly (no rasters)."""
    import uuid
    from datetime import datetime, timezone

    from eco_value.rules import load_rules
    from eco_value.store.models import Run, RuleSetRow

    rules = load_rules("cn2011-mee2020")
    run_id = run_id or str(uuid.uuid4())
    with store.session() as s:
        if s.get(RuleSetRow, rules.content_hash) is None:
            s.add(RuleSetRow(hash=rules.content_hash, name=rules.name, title=rules.meta.title, content_json=rules.canonical_json()))
        s.add(Run(id=run_id, fingerprint=run_id.replace("-", "") * 2, status="complete", region="test", adcode="510183",
                  period_start=2020, period_end=2023, started=datetime.now(timezone.utc), ruleset_hash=rules.content_hash,
                  ruleset_name=rules.name))
        s.commit()
    zones = [dict(run_id=run_id, kind="parcel", zone_id=f"{prefix}{i:04d}", holder_id=f"H{i % 3}", holder_type="collective",
                  other_programme="none", area_ha=10.0, geometry_sha256="0" * 64) for i in range(len(sinks))]
    carbon = [dict(run_id=run_id, zone_kind="parcel", zone_id=f"{prefix}{i:04d}", period_start=2020, period_end=2023, area_ha=10.0,
                   stock_t1_tc=0.0, stock_t2_tc=0.0, net_sink_tco2e_per_yr=v, ci95_low_tco2e_per_yr=v * (1 - rel_ci),
                   ci95_high_tco2e_per_yr=v * (1 + rel_ci)) for i, v in enumerate(sinks)]
    with store.session() as s:
        Store = type(store)
        Store.insert_rows(s, s.get(RuleSetRow, rules.content_hash), {"zones": zones, "carbon_results": carbon})
        s.commit()
    return run_id


@pytest.fixture(scope="session")
def pilot300(tmp_path_factory) -> Path:
    """The 300 m Qionglai pilot (raster format), generated once per session; never modified: tests that
    plant bad values take a private copy (:func:`cat_dir`)."""
    d = tmp_path_factory.mktemp("pilot300") / "qionglai"
    generate_pilot("qionglai", d, resolution_m=PILOT300_RES_M, seed=SEED)
    return d


@pytest.fixture
def cat_dir(pilot300, tmp_path) -> Path:
    """A private copy of the 300 m pilot to change."""
    return _private_copy(pilot300, tmp_path)


def _private_copy(src: Path, tmp_path: Path) -> Path:
    d = tmp_path / "pilot"
    shutil.copytree(src, d, ignore=shutil.ignore_patterns("results"))
    return d


@pytest.fixture
def key_dir(tmp_path_factory, monkeypatch):
    """The session's issuer signing key (one per test session, in its base temp folder)."""
    d = tmp_path_factory.getbasetemp() / "keys"
    monkeypatch.setenv("ECO_VALUE_KEY_DIR", str(d))
    if not (d / "issuer_ed25519.key").exists():
        from eco_value.exchange.keys import generate
        generate()
    return d


def cli_in_process(args, capsys, monkeypatch):
    """The real entry point (eco_value.cli.main) in-process: (exit code, stdout, stderr)."""
    from eco_value import cli as cli_mod

    monkeypatch.setattr(sys, "argv", ["eco-value", *map(str, args)])
    monkeypatch.setattr(cli_mod.err, "width", 100_000)   # no line wrapping of long paths in the captured text
    monkeypatch.setattr(cli_mod.console, "width", 100_000)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        cli_mod.main()
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err
