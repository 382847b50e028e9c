"""The single compute of a valuation: graph → one ``dask.compute`` (or a cluster) → checks → results."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import dask

from ..errors import InputError
from ..inputs.catalog import Catalog
from ..inputs.validate import problems_from_stats, warnings_from_stats
from ..rules import RuleSet
from .assemble import assemble
from .graph import build
from .options import COMPUTE_STAGE, Progress, RunOptions


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


def compute_valuation(cat: Catalog, rules: RuleSet, opts: RunOptions, say: Progress, run_id: str,
                      raster_dir: Path | None, inputs: list[dict]) -> tuple[dict, dict]:
    """Build the graph, run the single compute, refuse bad values, assemble rows and summary.

    Writes nothing but the per-pixel GeoTIFFs into ``raster_dir`` (when given); stores nothing.
    """
    writes = None
    if raster_dir is not None:
        raster_dir.mkdir(parents=True, exist_ok=True)
        from ..outputs.maps import create_map_files

        writes = lambda maps, grid: create_map_files(maps, raster_dir, grid, run_id, rules, opts.scheduler)  # noqa: E731
    graph, ctx = build(cat, rules, opts, say, map_writer=writes)
    say(COMPUTE_STAGE, 0.0)
    client = _client(opts.scheduler)
    try:
        if client is not None:
            computed = client.compute(graph, sync=True)
        else:
            with _DaskProgress(say):
                (computed,) = dask.compute(graph, scheduler="threads")
    finally:
        if client is not None:
            client.close()
    computed.update(computed.pop("zones"))
    computed["checks"] = computed.pop("__stats__")
    probs = problems_from_stats(computed["checks"], cat)
    if probs:
        raise InputError(probs)
    say("uncertainty (Monte Carlo)", None)
    result = assemble(cat, rules, opts, ctx, computed, run_id, inputs)
    # actual (used) GEP beside potential: a post-step over the per-zone results (issue 15 item 4)
    from ..accounts.actual import apply_actual

    from ..inputs.beneficiaries import read_beneficiary_inputs

    apply_actual(result, read_beneficiary_inputs(cat, ctx["grid"]), ctx)
    result["summary"]["input_warnings"] = [str(w) for w in warnings_from_stats(computed["checks"], cat)]
    return result, ctx
