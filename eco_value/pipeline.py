"""Run lifecycle: validate → identity (input hashes, fingerprint) → reuse or compute → store → outputs.

The computing is the engine's (:mod:`eco_value.engine`: lazy graph, one ``dask.compute``, rows and
summary); this module decides whether to compute, where outputs go (staged, renamed into place when
complete) and what the store holds. Nothing is stored when validation fails; the store receives a run
in one transaction (status ``complete``) or only a ``failed`` run row with the error.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import uuid
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import dask

from . import __version__
from .engine.compute import compute_valuation
from .engine.options import COMPUTE_STAGE, Progress, RunOptions
from .errors import EcoValueError, InputError
from .inputs.catalog import Catalog, load_catalog
from .inputs.remote import content_id, display_path, file_identity
from .inputs.validate import check_structure
from .rules import RuleSet, check_declared_parameters, load_rules, selected_services
from .services import SERVICES

__all__ = ["COMPUTE_STAGE", "RunOptions", "RunResult", "compute_valuation", "input_manifest", "fingerprint",
           "run_valuation", "stored_run_context"]


@dataclass
class RunResult:
    run_id: str
    reused: bool
    summary: dict
    outputs: dict[str, str] = field(default_factory=dict)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def input_manifest(cat: Catalog, kinds: dict[str, str] | None = None) -> list[dict]:
    """Every input with its content identity; ``kinds`` (layer → hash_kind) forces how a remote one is
    identified (:func:`eco_value.inputs.remote.file_identity`)."""
    rows = []
    for kind, specs in (("layer", cat.layers), ("vector", cat.vectors), ("table", cat.tables)):
        for key, spec in specs.items():
            p = cat.path_of(spec.path)   # a remote input: SHA-256 streamed, or ETag + size (hash_kind)
            rows.append({"layer": key, "kind": kind, "path": display_path(p), **file_identity(p, (kinds or {}).get(key)),
                         "product": getattr(spec, "product", ""), "year": getattr(spec, "year", None)})
    if cat.sources:   # inventory / DLTB / product sources: every file they read
        from .inputs.sources import source_files

        for key in cat.sources:
            for p in source_files(cat, key):
                rows.append({"layer": f"{key}:{p.name}", "kind": "source", "path": display_path(p), **file_identity(p, None),
                             "product": cat.sources[key].product, "year": cat.sources[key].year})
    return rows


def fingerprint(inputs: list[dict], rules: RuleSet, opts: RunOptions) -> str:
    payload = {"inputs": sorted((r["layer"], content_id(r)) for r in inputs), "rules": rules.content_hash,
               "options": opts.fingerprint_part(), "engine": __version__}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def run_valuation(catalog_path: str | Path, store=None, opts: RunOptions | None = None,
                  progress: Progress | None = None) -> RunResult:
    """The whole valuation of one catalog; see the module docstring."""
    from .store import Store
    from .store.models import Run, RuleSetRow

    opts = opts or RunOptions()
    say = progress or (lambda _s, _f: None)
    say("validate inputs", None)
    cat = load_catalog(catalog_path)
    rules = opts.rules if isinstance(opts.rules, RuleSet) else load_rules(opts.rules)
    specs = selected_services(rules, SERVICES)     # what the rule set's services declare drives validation
    check_declared_parameters(rules, specs)
    probs = check_structure(cat, services=specs)
    if cat.sources:
        from .inputs.sources import check_sources

        probs += check_sources(cat)   # the readers' checks: unmapped codes, fields, encoding, ids
    if probs:
        raise InputError(probs)
    say("hash inputs", None)
    inputs = input_manifest(cat)
    fp = fingerprint(inputs, rules, opts)
    store = store or Store()
    store.mark_interrupted()
    existing = store.find_complete(fp)
    if existing is not None and json.loads(existing.summary_json).get("outputs_status", "written").startswith(("not written", "pending")):
        existing = None   # its results are stored but its files are not: compute again to write them
    if existing is not None and not opts.force:
        summary = json.loads(existing.summary_json)
        return RunResult(existing.id, True, summary, summary.get("outputs", {}))

    run_id = str(uuid.uuid4())
    y1, y2 = cat.catalog.period
    run = Run(id=run_id, fingerprint=fp, status="running", region=cat.catalog.region, adcode=cat.catalog.adcode,
              period_start=y1, period_end=y2, started=_now(), code_version=__version__,
              ruleset_hash=rules.content_hash, ruleset_name=rules.name, catalog_path=str(cat.source),
              dask_config=json.dumps({"scheduler": opts.scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS") or "threads",
                                      "chunk_px": opts.chunk_px, "python": platform.python_version(),
                                      "dask": dask.__version__}),
              options_json=json.dumps({"rules": rules.name, "mc_draws": opts.mc_draws, "mc_seed": opts.mc_seed,
                                       "price_year": opts.price_year, "chunk_px": opts.chunk_px}),
              pid=os.getpid(), host=socket.gethostname())
    out_dir = Path(opts.out_dir) if opts.out_dir else Path(cat.root) / "results" / run_id[:8]
    target = None
    if opts.write_rasters:   # refused here, before any work, if it would replace what we did not create
        from .safe_write import safe_output, store_files

        target = safe_output(out_dir, "dir", opts.overwrite,
                             [(cat.source, "the catalog")] + [(Path(r["path"]), f"the input '{r['layer']}'") for r in inputs
                                                                    if "://" not in r["path"]]
                             + store_files(store))
    store.start_run(run)
    committed = False
    try:
        with (target.staging() if target else nullcontext(None)) as tmp_dir:
            result, ctx = compute_valuation(cat, rules, opts, say, run_id, tmp_dir, inputs)
            outputs = {}
            if tmp_dir is not None:
                say("write outputs", None)
                from .outputs import finalize_rasters, write_seea_tables, write_zone_tables

                # the zone tables first: their per-parcel rows are freed before the COG conversion's buffers
                outputs = write_zone_tables(tmp_dir, ctx["zones"], result.pop("tables"), run_id)
                ctx = None
                outputs.update(write_seea_tables(tmp_dir, result["summary"]))
                _return_freed_memory()   # before the COG conversion's buffers (issue 17: peak flat in parcels)
                finalize_rasters(tmp_dir)
                outputs = {k: str(out_dir / Path(v).name) for k, v in outputs.items()}
                outputs["rasters"] = str(out_dir)
                outputs["report"] = str(out_dir / "report.html")
            result.pop("tables", None)   # per-parcel rows freed as soon as written: peak RSS flat in parcels
            ctx = None
            summary = result["summary"]
            summary["outputs"] = outputs
            summary["outputs_status"] = "pending" if tmp_dir is not None else "none"
            rows = result["rows"]
            rows["input_files"] = [dict(run_id=run_id, layer=r["layer"], path=r["path"], sha256=r["sha256"],
                                        hash_kind=r["hash_kind"], etag=r["etag"], size_bytes=r["size_bytes"], product=r["product"] or "", year=r["year"]) for r in inputs]
            say("store (one transaction)", None)
            store.complete_run(run_id, RuleSetRow(hash=rules.content_hash, name=rules.name, title=rules.meta.title,
                                                  content_json=rules.canonical_json()), rows, summary)
            committed = True
            rows = result = None   # stored: the report reads the store, not these per-parcel rows
            if tmp_dir is not None:
                from .outputs.report import write_report

                say("write report", None)
                write_report(store, run_id, tmp_dir / "report.html", rasters=tmp_dir)
            # leaving the block renames the complete outputs into place (replacing old ones only now)
        if tmp_dir is not None:
            summary["outputs_status"] = "written"
            store.set_outputs_status(run_id, "written")
        say("done", 1.0)
        return RunResult(run_id, False, summary, summary["outputs"])
    except BaseException as exc:  # noqa: BLE001 - record every failure, including Ctrl-C
        msg = str(exc) if isinstance(exc, EcoValueError) else f"{type(exc).__name__}: {exc}"
        if committed:   # the results are stored: the run stays complete, only its files are missing
            store.set_outputs_status(run_id, f"not written: {msg}")
            if isinstance(exc, EcoValueError):
                from .safe_write import OutputError

                raise OutputError(f"run {run_id} is stored (complete), but its output files were not written to "
                                f"{out_dir}: {msg}") from exc
            raise
        try:
            store.fail_run(run_id, msg)
        finally:
            raise


def _return_freed_memory() -> None:
    """Give the memory the pass, the assembly and the zone tables freed back to the system (glibc's
    ``malloc_trim``; elsewhere only a garbage collection). The pass's worker threads leave freed blocks
    in their malloc arenas, which the COG conversion's threads do not reuse: its ~160 MB of buffers came
    on top and set the 10 m pilot's peak (x4 parcels: 1,105-1,182 MB → 986 MB; the pass sets it now)."""
    import ctypes
    import gc

    gc.collect()
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:   # not glibc (macOS, Windows, musl): nothing to trim
        return
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim(0)


def stored_run_context(store, run_id: str, purpose: str = "this"):
    """A complete stored run with its catalog, its own stored rule set (hash-checked) and options."""
    from .errors import StoreError

    run = store.run(run_id)
    if run.status != "complete":
        raise StoreError(f"run {run.id} is {run.status}; {purpose} needs a complete run")
    cat = load_catalog(run.catalog_path)
    rules = RuleSet.from_canonical(store.rules_json(run.ruleset_hash), origin=f"stored with run {run.id}")
    if rules.content_hash != run.ruleset_hash:
        raise StoreError(f"stored rule set of run {run.id} does not reproduce its hash")
    o = json.loads(run.options_json)
    opts = RunOptions(rules=rules, mc_draws=o.get("mc_draws", 1000), mc_seed=o.get("mc_seed", 42),
                      price_year=o.get("price_year"), chunk_px=o.get("chunk_px", 512), write_rasters=False)
    return run, cat, rules, opts


def _now():
    from .store import now
    return now()
