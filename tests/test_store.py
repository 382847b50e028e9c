"""Valuation store on SQLite and on a real PostgreSQL: atomic runs, idempotence, migrations, queries."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from eco_value.errors import InputError
from eco_value.pipeline import RunOptions, run_valuation
from eco_value.store import Store

FAST = dict(mc_draws=50, write_rasters=False)


def test_alembic_upgrade_head_yields_the_models_schema(db_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    st = Store(db_url)  # runs `alembic upgrade head`
    with st.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diffs == []
    with st.engine.connect() as conn:
        from sqlalchemy import inspect
        tables = set(inspect(conn).get_table_names())
    assert {"runs", "service_results", "carbon_results", "zones", "input_files", "rule_sets", "issuances",
            "credit_blocks", "serial_counter", "status_events", "gep_intervals", "alembic_version"} <= tables


def test_same_catalog_twice_gives_one_set_of_results(pilot_dir, db_url, tmp_path):
    st = Store(db_url)
    a = run_valuation(pilot_dir / "catalog.toml", st, RunOptions(out_dir=tmp_path / "a", **FAST))
    b = run_valuation(pilot_dir / "catalog.toml", st, RunOptions(out_dir=tmp_path / "b", **FAST))
    assert not a.reused and b.reused and a.run_id == b.run_id
    assert [r.id for r in st.runs()] == [a.run_id]
    n = st.count_rows(a.run_id)
    assert n["services"] > 0 and n["carbon"] > 0
    c = run_valuation(pilot_dir / "catalog.toml", st, RunOptions(out_dir=tmp_path / "c", force=True, **FAST))
    assert c.run_id != a.run_id and not c.reused
    assert st.count_rows(c.run_id) == n
    assert c.summary["gep"]["total_cny"] == a.summary["gep"]["total_cny"]   # bit-identical re-run


def test_township_and_parcel_services_sum_to_the_county(pilot_dir, db_url, tmp_path):
    st = Store(db_url)
    r = run_valuation(pilot_dir / "catalog.toml", st, RunOptions(out_dir=tmp_path / "a", **FAST))
    s = st.table("services", r.run_id)
    for service, grp in s.groupby("service"):
        county = grp[grp.zone_kind == "county"].value_cny.sum()
        assert grp[grp.zone_kind == "township"].value_cny.sum() == pytest.approx(county, rel=1e-9), service
        assert grp[grp.zone_kind == "parcel"].value_cny.sum() == pytest.approx(county, rel=1e-9), service


def test_bad_values_leave_only_a_failed_run_row(pilot_copy, db_url, tmp_path):
    import numpy as np
    import rasterio

    p = pilot_copy / "volume_2023.tif"
    with rasterio.open(p) as src:
        a, prof = src.read(1), src.profile
    a[a > 100] = 5000.0
    p.unlink()
    prof.update(driver="GTiff")
    with rasterio.open(p, "w", **prof) as d:
        d.write(a, 1)
    st = Store(db_url)
    with pytest.raises(InputError, match="out of|outside"):
        run_valuation(pilot_copy / "catalog.toml", st, RunOptions(out_dir=tmp_path / "x", **FAST))
    runs = st.runs()
    assert len(runs) == 1 and runs[0].status == "failed" and "volume@t2" in runs[0].error
    assert st.count_rows(runs[0].id) == {"services": 0, "carbon": 0, "zones": 0, "inputs": 0}
    assert not (tmp_path / "x").exists()


CHILD = textwrap.dedent("""
    import sys, time, pathlib
    from eco_value.pipeline import RunOptions, run_valuation
    from eco_value.store import Store

    class SlowStore(Store):
        def complete_run(self, run_id, rules_row, rows, summary):
            with self.session() as s:           # the same single transaction, paused half-way
                self.insert_rows(s, rules_row, rows); s.flush()
                pathlib.Path(sys.argv[3]).write_text(run_id)
                time.sleep(120)
                s.commit()

    run_valuation(sys.argv[1], SlowStore(sys.argv[2]), RunOptions(mc_draws=50, write_rasters=False))
""")


def test_a_run_killed_mid_write_leaves_no_partial_results(pilot_dir, db_url, tmp_path):
    marker = tmp_path / "inside-transaction"
    env = dict(os.environ)
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(pilot_dir / "catalog.toml"), db_url, str(marker)], env=env)
    try:
        t0 = time.time()
        while not marker.exists():
            assert proc.poll() is None, "child ended early"
            assert time.time() - t0 < 120
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    run_id = marker.read_text()
    st = Store(db_url)
    assert st.count_rows(run_id) == {"services": 0, "carbon": 0, "zones": 0, "inputs": 0}
    r = run_valuation(pilot_dir / "catalog.toml", st, RunOptions(out_dir=tmp_path / "next", **FAST))
    assert not r.reused and st.count_rows(r.run_id)["services"] > 0
    killed = st.run(run_id)
    assert killed.status == "failed" and "interrupted" in killed.error


def test_diff_and_export(pilot_dir, db_url, tmp_path):
    from eco_value.store.queries import diff_runs

    st = Store(db_url)
    a = run_valuation(pilot_dir / "catalog.toml", st, RunOptions(out_dir=tmp_path / "a", **FAST))
    b = run_valuation(pilot_dir / "catalog.toml", st, RunOptions(rules="ipcc-tier1-mee2020", out_dir=tmp_path / "b", **FAST))
    d = diff_runs(st, a.run_id, b.run_id)
    assert d["inputs_changed"] == []
    assert any(p["parameter"] == "carbon.species.cunninghamia.carbon_fraction" for p in d["rules"]["parameters_changed"])
    assert d["services"]["carbon_sequestration"]["change_pct"] != 0
    assert d["services"]["recreation"]["change_pct"] == 0
    df = st.table("services", a.run_id)
    out = tmp_path / "s.parquet"
    df.to_parquet(out)
    import pandas as pd
    assert len(pd.read_parquet(out)) == len(df)


def test_unknown_run_is_a_clear_error(db_url):
    from eco_value.errors import StoreError

    with pytest.raises(StoreError, match="eco-value runs"):
        Store(db_url).run("nope")
