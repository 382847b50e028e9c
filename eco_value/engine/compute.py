"""The single compute of a valuation: graph → one ``dask.compute`` (or a cluster) → checks → results."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import dask

from ..errors import InputError
from ..inputs.catalog import Catalog
from ..inputs.validate import problems_from_stats, warnings_from_stats
from ..rules import RuleSet
from .assemble import assemble
from .gaps import service_nodata_findings
from .graph import build
from .options import COMPUTE_STAGE, Progress, RunOptions
from .types import RunSummary, RunSums, Valuation

ScenarioFn = Callable  # (layers, grid, rules) -> policy.scenario.Scenario


class _DaskProgress(dask.callbacks.Callback):
    def __init__(self, report: Progress):
        super().__init__()
        self.report = report
        self._lock = threading.Lock()

    def _start_state(self, dsk, state):
        self.total = sum(len(state[k]) for k in ("ready", "waiting", "running", "finished"))
        self.done = 0

    def _posttask(self, key, result, dsk, state, worker_id):
        with self._lock:
            self.done += 1
            if self.done % 10 == 0 or self.done == self.total:
                self.report(COMPUTE_STAGE, self.done / max(self.total, 1))


def _client(address: str | None):
    address = address or os.environ.get("DASK_SCHEDULER_ADDRESS")
    if not address:
        return None
    from distributed import Client

    return Client(address, set_as_default=False)


#: GDAL's block cache during the local pass, in bytes: a chunk's input tiles (~13 layers × 1 MB per
#: thread, the DEM halo's neighbours) fit. GDAL's default, 5 % of RAM (1.2 GB on 24 GB), filled with
#: tiles of chunks already summed and set the 10 m pilot's peak: 2.1 GB → 1.2 GB with 64 MB, CPU unchanged
PASS_GDAL_CACHE_BYTES = 64 * 2**20


def _run_graph(graph, opts: RunOptions, say: Progress | None):
    """The one ``dask.compute`` of a graph: local threads (with progress, GDAL's block cache capped
    for the pass), or the cluster of ``--scheduler``."""
    import rasterio

    client = _client(opts.scheduler)
    try:
        if client is not None:
            return client.compute(graph, sync=True)
        with rasterio.Env(GDAL_CACHEMAX=PASS_GDAL_CACHE_BYTES):
            if say is None:
                (computed,) = dask.compute(graph, scheduler="threads")
                return computed
            with _DaskProgress(say):
                (computed,) = dask.compute(graph, scheduler="threads")
            return computed
    finally:
        if client is not None:
            client.close()


def _quiet(*_):
    return None


def zone_sums(cat: Catalog, rules: RuleSet, opts: RunOptions, zones: dict[str, tuple] | None = None,
              scenario: ScenarioFn | None = None, say: Progress | None = None) -> RunSums:
    """Exact-coverage sums of every service, carbon stock and sink over ``zones`` in one compute.

    ``zones`` (kind → (GeoDataFrame, id field)) replaces the catalog's townships and parcels (the
    county is always kept); ``scenario`` (layers, grid, rules → :class:`~eco_value.policy.scenario.Scenario`)
    values a changed land cover on the same inputs. Input value checks are the run's business: the
    sums are returned without them.
    """
    return _sums(cat, rules, opts, zones, [scenario], say)[0]


def zone_sums_before_after(cat: Catalog, rules: RuleSet, opts: RunOptions, zones: dict[str, tuple] | None,
                           scenario: ScenarioFn, say: Progress | None = None) -> tuple[RunSums, RunSums]:
    """:func:`zone_sums` of the run's own land cover and of ``scenario``, in one compute over the inputs."""
    before, after = _sums(cat, rules, opts, zones, [None, scenario], say)
    return before, after


def _sums(cat, rules, opts, zones, scenarios, say) -> list[RunSums]:
    from ..inputs.readers import open_layers

    say = say or _quiet
    layers, grid = open_layers(cat, chunk_px=opts.chunk_px)
    graphs, ctxs = [], []
    for fn in scenarios:
        sc = None if fn is None else fn(layers, grid, rules)
        g, c = build(cat, rules, opts, say, zone_layers=zones, scenario=sc, layers=layers, grid=grid)
        graphs.append(g["zones"])
        ctxs.append(c)
    computed = _run_graph(graphs, opts, None)
    return [RunSums.from_computed(res, c["zones"], c["services"]) for res, c in zip(computed, ctxs)]


def valuate(cat: Catalog, rules: RuleSet, opts: RunOptions, run_id: str, inputs: list[dict],
            say: Progress | None = None, raster_dir: Path | None = None) -> Valuation:
    """A whole valuation, computed and not stored: graph, the single compute, value checks (bad input
    values raise :class:`~eco_value.errors.InputError`), rows, the typed summary, zone tables, sums.

    Writes nothing but the per-pixel GeoTIFFs into ``raster_dir`` (when given); stores nothing.
    """
    v, _ctx = _valuate(cat, rules, opts, say or _quiet, run_id, raster_dir, inputs)
    return v


def compute_valuation(cat: Catalog, rules: RuleSet, opts: RunOptions, say: Progress, run_id: str,
                      raster_dir: Path | None, inputs: list[dict]) -> tuple[dict, dict]:
    """:func:`valuate` as the run lifecycle (:mod:`eco_value.pipeline`) stores it: (result dict, graph context)."""
    v, ctx = _valuate(cat, rules, opts, say, run_id, raster_dir, inputs)
    return v.as_result(), ctx


def _valuate(cat, rules, opts, say, run_id, raster_dir, inputs) -> tuple[Valuation, dict]:
    writes, writers = None, []
    if raster_dir is not None:
        raster_dir.mkdir(parents=True, exist_ok=True)
        from ..outputs.maps import create_map_files

        def writes(maps, grid):
            files = create_map_files(maps, raster_dir, grid, run_id, rules, opts.scheduler)
            writers.extend(w for _a, w in files.values())
            return files
    graph, ctx = build(cat, rules, opts, say, map_writer=writes)
    say(COMPUTE_STAGE, 0.0)
    try:
        computed = _run_graph(graph, opts, say)
    finally:   # the map files kept open for the pass, closed before anything reads them
        for w in writers:
            w.close()
    checks = computed["zones"].pop("__stats__")
    probs = problems_from_stats(checks, cat)
    if probs:
        raise InputError(probs)
    sums = RunSums.from_computed(computed["zones"], ctx["zones"], ctx["services"])
    gap_errors, gap_warnings = service_nodata_findings(sums, cat, checks)
    if gap_errors:
        raise InputError(gap_errors)
    say("uncertainty (Monte Carlo)", None)
    result = assemble(cat, rules, opts, sums, run_id, inputs)
    # actual (used) GEP beside potential: a post-step over the per-zone results (issue 15 item 4)
    from ..accounts.actual import apply_actual

    from ..inputs.beneficiaries import read_beneficiary_inputs

    apply_actual(result, read_beneficiary_inputs(cat, ctx["grid"]), sums.zones)
    from ..inputs.sources import tenure_warnings

    warns = warnings_from_stats(checks, cat) + gap_warnings + (tenure_warnings(cat) if cat.sources else [])
    result["summary"]["input_warnings"] = [str(w) for w in warns]
    rows, summary, tables = result.pop("rows"), result.pop("summary"), result.pop("tables")
    return Valuation(rows, RunSummary.from_dict(summary), tables, sums, result), ctx
