"""Carbon stock, InVEST-compatible mode: eco-value vs a single-threaded numpy baseline (and InVEST).

    pytest benchmarks/test_bench_carbon_stock.py --benchmark-only -s

Whole-process comparisons at 16 Mpx (current + future map): totals only; InVEST's maps with NPV;
the same plus the eight per-pool maps (``--intermediate``, InVEST's full output). InVEST 3.20 is run
when ``$INVEST_PYTHON`` (default /opt/invest-venv/bin/python) exists, and its maps are compared pixel
by pixel with eco-value's.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eco_value.invest_mode import carbon_stock
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


VALUATION = {"price": 43.0, "discount": 7.0, "rate_change": 2.8, "y0": 2016, "y1": 2030}
INVEST_SCRIPT = """
import sys, json
import natcap.invest.carbon as c
ws = sys.argv[4]
args = {'workspace_dir': ws, 'lulc_bas_path': sys.argv[1], 'lulc_alt_path': sys.argv[2], 'calc_sequestration': True,
        'carbon_pools_path': sys.argv[3], 'do_valuation': True, 'price_per_metric_ton_of_c': %(price)r,
        'discount_rate': %(discount)r, 'rate_change': %(rate_change)r, 'lulc_bas_year': %(y0)r, 'lulc_alt_year': %(y1)r,
        'n_workers': -1}
c.execute(args)
""" % VALUATION


def _whole(cmd):
    """Wall time, CPU time (user + sys of the child and its threads) and the finished process."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode:
        raise RuntimeError(f"{cmd[:3]} failed: {p.stderr[-800:]}")
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), p


def _same_maps(a_dir: Path, b_dir: Path, names) -> dict:
    """Largest relative difference and nodata-mask mismatches of the maps of two workspaces."""
    import numpy as np
    import rasterio

    out = {}
    for n in names:
        with rasterio.open(a_dir / n) as a, rasterio.open(b_dir / n) as b:
            x, y = a.read(1), b.read(1)
            mx, my = np.isclose(x, a.nodata), np.isclose(y, b.nodata)
            ok = ~mx & ~my
            rel = np.abs(x[ok].astype(np.float64) - y[ok]) / np.maximum(np.abs(y[ok]), 1e-30)
            out[n] = {"max_rel_diff": float(rel.max()) if rel.size else 0.0, "nodata_mismatch_px": int((mx != my).sum())}
    return out


MAPS = ["c_storage_bas.tif", "c_storage_alt.tif", "c_change_bas_alt.tif", "npv_alt.tif"]
POOL_MAPS = [f"intermediate_outputs/{p}_{s}.tif" for s in ("bas", "alt") for p in ("c_above", "c_below", "c_soil", "c_dead")]


