"""The engine: one typed interface over a valuation's lazy graph (:mod:`.graph`), its single compute
(:mod:`.compute`) and the rows and summary assembled from the per-zone sums (:mod:`.assemble`).

Use from outside the engine (policy, audit, the run lifecycle):

* :func:`zone_sums` — sums of every service, carbon stock and sink over any zones (a policy unit, the
  catalog's townships and parcels), optionally for a changed land cover; :func:`zone_sums_before_after`
  computes the run's own land cover and a scenario in one pass. Returns :class:`RunSums` (kind →
  :class:`ZoneSums` with typed accessors).
* :func:`valuate` — a whole valuation, not stored: rows, the typed :class:`RunSummary` (``to_dict()`` is
  what the store keeps), zone tables and the sums (:class:`Valuation`).

The graph's string channel names (``"q:<service>"``, ``"carbon:sink"`` …) never leave ``engine/``.
Run lifecycle (identity, store, output files) lives in :mod:`eco_value.pipeline`; the land-cover
scenario in :mod:`eco_value.policy.scenario`; the map files in :mod:`eco_value.outputs.maps`.
"""

from __future__ import annotations

from .compute import valuate, zone_sums, zone_sums_before_after
from .options import COMPUTE_STAGE, Progress, RunOptions
from .types import (CarbonSummary, EngineUsageError, GepSummary, RunSummary, RunSums, ServiceTotal, Valuation,
                    ZoneSums)

__all__ = ["COMPUTE_STAGE", "CarbonSummary", "EngineUsageError", "GepSummary", "Progress", "RunOptions", "RunSummary",
           "RunSums", "ServiceTotal", "Valuation", "ZoneSums", "valuate", "zone_sums", "zone_sums_before_after"]
