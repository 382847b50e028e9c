"""Run orchestration: validate → carbon → GEP services → zonal accounts → (one compute) → store → outputs.

Everything up to the single ``dask.compute`` builds a lazy graph; the compute evaluates the value
checks, the zonal sums for county/townships/parcels, and writes the per-pixel GeoTIFFs in one pass
over the inputs. Nothing is stored when validation fails; the store receives a run in one
transaction (status ``complete``) or only a ``failed`` run row with the error.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import threading
import uuid
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

from pathlib import Path

import dask
import numpy as np
import xarray as xr

from . import __version__
from .accounts.zonal import class_coverage, coverage_raster, zonal_sums_many, zone_weights
from .carbon import LUCC, coefficients, stock_difference
from .carbon.uncertainty import SufficientStats, approach1_pct, monte_carlo
from . import gep_uncertainty as gep_mc
from .errors import EcoValueError, InputError
from .grid import Grid
from .inputs.catalog import Catalog, load_catalog
from .inputs.remote import content_id, display_path, file_identity
from .inputs.readers import open_layers, read_full, read_table, read_vector
from .inputs.validate import check_structure, layer_checks, problems_from_stats, region_mask, warnings_from_stats
from .rules import RuleSet, load_rules
from .roles import FOREST_TYPE_T1, FOREST_TYPE_T2, LAND_COVER_T1, LAND_COVER_T2, VOLUME_T1, VOLUME_T2
from .rules.ecosystem import NODATA_ID, ecosystem_types, species_groups
from .services import SERVICES, ServiceContext, compute_services

Progress = Callable[[str, float | None], None]
M2_PER_KM2 = 1e6
COMPUTE_STAGE = "compute (one pass over the inputs)"


@dataclass
class RunOptions:
    rules: "str | RuleSet" = "cn2011-mee2020"
    out_dir: Path | None = None
    mc_draws: int = 1000
    mc_seed: int = 42
    chunk_px: int = 512
    scheduler: str | None = None
    write_rasters: bool = True
    force: bool = False
    price_year: int | None = None
    overwrite: bool = False     # replace an existing non-empty out_dir (never the catalog, inputs, database)

    def fingerprint_part(self) -> dict:
        return {"mc_draws": self.mc_draws, "mc_seed": self.mc_seed, "price_year": self.price_year}


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


@dataclass
class Scenario:
    """A changed land cover (damage, project): ``lulc_after`` (ecosystem-type ids) replaces the land
    cover at t2 where ``changed``.

    Changed pixels lose their stand (volume and species 0 unless the new type is a forest type), take
    the vegetation cover ``fvc_by_class`` (indexed by type id) of the new type, and their annual
    carbon sink becomes 0 (the one-off loss of stock is reported separately, never as a yearly flow).
    """

    changed: xr.DataArray
    lulc_after: xr.DataArray
    fvc_by_class: np.ndarray
    lulc_after_np: np.ndarray | None = None   # the whole changed land cover, for the region's class extent


def _apply_scenario(layers: dict[str, xr.DataArray], sc: Scenario) -> dict[str, xr.DataArray]:
    out = dict(layers)
    ch = sc.changed
    forest = ecosystem_types().ids_under("forest")

    def keep_attrs(new, old):
        new.attrs = dict(old.attrs)
        return new

    lc = layers[LAND_COVER_T2]
    out[LAND_COVER_T2] = keep_attrs(xr.where(ch, sc.lulc_after, lc).astype(lc.dtype), lc)
    lost = ch & ~sc.lulc_after.isin(forest)
    out[VOLUME_T2] = keep_attrs(xr.where(lost, 0.0, layers[VOLUME_T2]).astype(layers[VOLUME_T2].dtype), layers[VOLUME_T2])
    out[FOREST_TYPE_T2] = keep_attrs(xr.where(lost, 0, layers[FOREST_TYPE_T2]).astype(layers[FOREST_TYPE_T2].dtype),
                                     layers[FOREST_TYPE_T2])
    table = sc.fvc_by_class
    fvc_new = xr.DataArray(sc.lulc_after.data.map_blocks(lambda c: np.take(table, c), dtype="float64"),
                           dims=lc.dims, coords=lc.coords)
    out["fvc"] = keep_attrs(xr.where(ch, fvc_new, layers["fvc"]).astype(layers["fvc"].dtype), layers["fvc"])
    return out


def build(cat: Catalog, rules: RuleSet, opts: RunOptions, say: Progress,
          zone_layers: dict[str, tuple] | None = None, scenario: Scenario | None = None,
          layers: dict[str, xr.DataArray] | None = None, grid: Grid | None = None, map_writer=None):
    """Build the lazy graph of one valuation. Returns (graph dict, context for post-processing).

    ``zone_layers`` (kind → (GeoDataFrame, id field)) replaces the catalog's townships and parcels
    (the county is always kept: it is the region that provisioning and recreation are shared over);
    ``scenario`` values a changed land cover on the same inputs.
    """
    if layers is None:
        layers, grid = open_layers(cat, chunk_px=opts.chunk_px)
    y1, y2 = cat.catalog.period
    coef = coefficients(rules)
    say("carbon: stock difference", None)
    carbon = stock_difference(layers[VOLUME_T1], layers[FOREST_TYPE_T1], layers[LAND_COVER_T1],
                              layers[VOLUME_T2], layers[FOREST_TYPE_T2], layers[LAND_COVER_T2],
                              (y1, y2), coef)
    if scenario is not None:
        before_sink = carbon["sink_tco2e_per_ha_yr"]
        layers = _apply_scenario(layers, scenario)
        carbon = stock_difference(layers[VOLUME_T1], layers[FOREST_TYPE_T1], layers[LAND_COVER_T1],
                                  layers[VOLUME_T2], layers[FOREST_TYPE_T2], layers[LAND_COVER_T2],
                                  (y1, y2), coef)
        carbon["sink_tco2e_per_ha_yr"] = xr.where(scenario.changed, 0.0, before_sink).where(before_sink.notnull())
    tables = {k: read_table(cat, k) for k in cat.tables}
    say("zone weights (exact coverage at polygon edges)", None)
    template = str(cat.path_of(cat.layers[cat.catalog.reference_layer].path))
    wanted = {"county": (read_vector(cat, "boundary", grid.crs), cat.vectors["boundary"].id_field)}
    if zone_layers is None:
        wanted["township"] = (read_vector(cat, "townships", grid.crs), cat.vectors["townships"].id_field)
        wanted["parcel"] = (read_vector(cat, "parcels", grid.crs), cat.vectors["parcels"].id_field)
    else:
        wanted.update(zone_layers)
    zones: dict[str, tuple] = {}
    for kind, (gdf, id_field) in wanted.items():
        if gdf.crs is not None and gdf.crs.to_string() != grid.crs:
            gdf = gdf.to_crs(grid.crs)
        zones[kind] = (gdf, zone_weights(gdf, id_field, grid, template), id_field)
    # the region's land-cover extent (exact coverage) from the uint8 land cover (type ids), read
    # outside the graph: the provisioning and tourism shares then need no region-wide reduction inside it
    if scenario is not None and scenario.lulc_after_np is not None:
        lc_np = scenario.lulc_after_np
    else:
        lc_np = read_full(cat, LAND_COVER_T2, grid)
    region_class_px = None
    if lc_np is not None:
        region_class_px = class_coverage(zones["county"][1], lc_np)
        region_class_px[int(layers[LAND_COVER_T2].attrs.get("nodata", NODATA_ID))] = 0.0
    ctx = ServiceContext(layers=layers, grid=grid, rules=rules, year=y2, tables=tables,
                         carbon_sink_tco2e_per_ha_yr=carbon["sink_tco2e_per_ha_yr"], price_year=opts.price_year,
                         # only needed when the class extent could not be read beforehand
                         region_coverage=None if region_class_px is not None else
                         coverage_raster(zones["county"][1], grid, layers[LAND_COVER_T2]),
                         region_class_px=region_class_px)
    say("GEP services", None)
    services = compute_services(ctx)

    a_ha = grid.pixel_area_ha
    values: dict[str, xr.DataArray] = {}
    for key, res in services.items():
        values[f"q:{key}"] = res.quantity
        values[f"v:{key}"] = res.value_cny
    values["carbon:sink"] = carbon["sink_tco2e_per_ha_yr"] * a_ha
    values["carbon:stock1"] = carbon["stock_t1_tc_per_ha"] * a_ha
    values["carbon:stock2"] = carbon["stock_t2_tc_per_ha"] * a_ha
    lc1, lc2 = layers[LAND_COVER_T1], layers[LAND_COVER_T2]
    valid = (lc1 != lc1.attrs["nodata"]) & (lc2 != lc2.attrs["nodata"])
    area = xr.where(valid, a_ha, 0.0)
    values["area_ha"] = area
    types = ecosystem_types()
    n_species = species_groups().n_ids
    n_types = types.n_positions

    def codes(a):
        return xr.where(valid, a, NODATA_ID)

    def positions(a):  # type id → dense position (sums by type stay small matrices)
        c = codes(a)
        return c.copy(data=c.data.map_blocks(lambda x: np.take(types.position_lut, x), dtype="int64"))

    coded = {
        "sv1": (codes(layers[FOREST_TYPE_T1]), xr.where(valid, layers[VOLUME_T1].astype("float64"), 0.0).clip(min=0) * a_ha, n_species),
        "sv2": (codes(layers[FOREST_TYPE_T2]), xr.where(valid, layers[VOLUME_T2].astype("float64"), 0.0).clip(min=0) * a_ha, n_species),
        "sa1": (codes(layers[FOREST_TYPE_T1]), area, n_species),
        "sa2": (codes(layers[FOREST_TYPE_T2]), area, n_species),
        "ca1": (positions(lc1), area, n_types),
        "ca2": (positions(lc2), area, n_types),
        "lucc_sink": (carbon["lucc"], values["carbon:sink"], 5),
        "lucc_area": (carbon["lucc"], area, 5),
    }
    lc = positions(lc2)
    by_class = {f"cls:{k}": (lc, v, n_types) for k, v in values.items() if k.startswith(("v:", "q:"))}
    by_class.update(gep_mc.by_type_sums(ctx, services))   # GEP Monte Carlo sums (eco_value.gep_uncertainty)
    maps = {
        f"carbon_stock_{y2}_tc_per_ha": carbon["stock_t2_tc_per_ha"],
        "carbon_sink_tco2e_per_ha_yr": carbon["sink_tco2e_per_ha_yr"],
    }
    km2 = grid.pixel_area_m2 / M2_PER_KM2
    gep_total = sum(r.value_cny for r in services.values())
    maps["gep_cny_per_km2"] = gep_total / km2
    for key, r in services.items():
        maps[f"{key}_value_cny_per_km2"] = r.value_cny / km2
        maps[f"{key}_quantity_per_km2"] = r.quantity / km2
    # input value checks ride along in the same per-chunk tasks (no separate pass over the inputs)
    region = region_mask(zones["county"][0].geometry, grid, layers[cat.catalog.reference_layer])
    stats = layer_checks(layers, cat, region)
    graph = {"zones": zonal_sums_many({k: z[1] for k, z in zones.items()}, grid, values, coded,
                                      {"county": by_class}, stats,
                                      map_writer(maps, grid) if map_writer is not None else None)}
    return graph, {"grid": grid, "zones": zones, "services": services, "maps": maps, "layers": layers,
                   "carbon": carbon}


def run_valuation(catalog_path: str | Path, store=None, opts: RunOptions | None = None,
                  progress: Progress | None = None) -> RunResult:
    """The whole valuation of one catalog; see the module docstring."""
    from .store import Store
    from .store.models import Run, RuleSetRow

    opts = opts or RunOptions()
    say = progress or (lambda _s, _f: None)
    say("validate inputs", None)
    cat = load_catalog(catalog_path)
    probs = check_structure(cat)
    if cat.sources:
        from .inputs.sources import check_sources

        probs += check_sources(cat)   # the readers' checks: unmapped codes, fields, encoding, ids
    if probs:
        raise InputError(probs)
    rules = opts.rules if isinstance(opts.rules, RuleSet) else load_rules(opts.rules)
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

                finalize_rasters(tmp_dir)
                outputs = write_zone_tables(tmp_dir, ctx["zones"], result["tables"], run_id)
                outputs.update(write_seea_tables(tmp_dir, result["summary"]))
                outputs = {k: str(out_dir / Path(v).name) for k, v in outputs.items()}
                outputs["rasters"] = str(out_dir)
                outputs["report"] = str(out_dir / "report.html")
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


def compute_valuation(cat: Catalog, rules: RuleSet, opts: RunOptions, say: Progress, run_id: str,
                      raster_dir: Path | None, inputs: list[dict]) -> tuple[dict, dict]:
    """Build the graph, run the single compute, refuse bad values, assemble rows and summary.

    Writes nothing but the per-pixel GeoTIFFs into ``raster_dir`` (when given); stores nothing.
    """
    writes = None
    if raster_dir is not None:
        raster_dir.mkdir(parents=True, exist_ok=True)
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
    result = _assemble(cat, rules, opts, ctx, computed, run_id, inputs)
    # actual (used) GEP beside potential: a post-step over the per-zone results (issue 15 item 4)
    from .accounts.actual import apply_actual

    from .inputs.beneficiaries import read_beneficiary_inputs

    apply_actual(result, read_beneficiary_inputs(cat, ctx["grid"]), ctx)
    result["summary"]["input_warnings"] = [str(w) for w in warnings_from_stats(computed["checks"], cat)]
    return result, ctx


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


def create_map_files(maps: dict[str, xr.DataArray], folder: Path, grid: Grid, run_id: str, rules: RuleSet,
                     scheduler) -> dict[str, tuple]:
    """Create the empty per-pixel map GeoTIFFs (tiled, float32, nodata, tags) and one lock per file.

    The single compute writes each chunk into its window (no compression there, so writes keep pace);
    :func:`eco_value.outputs.finalize_rasters` then turns them into ZSTD-compressed COGs.
    """
    import rasterio

    distributed = bool(scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS"))
    out = {}
    for name, arr in maps.items():
        path = folder / f"{name}.tif"
        with rasterio.open(path, "w", driver="GTiff", width=grid.width, height=grid.height, count=1, dtype="float32",
                           crs=grid.crs, transform=grid.transform, nodata=-9999.0, tiled=True, blockxsize=512,
                           blockysize=512, sparse_ok=True) as dst:
            dst.update_tags(run_id=run_id, ruleset_hash=rules.content_hash, layer=name, units=_units_of(name),
                            note="eco-value result; per-hectare or per-km2 as the name says")
        if distributed:
            from distributed import Lock
            lock = Lock(f"eco-value-write-{run_id}-{name}")
        else:
            lock = threading.Lock()
        out[name] = (arr, str(path), lock)
    return out


def _units_of(name: str) -> str:
    if name.endswith("tc_per_ha"):
        return "t C/ha"
    if name.endswith("tco2e_per_ha_yr"):
        return "t CO2e/ha/yr"
    if "value_cny_per_km2" in name or name == "gep_cny_per_km2":
        return "CNY/km2/yr"
    key = name.replace("_quantity_per_km2", "")
    return f"{SERVICES[key].SPEC.quantity_unit}/km2/yr" if key in SERVICES else ""


def _assemble(cat: Catalog, rules: RuleSet, opts: RunOptions, ctx: dict, computed: dict, run_id: str, inputs) -> dict:
    y1, y2 = cat.catalog.period
    services = ctx["services"]
    price_year = opts.price_year or rules.meta.price_year or y2
    rows: dict[str, list[dict]] = {"zones": [], "service_results": [], "carbon_results": []}
    tables: dict[str, list[dict]] = {}
    mc_by_kind = {}
    for kind, (gdf, w, id_field) in ctx["zones"].items():
        c = computed[kind]
        stats = SufficientStats(c["sv1"], c["sv2"], c["sa1"], c["sa2"], c["ca1"], c["ca2"], float(y2 - y1))
        mc = monte_carlo(stats, rules, n=opts.mc_draws, seed=opts.mc_seed)
        mc_by_kind[kind] = (mc, approach1_pct(stats, rules) if kind == "county" else None, stats)
        attrs = gdf.drop(columns="geometry").assign(_id=gdf[id_field].astype(str)).set_index("_id").to_dict("index")
        geoms = dict(zip(gdf[id_field].astype(str), gdf.geometry.to_wkb()))
        trows = []
        for zi, zid in enumerate(w.ids):
            g = attrs[zid]
            wkb = geoms[zid]
            area = float(c["area_ha"][zi])
            pop = g.get("population")
            rows["zones"].append(dict(
                run_id=run_id, kind=kind, zone_id=zid,
                parent_id=str(g.get("township_id", "")) if kind == "parcel" else "",
                name=str(g.get("name", g.get("name_en", ""))) if kind != "parcel" else "",
                holder_id=str(g.get("holder_id", "")) if kind == "parcel" else "",
                holder_type=str(g.get("holder_type", "")) if kind == "parcel" else "",
                other_programme=str(g.get("other_programme", "none")) if kind == "parcel" else "",
                area_ha=area, population=int(pop) if pop is not None and pop == pop else None,
                geometry_sha256=hashlib.sha256(wkb).hexdigest(), geometry_wkb=wkb))
            row = {"zone_kind": kind, "zone_id": zid, "area_ha": area}
            gep = 0.0
            for key, res in services.items():
                q = float(c[f"q:{key}"][zi])
                v = float(c[f"v:{key}"][zi])
                gep += v
                rows["service_results"].append(dict(run_id=run_id, zone_kind=kind, zone_id=zid, service=key, quantity=q,
                                                    unit=res.quantity_unit, value_cny=v, price_year=price_year))
                row[f"{key}_cny"] = v
            row["gep_cny"] = gep
            row["gep_cny_per_km2"] = gep / (area / 100.0) if area > 0 else 0.0
            sink = float(c["carbon:sink"][zi])
            ls = c["lucc_sink"][zi]
            rows["carbon_results"].append(dict(
                run_id=run_id, zone_kind=kind, zone_id=zid, period_start=y1, period_end=y2, area_ha=area,
                stock_t1_tc=float(c["carbon:stock1"][zi]), stock_t2_tc=float(c["carbon:stock2"][zi]),
                net_sink_tco2e_per_yr=sink, ci95_low_tco2e_per_yr=float(mc["low"][zi]),
                ci95_high_tco2e_per_yr=float(mc["high"][zi]),
                afforestation_tco2e_per_yr=float(ls[LUCC["afforestation"]]),
                deforestation_tco2e_per_yr=float(ls[LUCC["deforestation"]]),
                forest_remaining_tco2e_per_yr=float(ls[LUCC["forest_remaining_forest"]])))
            row.update({"carbon_stock_t2_tc": float(c["carbon:stock2"][zi]), "net_sink_tco2e_per_yr": sink,
                        "sink_ci95_low": float(mc["low"][zi]), "sink_ci95_high": float(mc["high"][zi])})
            if kind == "parcel":
                row.update({"township_id": str(g.get("township_id", "")), "holder_id": str(g.get("holder_id", "")),
                            "holder_type": str(g.get("holder_type", ""))})
            trows.append(row)
        tables[kind] = trows

    county = computed["county"]
    mc, a1, stats = mc_by_kind["county"]
    area_ha = float(county["area_ha"][0])
    ca2 = county["ca2"][0]
    by_service = {}
    for key, res in services.items():
        by_service[key] = {"quantity": float(county[f"q:{key}"][0]), "unit": res.quantity_unit,
                           "value_cny": float(county[f"v:{key}"][0]), "name_zh": SERVICES[key].SPEC.name_zh,
                           "category": SERVICES[key].SPEC.category}
    total = float(sum(v["value_cny"] for v in by_service.values()))
    types = ecosystem_types()
    type_names = types.position_names()
    by_class: dict[str, dict[str, float]] = {}
    by_class_q: dict[str, dict[str, float]] = {}
    for key in services:
        arr = county[f"cls:v:{key}"][0]
        arq = county[f"cls:q:{key}"][0]
        for pos in range(1, types.n_positions):
            if arr[pos] != 0 or arq[pos] != 0:
                by_class.setdefault(type_names[pos], {})[key] = float(arr[pos])
                by_class_q.setdefault(type_names[pos], {})[key] = float(arq[pos])
    population = None
    bgdf = ctx["zones"]["county"][0]
    if "population" in bgdf.columns:
        population = int(bgdf["population"].iloc[0])
    ca1 = county["ca1"][0]

    def level1_areas(ca) -> dict[str, float]:   # by level-1 type, sub-types included
        out = {t.name: 0.0 for t in types.level1()}
        for t in types:
            out[t.level1] += float(ca[types.positions[t.name]])
        return out

    area1, area2 = level1_areas(ca1), level1_areas(ca2)
    forest_ha = area2["forest"]
    summary = {
        "run_id": run_id,
        "region": cat.catalog.region,
        "adcode": cat.catalog.adcode,
        "name_zh": cat.catalog.name_zh,
        "synthetic_inputs": bool(cat.catalog.synthetic),
        "period": [y1, y2],
        "rules": {"name": rules.name, "hash": rules.content_hash},
        "area_km2": area_ha / 100.0,
        "carbon": {
            "net_sink_tco2e_per_yr": float(county["carbon:sink"][0]),
            "ci95_tco2e_per_yr": [float(mc["low"][0]), float(mc["high"][0])],
            "mc_mean_tco2e_per_yr": float(mc["mean"][0]),
            "mc_draws": int(mc["n"]),
            "mc_seed": int(mc["seed"]),
            "approach1_ci95_pct": float(a1[0]) if a1 is not None else None,
            "stock_tc": float(county["carbon:stock2"][0]),
            "stock_t1_tc": float(county["carbon:stock1"][0]),
            "by_lucc_tco2e_per_yr": {k: float(county["lucc_sink"][0][v]) for k, v in LUCC.items()},
            "by_lucc_area_ha": {k: float(county["lucc_area"][0][v]) for k, v in LUCC.items()},
            "forest_sink_tco2e_per_ha_yr": float(county["lucc_sink"][0][LUCC["forest_remaining_forest"]]) /
                                           max(float(county["lucc_area"][0][LUCC["forest_remaining_forest"]]), 1e-9),
        },
        "gep": {"total_cny": total, "by_service": by_service, "price_year": price_year,
                "cny_per_km2": total / (area_ha / 100.0), "per_capita_cny": total / population if population else None,
                "by_land_cover_cny": by_class, "by_land_cover_quantity": by_class_q},
        "extent": {f"area_ha_by_class_{y2}": area2,
                   f"area_ha_by_class_{y1}": area1,
                   "forest_coverage_pct": 100.0 * forest_ha / area_ha,
                   "forest_and_shrub_coverage_pct": 100.0 * (forest_ha + area2["shrub"]) / area_ha},
        "population": population,
    }
    summary["gep"]["uncertainty"] = gep_mc.for_run(rules, county, stats, by_service, price_year,
                                                   opts.mc_draws, opts.mc_seed)
    return {"rows": rows, "summary": summary, "tables": tables}