@pytest.mark.skipif(not shutil.which("eco-value"), reason="eco-value not installed")
def test_whole_process_16mpx_vs_numpy_and_invest(benchmark, tmp_path):
    """Whole process on 16 Mpx with a future map: start-up and import time count; best of 3."""
    from conftest import BENCH_DIR

    from eco_value.carbon.invest import valuation_constant

    n = 4000
    cur = patchy_lulc(BENCH_DIR / f"lulc_{n}.tif", n, seed=1)
    fut = patchy_lulc(BENCH_DIR / f"lulc_future_{n}.tif", n, seed=1, change=0.05)
    pools = pools_csv(BENCH_DIR / "pools.csv")
    import sysconfig
    exe = Path(sysconfig.get_path("scripts")) / "eco-value"      # the console script itself, not a shim
    eco = [str(exe if exe.exists() else shutil.which("eco-value")), "carbon-stock", "--lulc", str(cur), "--pools", str(pools),
           "--future-lulc", str(fut), "--json"]
    val = ["--price", str(VALUATION["price"]), "--discount-rate", str(VALUATION["discount"]), "--rate-change",
           str(VALUATION["rate_change"]), "--lulc-year", str(VALUATION["y0"]), "--future-year", str(VALUATION["y1"])]
    k = valuation_constant(VALUATION["y0"], VALUATION["y1"], VALUATION["discount"], VALUATION["rate_change"], VALUATION["price"])
    npy = [sys.executable, str(HERE / "numpy_baseline.py"), str(cur), str(pools), str(fut)]
    cases = {
        "totals": (eco, npy),
        "maps": (eco + ["--out", str(tmp_path / "eco_maps")] + val, npy + ["--out", str(tmp_path / "np_maps"), "--npv", repr(k)]),
        "maps+intermediate": (eco + ["--out", str(tmp_path / "eco_all"), "--intermediate"] + val,
                              npy + ["--out", str(tmp_path / "np_all"), "--npv", repr(k), "--intermediate"]),
    }
    # as `pip install` does for an installed package (InVEST's venv has its bytecode): with
    # PYTHONDONTWRITEBYTECODE=1 (set on these machines) an editable checkout would otherwise compile
    # eco-value's modules again in every timed process (~30 ms)
    import compileall

    import eco_value
    compileall.compile_dir(Path(eco_value.__file__).parent, quiet=1)
    info = {"loadavg_1min_at_start": os.getloadavg()[0]}
    for case, (e_cmd, n_cmd) in cases.items():
        te, tn, ce, cn = [], [], [], []
        for _ in range(3):
            t, c, pe = _whole(e_cmd)
            te.append(t)
            ce.append(c)
            t, c, pn = _whole(n_cmd)
            tn.append(t)
            cn.append(c)
        e, r = json.loads(pe.stdout), json.loads(pn.stdout)
        assert e["total_stock_mgc"] == pytest.approx(r["total_stock_mgc"], rel=1e-9)
        info[case] = {"eco_best_s": min(te), "numpy_best_s": min(tn), "ratio_vs_numpy": min(tn) / min(te),
                      "eco_cpu_s": min(ce), "numpy_cpu_s": min(cn), "cpu_ratio_vs_numpy": min(cn) / min(ce)}
    info["maps_vs_numpy"] = _same_maps(tmp_path / "eco_all", tmp_path / "np_all", MAPS + POOL_MAPS)
    if Path(INVEST_PY).exists():
        # best of 3 as eco-value's, each in a new workspace (InVEST's task graph skips work a workspace holds)
        runs = [_whole([INVEST_PY, "-c", INVEST_SCRIPT, str(cur), str(fut), str(pools), str(tmp_path / f"invest{i}")])
                for i in range(int(os.environ.get("ECO_VALUE_BENCH_INVEST_RUNS", "3")))]
        ws = tmp_path / "invest0"
        ti, ci = min(r[0] for r in runs), min(r[1] for r in runs)
        info["invest_s"] = ti
        info["invest_cpu_s"] = ci
        info["invest_runs_s"] = [round(r[0], 3) for r in runs]
        info["cpu_ratio_vs_invest_maps+intermediate"] = ci / info["maps+intermediate"]["eco_cpu_s"]
        info["cpu_ratio_vs_invest_maps"] = ci / info["maps"]["eco_cpu_s"]
        info["ratio_vs_invest_maps+intermediate"] = ti / info["maps+intermediate"]["eco_best_s"]
        info["ratio_vs_invest_maps"] = ti / info["maps"]["eco_best_s"]
        info["maps_vs_invest"] = _same_maps(tmp_path / "eco_all", ws, MAPS + POOL_MAPS)
    info["loadavg_1min_at_end"] = os.getloadavg()[0]
    benchmark.extra_info.update(info)
    benchmark.pedantic(lambda: subprocess.run(cases["maps"][0], capture_output=True, check=True), rounds=1, iterations=1)
    (BENCH_DIR / "carbon_stock_16mpx.json").write_text(json.dumps(info, indent=1))
    print(json.dumps({k: v for k, v in info.items() if not k.startswith("maps_vs")}, indent=1))
    for k in ("maps_vs_numpy", "maps_vs_invest"):
        if k in info:
            worst = max(v["max_rel_diff"] for v in info[k].values())
            print(f"{k}: {len(info[k])} maps, largest relative difference {worst:.2e}, "
                  f"nodata-mask mismatches {sum(v['nodata_mismatch_px'] for v in info[k].values())} px")
