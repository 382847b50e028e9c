"""Pilot inputs for the benchmarks, generated once under $ECO_VALUE_BENCH_DIR (never committed).

``parcel_factor`` multiplies ``n_parcels`` of ``raster_inputs/pilots.toml`` (the setting that controls
how many forest-right parcels each township is split into), e.g. 4 for the "×4 parcels" memory run.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from unittest import mock

BENCH_DIR = Path(os.environ.get("ECO_VALUE_BENCH_DIR", "/tmp/eco-value-bench"))


def pilot_dir(resolution_m: float, parcel_factor: int = 1, name: str = "qionglai", fmt: str = "raster") -> Path:
    """The catalog folder of the pilot ``name`` at ``resolution_m`` with ``parcel_factor`` × its parcels;
    ``fmt="real"``: in real formats (``catalog.toml``) with ``catalog-raster.toml``, the raster path it replaces."""
    from eco_value.inputs import pilot

    d = BENCH_DIR / (f"{name}_{resolution_m:g}m" + (f"_x{parcel_factor}parcels" if parcel_factor != 1 else "")
                     + ("_real" if fmt == "real" else ""))
    if (d / "catalog.toml").exists():
        return d
    settings = copy.deepcopy(pilot.load_settings())
    settings["pilot"][name]["n_parcels"] = int(settings["pilot"][name]["n_parcels"] * parcel_factor)
    with mock.patch.object(pilot, "load_settings", lambda: settings):
        pilot.generate_pilot(name, d, resolution_m=resolution_m, fmt=fmt)
    return d


if __name__ == "__main__":  # python benchmarks/pilots.py RES [FACTOR]
    import sys

    print(pilot_dir(float(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 1))
