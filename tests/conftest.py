"""Shared fixtures: a small synthetic pilot (coarse resolution keeps the suite fast) and stores."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from eco_value.inputs.pilot import generate_pilot

SMALL_RES_M = 90.0
SEED = 7


@pytest.fixture(scope="session")
def pilot_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pilot") / "qionglai"
    generate_pilot("qionglai", d, resolution_m=SMALL_RES_M, seed=SEED)
    return d


@pytest.fixture
def pilot_copy(pilot_dir, tmp_path) -> Path:
    """A private copy of the pilot inputs that a test may break."""
    d = tmp_path / "pilot"
    shutil.copytree(pilot_dir, d, ignore=shutil.ignore_patterns("results"))
    return d


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
