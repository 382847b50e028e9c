"""The engine: a valuation's lazy graph (:mod:`.graph`), its single compute (:mod:`.compute`) and
the rows and summary assembled from the per-zone sums (:mod:`.assemble`).

Run lifecycle (identity, store, output files) lives in :mod:`eco_value.pipeline`; the land-cover
scenario in :mod:`eco_value.policy.scenario`; the map files in :mod:`eco_value.outputs.maps`.
"""

from __future__ import annotations

from .options import COMPUTE_STAGE, Progress, RunOptions

__all__ = ["COMPUTE_STAGE", "Progress", "RunOptions"]
