"""The same run on a dask.distributed cluster (processes on loopback) gives identical results."""

from __future__ import annotations

import pytest

from eco_value.pipeline import RunOptions, run_valuation
from eco_value.store import Store


@pytest.mark.slow
def test_distributed_run_equals_local_run(pilot_dir, tmp_path):
    from distributed import LocalCluster

    local = run_valuation(pilot_dir / "catalog.toml", Store(f"sqlite:///{tmp_path / 'l.sqlite'}"),
                          RunOptions(out_dir=tmp_path / "l", mc_draws=100))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        st = Store(f"sqlite:///{tmp_path / 'd.sqlite'}")
        dist = run_valuation(pilot_dir / "catalog.toml", st, RunOptions(out_dir=tmp_path / "d", mc_draws=100,
                                                                       scheduler=cluster.scheduler_address))
    a, b = local.summary, dist.summary
    assert a["gep"]["total_cny"] == b["gep"]["total_cny"]
    assert a["carbon"] == b["carbon"]
    assert a["gep"]["by_service"] == b["gep"]["by_service"]
    sl = Store(f"sqlite:///{tmp_path / 'l.sqlite'}").table("services", local.run_id).sort_values(["zone_kind", "zone_id", "service"])
    sd = st.table("services", dist.run_id).sort_values(["zone_kind", "zone_id", "service"])
    assert (sl.value_cny.to_numpy() == sd.value_cny.to_numpy()).all()
    import rasterio
    with rasterio.open(tmp_path / "l" / "gep_cny_per_km2.tif") as x, rasterio.open(tmp_path / "d" / "gep_cny_per_km2.tif") as y:
        assert (x.read(1) == y.read(1)).all()
    assert st.run(dist.run_id).dask_config.find("tcp://127.0.0.1") >= 0
