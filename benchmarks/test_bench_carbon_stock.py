"""Carbon stock, InVEST-compatible mode: eco-value vs a single-threaded numpy baseline (and InVEST).

    pytest benchmarks/test_bench_carbon_stock.py --benchmark-only
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from eco_value.carbon.invest import carbon_stock
from numpy_baseline import carbon_stock_numpy
from synth import patchy_lulc, pools_csv

HERE = Path(__file__).parent
INVEST_PY = os.environ.get("INVEST_PYTHON", "/opt/invest-venv/bin/python")


def best_of(fn, n=3):
    best = float("inf")
    out = None
    for _ in range(n):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def test_carbon_stock_in_process(benchmark, lulc_pair):
    size, cur, fut, pools = lulc_pair
    res = benchmark.pedantic(carbon_stock, args=(cur, pools, fut), rounds=3, iterations=1, warmup_rounds=1)
    t_np, ref = best_of(lambda: carbon_stock_numpy(str(cur), str(pools), str(fut)))
    assert res.total_stock_mgc == pytest.approx(ref["total_stock_mgc"], rel=1e-12)
    assert res.sequestration_mgc == pytest.approx(ref["sequestration_mgc"], rel=1e-9)
    benchmark.extra_info.update({"size": size, "numpy_best_s": t_np, "ratio_vs_numpy": t_np / benchmark.stats.stats.min})


INVEST_SCRIPT = """
import sys, json, tempfile
import natcap.invest.carbon as c
spec_ids = [i.id if hasattr(i, 'id') else i for i in getattr(c.MODEL_SPEC, 'inputs', [])]
ws = tempfile.mkdtemp()
if 'lulc_bas_path' in spec_ids or 'lulc_bas_path' in str(c.MODEL_SPEC):
    args = {'workspace_dir': ws, 'lulc_bas_path': sys.argv[1], 'lulc_alt_path': sys.argv[2], 'calc_sequestration': True,
            'carbon_pools_path': sys.argv[3], 'do_valuation': False, 'n_workers': -1}
else:
    args = {'workspace_dir': ws, 'lulc_cur_path': sys.argv[1], 'lulc_fut_path': sys.argv[2], 'calc_sequestration': True,
            'carbon_pools_path': sys.argv[3], 'do_valuation': False, 'n_workers': -1}
c.execute(args)
print(ws)
"""


def _whole(cmd):
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    return time.perf_counter() - t, p


@pytest.mark.skipif(not shutil.which("eco-value"), reason="eco-value not installed")
def test_whole_process_16mpx_vs_numpy_and_invest(benchmark, tmp_path):
    """Whole process on 16 Mpx with a future map: start-up and import time count."""
    from conftest import BENCH_DIR

    n = 4000
    cur = patchy_lulc(BENCH_DIR / f"lulc_{n}.tif", n, seed=1)
    fut = patchy_lulc(BENCH_DIR / f"lulc_future_{n}.tif", n, seed=1, change=0.05)
    pools = pools_csv(BENCH_DIR / "pools.csv")
    import sysconfig
    exe = Path(sysconfig.get_path("scripts")) / "eco-value"      # the console script itself, not a shim
    eco_cmd = [str(exe if exe.exists() else shutil.which("eco-value")), "carbon-stock", "--lulc", str(cur), "--pools", str(pools), "--future-lulc", str(fut), "--json"]
    np_cmd = [sys.executable, str(HERE / "numpy_baseline.py"), str(cur), str(pools), str(fut)]
    runs = {"eco": [], "numpy": []}
    for _ in range(3):
        te, pe = _whole(eco_cmd)
        tn, pn = _whole(np_cmd)
        runs["eco"].append(te)
        runs["numpy"].append(tn)
    eco = json.loads(pe.stdout)
    ref = json.loads(pn.stdout)
    assert eco["total_stock_mgc"] == pytest.approx(ref["total_stock_mgc"], rel=1e-12)
    info = {"eco_best_s": min(runs["eco"]), "numpy_best_s": min(runs["numpy"]),
            "ratio_vs_numpy": min(runs["numpy"]) / min(runs["eco"])}
    if Path(INVEST_PY).exists():
        ti, pi = _whole([INVEST_PY, "-c", INVEST_SCRIPT, str(cur), str(fut), str(pools)])
        info["invest_s"] = ti
        info["invest_ok"] = pi.returncode == 0
        if pi.returncode == 0:
            info["ratio_vs_invest"] = ti / min(runs["eco"])
        else:
            info["invest_error"] = pi.stderr[-400:]
    benchmark.extra_info.update(info)
    benchmark.pedantic(lambda: subprocess.run(eco_cmd, capture_output=True, check=True), rounds=3, iterations=1)
    print(json.dumps(info, indent=1))
