"""One whole pilot valuation in this process, for the benchmarks: prints one JSON line.

    python benchmarks/run_pilot.py RESOLUTION_M [PARCEL_FACTOR] [--stages] [--real | --real-as-raster]

``--stages`` also prints, on stderr, each progress stage with the time and the process's current
and peak RSS when it began (to see which stage sets the peak).

Time is the whole ``run_valuation`` (validation, carbon, GEP, zonal accounts, Monte Carlo, store,
22 COGs, GeoPackage, report) into a fresh SQLite store; peak RSS is this process's high-water mark
(``ru_maxrss``), so imports and the input generation (done beforehand, cached) do not count.
``--real`` runs the pilot in real formats (小班 shapefiles, DLTB, MOD16-like stack, daily NetCDF, 林权
through ``[sources]``), ``--real-as-raster`` the same data as plain rasters (``catalog-raster.toml``).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from pilots import pilot_dir  # noqa: E402


def _mem_mb() -> tuple[int, int]:
    with open("/proc/self/status") as f:
        kv = dict(line.split(":", 1) for line in f if line.startswith(("VmRSS", "VmHWM")))
    return int(kv["VmRSS"].split()[0]) // 1024, int(kv["VmHWM"].split()[0]) // 1024


def main(res_m: float, factor: int = 1, stages: bool = False, path: str = "raster") -> dict:
    from eco_value.pipeline import RunOptions, run_valuation
    from eco_value.store import Store

    d = pilot_dir(res_m, factor, fmt="raster" if path == "raster" else "real")
    catalog = d / ("catalog-raster.toml" if path == "real-as-raster" else "catalog.toml")
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    rss0 = ru0.ru_maxrss
    with tempfile.TemporaryDirectory() as td:
        t = time.perf_counter()

        last = {"stage": None, "frac": -1.0}

        def say(stage, frac):
            if not stages or (stage == last["stage"] and (frac or 0.0) < last["frac"] + 0.1):
                return
            last.update(stage=stage, frac=frac or 0.0)
            rss, hwm = _mem_mb()
            print(f"{time.perf_counter() - t:7.1f} s  rss {rss:5d} MB  peak {hwm:5d} MB  {stage} {frac or ''}",
                  file=sys.stderr, flush=True)

        r = run_valuation(catalog, Store(f"sqlite:///{td}/s.sqlite"), RunOptions(out_dir=Path(td) / "o"),
                          progress=say)
        dt = time.perf_counter() - t
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"resolution_m": res_m, "parcel_factor": factor, "path": path, "time_s": round(dt, 2),
            "cpu_s": round(ru.ru_utime + ru.ru_stime, 1),
            "cpu_run_s": round(ru.ru_utime + ru.ru_stime - ru0.ru_utime - ru0.ru_stime, 1), "peak_rss_mb": round(ru.ru_maxrss / 1024),
            "rss_before_run_mb": round(rss0 / 1024), "gep_total_cny": r.summary["gep"]["total_cny"],
            "loadavg_1min_at_end": os.getloadavg()[0]}


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    path = "real" if "--real" in sys.argv else "real-as-raster" if "--real-as-raster" in sys.argv else "raster"
    print(json.dumps(main(float(args[0]), int(args[1]) if len(args) > 1 else 1, "--stages" in sys.argv, path)))
