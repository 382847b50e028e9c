"""Benchmark fixtures. Data are generated (never committed) under $ECO_VALUE_BENCH_DIR (default /tmp/eco-value-bench).

Sizes: $ECO_VALUE_BENCH_SIZES, comma-separated from 1Mpx, 16Mpx, 25Mpx, 100Mpx (default 1Mpx,25Mpx,100Mpx).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from synth import patchy_lulc, pools_csv  # noqa: E402

BENCH_DIR = Path(os.environ.get("ECO_VALUE_BENCH_DIR", "/tmp/eco-value-bench"))
SIDES = {"1Mpx": 1000, "16Mpx": 4000, "25Mpx": 5000, "100Mpx": 10000}
SIZES = [s for s in os.environ.get("ECO_VALUE_BENCH_SIZES", "1Mpx,25Mpx,100Mpx").split(",") if s in SIDES]


@pytest.fixture(scope="session", params=SIZES)
def lulc_pair(request):
    n = SIDES[request.param]
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    cur = patchy_lulc(BENCH_DIR / f"lulc_{n}.tif", n, seed=1)
    fut = patchy_lulc(BENCH_DIR / f"lulc_future_{n}.tif", n, seed=1, change=0.05)
    return request.param, cur, fut, pools_csv(BENCH_DIR / "pools.csv")
