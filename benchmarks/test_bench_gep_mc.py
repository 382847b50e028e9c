"""Cost of the GEP Monte Carlo (1,000 draws over every gep.* parameter) on the 30 m pilot run.

    pytest benchmarks/test_bench_gep_mc.py --benchmark-only -s

Runs the full valuation twice, with and without the GEP Monte Carlo (its extra sums by type in the
single pass, and the draws afterwards, patched out), and reports the relative overhead (target <= 10 %).
"""

from __future__ import annotations

import time

import pytest

from conftest import BENCH_DIR
from eco_value.inputs.pilot import generate_pilot


@pytest.fixture(scope="module")
def pilot30():
    d = BENCH_DIR / "qionglai_30m"
    if not (d / "catalog.toml").exists():
        generate_pilot("qionglai", d, resolution_m=30.0)
    return d


def test_gep_mc_overhead_30m(benchmark, pilot30, tmp_path, monkeypatch):
    from eco_value import gep_uncertainty as gm
    from eco_value.pipeline import RunOptions, run_valuation
    from eco_value.store import Store

    def run(tag):
        t = time.perf_counter()
        r = run_valuation(pilot30 / "catalog.toml", Store(f"sqlite:///{tmp_path}/{tag}.sqlite"),
                          RunOptions(out_dir=tmp_path / tag, mc_draws=1000))
        return r, time.perf_counter() - t

    timings = {}

    def both():
        with monkeypatch.context() as m:
            m.setattr(gm, "by_type_sums", lambda ctx, services: {})
            m.setattr(gm, "for_run", lambda *a, **k: {})
            _r0, timings["without"] = run("without")
        r1, timings["with"] = run("with")
        return r1

    r1 = benchmark.pedantic(both, rounds=1, iterations=1)
    assert r1.summary["gep"]["uncertainty"]["draws"] == 1000
    overhead = timings["with"] / timings["without"] - 1
    benchmark.extra_info.update({"without_s": timings["without"], "with_s": timings["with"], "overhead": overhead})
    print(f"\n30 m pilot: without GEP MC {timings['without']:.1f} s, with {timings['with']:.1f} s, overhead {100 * overhead:+.1f} %")
