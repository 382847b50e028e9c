"""Web console (issue 18): a warm map tile and the run page, on a pilot run at $ECO_VALUE_BENCH_WEB_RES m
(default 10, the acceptance case; generated and run once under $ECO_VALUE_BENCH_DIR, never committed).

Aims: a tile of the 10 m pilot renders in < 100 ms warm; the run page opens in < 1 s.
Run: ``python -m pytest benchmarks/test_bench_web.py --benchmark-only``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

RES_M = float(os.environ.get("ECO_VALUE_BENCH_WEB_RES", "10"))
BENCH_DIR = Path(os.environ.get("ECO_VALUE_BENCH_DIR", "/tmp/eco-value-bench")) / f"web-{RES_M:g}m"
PASSWORD = "bench-password-1"


@pytest.fixture(scope="module")
def console():
    from eco_value.inputs.pilot import generate_pilot
    from eco_value.pipeline import RunOptions, run_valuation
    from eco_value.store import Store
    from eco_value.web.app import WebConfig, create_app
    from eco_value.web.auth import add_user

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    cat = BENCH_DIR / "qionglai" / "catalog.toml"
    if not cat.exists():
        generate_pilot("qionglai", cat.parent, resolution_m=RES_M)
    store = Store(f"sqlite:///{BENCH_DIR / 'web.sqlite'}")
    res = run_valuation(cat, store, RunOptions(out_dir=BENCH_DIR / "results", mc_draws=200))
    users = BENCH_DIR / "users.json"
    add_user(users, "vera", "viewer", PASSWORD)
    (BENCH_DIR / "uploads").mkdir(exist_ok=True)
    app = create_app(WebConfig(db=store.url, users_file=users, actions_file=BENCH_DIR / "actions.jsonl",
                               temp_dir=BENCH_DIR / "uploads"))
    c = TestClient(app)
    tok = re.search(r'name="csrf" value="([^"]+)"', c.get("/login").text).group(1)
    c.post("/login", data={"csrf": tok, "user": "vera", "password": PASSWORD, "next": "/runs"})
    return c, res.run_id, Path(res.summary["outputs"]["rasters"])


def test_tile_warm(benchmark, console):
    from rio_tiler.io import Reader

    c, rid, rasters = console
    with Reader(str(rasters / "gep_cny_per_km2.tif")) as r:
        b = r.get_geographic_bounds(r.tms.rasterio_geographic_crs)
        t = r.tms.tile((b[0] + b[2]) / 2, (b[1] + b[3]) / 2, 12)
    url = f"/tiles/{rid}/gep/{t.z}/{t.x}/{t.y}.png"
    assert c.get(url).status_code == 200     # cold once; the benchmark measures warm tiles
    png = benchmark(lambda: c.get(url))
    assert png.status_code == 200


def test_run_page(benchmark, console):
    c, rid, _ = console
    page = benchmark(lambda: c.get(f"/runs/{rid}"))
    assert page.status_code == 200 and rid[:8] in page.text
