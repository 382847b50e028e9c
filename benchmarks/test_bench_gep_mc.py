"""Cost of the GEP Monte Carlo (1,000 draws over every gep.* parameter) on the 30 m pilot run.

    pytest benchmarks/test_bench_gep_mc.py --benchmark-only -s

Runs the full valuation twice, without and with the GEP Monte Carlo (its extra sums by type for the
county and by township × type in the single pass, the county's draws and sensitivity, and the
townships' intervals afterwards, patched out for the first), and reports the relative overhead in wall
time and in CPU time (user + sys of this process and its children, ``resource.getrusage``: the
machine is shared, so wall time alone mixes in other work). Target <= 10 %.
"""

from __future__ import annotations

import resource
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


def _cpu_s() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def test_gep_mc_overhead_30m(benchmark, pilot30, tmp_path, monkeypatch):
    from eco_value import gep_uncertainty as gm
    from eco_value.pipeline import RunOptions, run_valuation
    from eco_value.store import Store

    def run(tag):
        t, c = time.perf_counter(), _cpu_s()
        r = run_valuation(pilot30 / "catalog.toml", Store(f"sqlite:///{tmp_path}/{tag}.sqlite"),
                          RunOptions(out_dir=tmp_path / tag, mc_draws=1000))
        return r, time.perf_counter() - t, _cpu_s() - c

    timings = {}

    def both():
        with monkeypatch.context() as m:
            m.setattr(gm, "channels", lambda ctx, services: {})
            m.setattr(gm, "zone_sums", lambda zones, sums: {})
            m.setattr(gm, "for_run", lambda *a, **k: {})
            m.setattr(gm, "attach_zone_intervals", lambda *a, **k: [])
            _r0, timings["without"], timings["without_cpu"] = run("without")
        r1, timings["with"], timings["with_cpu"] = run("with")
        return r1

    r1 = benchmark.pedantic(both, rounds=1, iterations=1)
    u = r1.summary["gep"]["uncertainty"]
    assert u["draws"] == 1000 and len(u["by_zone"]["township"]) > 0
    overhead = timings["with"] / timings["without"] - 1
    overhead_cpu = timings["with_cpu"] / timings["without_cpu"] - 1
    benchmark.extra_info.update({**timings, "overhead": overhead, "overhead_cpu": overhead_cpu})
    print(f"\n30 m pilot: without GEP MC {timings['without']:.1f} s wall / {timings['without_cpu']:.1f} s CPU, "
          f"with {timings['with']:.1f} s / {timings['with_cpu']:.1f} s; overhead {100 * overhead:+.1f} % wall, "
          f"{100 * overhead_cpu:+.1f} % CPU")
