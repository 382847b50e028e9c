"""``eco-value`` command line: parse arguments, call the library, print (rich), map errors to exit codes.

Exit codes: 0 success, 2 bad input or refused operation (message, no traceback), 1 internal error
(traceback only with ``--debug``), 130 interrupted.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

from .errors import EcoValueError

# --- carbon-stock: dispatched before typer and rich are imported ---------------------------------------
# The command runs in about a second, so its start-up counts: typer (its parameter coercion imports
# pydantic), rich and this module's ~60 commands cost ~0.15-0.2 s of CPU it does not need. Its options
# are defined once, here, and parsed with argparse; the typer command of the same name only lists it in
# ``eco-value --help`` and hands its arguments to the same function.

CARBON_STOCK_HELP = "InVEST-compatible carbon stock and sequestration from a pool table (with --out: InVEST's maps)."
# (flag, kind, required, help); kind: path | float | int | flag
CARBON_STOCK_OPTIONS = (
    ("--lulc", "path", True, "Current (baseline) land-cover GeoTIFF, integer classes, projected CRS."),
    ("--pools", "path", True, "InVEST pool table: lucode,c_above,c_below,c_soil,c_dead (Mg C/ha)."),
    ("--future-lulc", "path", False, "Future (alternate) land-cover GeoTIFF on the same grid."),
    ("--out", "path", False, "Write InVEST 3.20 Carbon's maps (COGs, t C/ha) and raster_values_summary.csv here."),
    ("--intermediate", "flag", False, "With --out: also the per-pool maps in intermediate_outputs/."),
    ("--overviews", "flag", False, "With --out: build COG overviews (average); InVEST writes none."),
    ("--price", "float", False, "Valuation: price per t C (currency); writes npv_alt.tif."),
    ("--discount-rate", "float", False, "Valuation: yearly market discount rate, percent."),
    ("--rate-change", "float", False, "Valuation: yearly change of the carbon price, percent."),
    ("--lulc-year", "int", False, "Valuation: calendar year of --lulc."),
    ("--future-year", "int", False, "Valuation: calendar year of --future-lulc."),
    ("--json", "flag", False, "Print one JSON object for machines."),
)
VALUATION_OPTIONS = ("--price", "--discount-rate", "--rate-change", "--lulc-year", "--future-year")


def _carbon_stock_parser():
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message):          # click's wording and exit code, like every other command
            self.exit(EcoValueError.exit_code, f"Usage: {self.prog} [OPTIONS]\nTry '{self.prog} --help' for help.\n\n"
                      f"Error: {message}\n")

    ap = Parser(prog="eco-value carbon-stock", description=CARBON_STOCK_HELP, allow_abbrev=False)
    kinds = {"path": Path, "float": float, "int": int}
    for flag, kind, required, help_ in CARBON_STOCK_OPTIONS:
        dest = flag[2:].replace("-", "_")
        if kind == "flag":
            ap.add_argument(flag, dest=dest, action="store_true", help=help_)
        else:
            ap.add_argument(flag, dest=dest, type=kinds[kind], required=required, metavar=kind.upper(), help=help_)
    return ap


def _carbon_stock(argv: list[str]) -> None:
    """``eco-value carbon-stock ARGV``: totals (and InVEST's maps with --out); raises EcoValueError on bad input."""
    a = _carbon_stock_parser().parse_args(argv)
    given = [k for k in VALUATION_OPTIONS if getattr(a, k[2:].replace("-", "_")) is not None]
    if given and a.out is None:
        raise EcoValueError(f"{', '.join(given)} need{'s' if len(given) == 1 else ''} --out (the NPV is a map, npv_alt.tif)")
    if given and len(given) < len(VALUATION_OPTIONS):
        raise EcoValueError(f"valuation needs all of {', '.join(VALUATION_OPTIONS)}; missing "
                            f"{', '.join(k for k in VALUATION_OPTIONS if k not in given)}")
    if (a.intermediate or a.overviews) and a.out is None:
        raise EcoValueError("--intermediate and --overviews need --out")
    if a.out is None:
        from .invest_mode import carbon_stock

        r = carbon_stock(a.lulc, a.pools, a.future_lulc)
    else:
        from .invest_mode import Valuation, carbon_stock_maps

        val = Valuation(a.price, a.discount_rate, a.rate_change, a.lulc_year, a.future_year) if given else None
        r = carbon_stock_maps(a.lulc, a.pools, a.out, a.future_lulc, valuation=val, intermediate=a.intermediate,
                              overviews=a.overviews)
    if a.json:
        sys.stdout.write(json.dumps(r.as_json(), ensure_ascii=False, indent=2, default=str) + "\n")
        return
    lines = [f"total stock: {r.total_stock_mgc:,.2f} Mg C"]
    if r.sequestration_mgc is not None:
        lines.append(f"sequestration (future − current): {r.sequestration_mgc:,.2f} Mg C")
    if r.npv is not None:
        lines.append(f"net present value of the change: {r.npv:,.2f}")
    if r.nodata_px:
        lines.append(f"nodata pixels (not counted): {r.nodata_px:,}")
    if r.missing_codes:
        lines.append(f"codes missing from the pool table (not counted; nodata in the maps): {r.missing_codes}")
    if r.maps:
        lines.append(f"wrote {len(r.maps)} maps and {Path(r.summary_csv).name} to {a.out}")
    sys.stdout.write("".join(x + "\n" for x in lines))


def _run_carbon_stock(argv: list[str]) -> int:
    """The command with main()'s error handling (exit 2 bad input, 130 interrupted, 1 internal error)."""
    try:
        _carbon_stock(argv)
        return 0
    except EcoValueError as exc:
        _print_error("error:", str(exc), _secrets(argv))
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except Exception as exc:  # noqa: BLE001  (no --debug before the command on this path)
        _print_error("internal error:", f"{type(exc).__name__}: {exc}\n(run with --debug for the traceback)", _secrets(argv))
        return 1


def _secrets(argv: list[str]) -> list[str]:
    """Passwords the user handed us (``--db`` values, ``$ECO_VALUE_DB``): never echoed back.

    Called only when an error is printed: it imports the store (SQLAlchemy, pandas: ~1 s of CPU), which a
    command that never touches the store (``carbon-stock``, ``--help``) should not pay for."""
    from .store.db import ENV_VAR, url_secrets

    urls = [os.environ.get(ENV_VAR)]
    for i, a in enumerate(argv):
        if a == "--db" and i + 1 < len(argv):
            urls.append(argv[i + 1])
        elif a.startswith("--db="):
            urls.append(a[len("--db="):])
    return [s for u in urls for s in url_secrets(u)]


def _print_error(label: str, message: str, secrets: list[str]) -> None:
    """The one error printer: secrets masked (last resort), markup in the message shown literally."""
    from rich.markup import escape

    from .store.db import mask_secrets

    e = globals().get("err")
    if e is None:                          # carbon-stock's early path: the module's consoles do not exist yet
        from rich.console import Console

        e = Console(stderr=True)
    e.print(f"[red]{label}[/] {escape(mask_secrets(message, secrets))}", highlight=False, soft_wrap=True)


def _is_program() -> bool:
    """This module is the program (``eco-value …`` or ``python -m eco_value.cli``), not an import."""
    return __name__ == "__main__" or Path(sys.argv[0] if sys.argv else "").name.startswith("eco-value")


if _is_program() and sys.argv[1:2] == ["carbon-stock"]:
    # numpy's OpenBLAS starts a thread per core at import, which spins ~0.05 s of CPU; this command does
    # no linear algebra (table lookups, histograms). A user's own setting is kept.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    sys.exit(_run_carbon_stock(sys.argv[2:]))

import typer  # noqa: E402  (after the carbon-stock dispatch)
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="eco-value: audited GEP and forest carbon-sink accounts from rasters.")
keys_app = typer.Typer(no_args_is_help=True, help="The issuer's Ed25519 signing key.")
audit_app = typer.Typer(no_args_is_help=True, help="Registry audit: check the hash-chained event log.")
rules_app = typer.Typer(no_args_is_help=True, help="Read and compare rule sets (parameters with units and sources).")
catalog_app = typer.Typer(no_args_is_help=True, help="Build a catalog.toml from a bureau's own files.")
app.add_typer(rules_app, name="rules")
app.add_typer(catalog_app, name="catalog")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
console = Console()
err = Console(stderr=True)
STATE = {"debug": False}

FormatOpt = typer.Option("real", "--format", help="real: 小班 shapefile, DLTB, MOD16-like stack, daily NetCDF "
                         "([sources] in catalog.toml; catalog-raster.toml beside it); raster: plain GeoTIFFs.")
DbOpt = typer.Option(None, "--db", help="Database URL (default: $ECO_VALUE_DB, else a SQLite file in the user data folder).")
JsonOpt = typer.Option(False, "--json", help="Print one JSON object for machines.")
HeadFileOpt = typer.Option(None, "--head-file", help="Also write the registry's new audit-chain head to this file (keep it off the database host).")
OverwriteOpt = typer.Option(False, "--overwrite", help="Replace an existing --out (only once the new output is complete; "
                            "never the current folder, the catalog, its inputs or the database).")


def _echo_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2, default=str) + "\n")


def _anchor_head(head: str, head_file: Optional[Path], quiet: bool) -> None:
    """Write the registry's chain head to ``--head-file`` (the printed head is the other anchor)."""
    if head_file is not None:
        from .exchange.registry import write_head_file

        write_head_file(head_file, head)
        if not quiet:
            console.print(f"wrote the audit chain head to {head_file}", markup=False, highlight=False, soft_wrap=True)


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks of internal errors.")):
    STATE["debug"] = debug


@app.command("pilot-data")
def pilot_data(
    name: str = typer.Argument(..., help="Pilot county: qionglai or dayi."),
    out: Path = typer.Option(..., "--out", help="Folder to write the inputs and catalog.toml into."),
    resolution: float = typer.Option(30.0, "--resolution", help="Pixel size in metres (30 default; 10 works)."),
    seed: int = typer.Option(20231, "--seed", help="Random seed; the same seed gives byte-identical rasters."),
    fmt: str = FormatOpt,
    overwrite: bool = OverwriteOpt,
    json_out: bool = JsonOpt,
):
    """Generate the SYNTHETIC pilot dataset (real formats or rasters, parcels, townships, tables, catalog.toml)."""
    from .inputs.pilot import generate_pilot

    t = time.time()
    with console.status("generating pilot data") as st:
        cat = generate_pilot(name, out, resolution, seed, progress=lambda m: st.update(f"pilot data: {m}"), overwrite=overwrite,
                            fmt=fmt)
    if json_out:
        _echo_json({"catalog": str(cat), "seconds": round(time.time() - t, 2)})
    else:
        console.print(f"[green]wrote[/] {cat} in {time.time() - t:.1f} s (synthetic data, labelled as such)")


@catalog_app.command("init")
def catalog_init(
    out: Path = typer.Option(..., "--out", help="The catalog.toml to write (paths in it are relative to its folder)."),
    inventory: Optional[str] = typer.Option(None, "--inventory", help="小班 layer of the second year (t2)."),
    inventory_t1: Optional[str] = typer.Option(None, "--inventory-t1", help="小班 layer of the first year (t1)."),
    species: Optional[str] = typer.Option(None, "--species", help="Species crosswalk (CSV code,group)."),
    fieldmap: Optional[str] = typer.Option(None, "--fieldmap", help="Field map name or TOML (default inventory-national)."),
    landuse: Optional[str] = typer.Option(None, "--landuse", help="DLTB of t2 (alone: of both years)."),
    landuse_t1: Optional[str] = typer.Option(None, "--landuse-t1", help="DLTB of t1."),
    tenure: Optional[str] = typer.Option(None, "--tenure", help="林权 records (CSV or vector; BDCQZH, LB/XB, SYQMJ in 亩), "
                                         "joined to the 小班 of --inventory."),
    dem: Optional[str] = typer.Option(None, "--dem"),
    precip: Optional[str] = typer.Option(None, "--precip", help="Annual raster (mm) or a daily NetCDF (mm/d)."),
    aet: Optional[str] = typer.Option(None, "--aet", help="Annual raster (mm) or a MOD16A2 stack (folder or glob)."),
    erosivity: Optional[str] = typer.Option(None, "--erosivity"),
    erodibility: Optional[str] = typer.Option(None, "--erodibility"),
    fvc: Optional[str] = typer.Option(None, "--fvc"),
    bulk_density: Optional[str] = typer.Option(None, "--bulk-density"),
    boundary: Optional[str] = typer.Option(None, "--boundary"),
    townships: Optional[str] = typer.Option(None, "--townships"),
    parcels: Optional[str] = typer.Option(None, "--parcels"),
    provisioning: Optional[str] = typer.Option(None, "--provisioning"),
    tourism: Optional[str] = typer.Option(None, "--tourism"),
    region: Optional[str] = typer.Option(None, "--region"),
    crs: Optional[str] = typer.Option(None, "--crs", help="Default: the DEM's CRS."),
    period: Optional[tuple[int, int]] = typer.Option(None, "--period", help="FIRST SECOND year (default: from the file names)."),
    overwrite: bool = OverwriteOpt,
    json_out: bool = JsonOpt,
):
    """Write a catalog.toml naming each file, say where every needed layer comes from, and validate it."""
    import tomli_w

    from .inputs.catalog import load_catalog
    from .inputs.catalog_init import build_catalog
    from .inputs.validate import validation_report
    from .safe_write import safe_output

    files = dict(inventory=inventory, inventory_t1=inventory_t1, landuse=landuse, landuse_t1=landuse_t1, tenure=tenure, dem=dem,
                 precip=precip, aet=aet, erosivity=erosivity, erodibility=erodibility, fvc=fvc,
                 bulk_density=bulk_density, boundary=boundary, townships=townships, parcels=parcels,
                 provisioning=provisioning, tourism=tourism)
    target = safe_output(out, "file", overwrite, option="--out")
    cat, origins = build_catalog(files, out, region=region, crs=crs, period=period, species=species, fieldmap=fieldmap)
    with target.staging() as tmp:
        with open(tmp, "wb") as f:
            tomli_w.dump(cat, f)
    probs, warnings = validation_report(load_catalog(out))
    if json_out:
        _echo_json({"catalog": str(out), "layers": [o.__dict__ for o in origins], "ok": not probs,
                    "problems": [p.__dict__ for p in probs], "warnings": [w.__dict__ for w in warnings]})
        raise typer.Exit(2 if probs else 0)
    t = Table("layer", "from", "detail")
    for o in origins:
        colour = {"missing": "red", "derived": "yellow"}.get(o.status, "green")
        t.add_row(o.layer, f"[{colour}]{o.status}[/]", escape(o.detail))
    console.print(t)
    console.print(f"wrote {out}")
    for w in warnings:
        err.print(f"[yellow]warning[/]: {escape(str(w))}", highlight=False, soft_wrap=True)
    if probs:
        err.print(f"[red]{len(probs)} problem(s)[/] in {escape(str(out))} (written; fix and run `eco-value validate`):")
        for p in probs:
            err.print(f"  - {escape(str(p))}", highlight=False, soft_wrap=True)
    else:
        console.print("[green]valid[/]: `eco-value run` can use it")
    raise typer.Exit(2 if probs else 0)


@app.command()
def validate(catalog: Path = typer.Argument(..., help="catalog.toml or its folder."), json_out: bool = JsonOpt):
    """Check a catalog and every input it names; report all problems at once."""
    from .inputs.catalog import load_catalog
    from .inputs.validate import validation_report

    cat = load_catalog(catalog)
    probs, warnings = validation_report(cat)
    if json_out:
        _echo_json({"ok": not probs, "problems": [p.__dict__ for p in probs], "warnings": [w.__dict__ for w in warnings]})
        raise typer.Exit(2 if probs else 0)
    for w in warnings:
        err.print(f"[yellow]warning[/]: {escape(str(w))}", highlight=False, soft_wrap=True)
    if probs:
        err.print(f"[red]{len(probs)} problem(s)[/] in {escape(str(cat.source))}:")
        for p in probs:
            err.print(f"  - {escape(str(p))}", highlight=False, soft_wrap=True)
    else:
        console.print(f"[green]ok[/]: {len(cat.layers)} rasters, {len(cat.sources)} sources, {len(cat.vectors)} vector layers, "
                      f"{len(cat.tables)} tables")
    raise typer.Exit(2 if probs else 0)


def _progress_runner():
    prog = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                    TimeElapsedColumn(), console=err, transient=False)
    state = {"task": None, "t0": time.time(), "stage": None}

    def report(stage: str, frac):
        if state["stage"] != stage:
            if state["task"] is not None:
                prog.update(state["task"], completed=100)
            state["task"] = prog.add_task(stage, total=100)
            state["stage"] = stage
        if frac is not None:
            prog.update(state["task"], completed=100 * frac)
    return prog, report


def zone_ci95(s: dict, kind: str) -> dict[str, list[float]]:
    """Zone id → [low, high] of its GEP from the run's GEP Monte Carlo (empty if it has none)."""
    by_zone = ((s["gep"].get("uncertainty") or {}).get("by_zone") or {}).get(kind) or {}
    return {z: [ci["low"], ci["high"]] for z, ci in by_zone.items()}


def _gep_ci(s: dict, service: str | None):
    """[low, high] of GEP (or one service) from the run's GEP Monte Carlo, None if it has none."""
    u = s["gep"].get("uncertainty") or {}
    x = u.get("total") if service is None else (u.get("by_service") or {}).get(service)
    return [x["low"], x["high"]] if x else None


@app.command()
def run(
    catalog: Path = typer.Argument(..., help="catalog.toml of the region (see `eco-value pilot-data`)."),
    db: Optional[str] = DbOpt,
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: results/<run> beside the catalog)."),
    rules: str = typer.Option("cn2011-mee2020", "--rules", help="Rule set name (`eco-value rules list`)."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="dask.distributed scheduler address, e.g. tcp://host:8786."),
    mc_draws: int = typer.Option(1000, "--mc-draws", help="Monte Carlo draws for the carbon-sink interval."),
    price_year: Optional[int] = typer.Option(None, "--price-year", help="Express values in prices of this year (CPI rebasing)."),
    force: bool = typer.Option(False, "--force", help="Compute again even if an identical run is stored."),
    overwrite: bool = OverwriteOpt,
    json_out: bool = JsonOpt,
):
    """The whole valuation: validate → carbon → GEP → store → maps, tables, report."""
    from .pipeline import RunOptions, run_valuation
    from .store import Store

    store = Store(db)
    opts = RunOptions(rules=rules, out_dir=out, mc_draws=mc_draws, scheduler=scheduler, force=force, price_year=price_year,
                      overwrite=overwrite)
    prog, report = _progress_runner()
    if json_out:
        res = run_valuation(catalog, store, opts)
    else:
        with prog:
            res = run_valuation(catalog, store, opts, progress=report)
    s = res.summary
    payload = {
        "run_id": res.run_id, "reused_existing_run": res.reused, "region": s["region"], "period": s["period"],
        "carbon": {"net_sink_tco2e_per_yr": s["carbon"]["net_sink_tco2e_per_yr"],
                   "ci95_tco2e_per_yr": s["carbon"]["ci95_tco2e_per_yr"], "stock_tc": s["carbon"]["stock_tc"]},
        "gep": {"total_cny": s["gep"]["total_cny"], "actual_total_cny": s["gep"].get("actual_total_cny"),
                "by_service": {k: {"quantity": v["quantity"], "unit": v["unit"], "value_cny": v["value_cny"],
                                   "used_share": v.get("used_share"), "actual_value_cny": v.get("actual_value_cny"),
                                   "nodata_px": v.get("nodata_px"), "nodata_ha": v.get("nodata_ha")}
                               for k, v in s["gep"]["by_service"].items()},
                "ci95_cny": _gep_ci(s, None),
                "by_service_ci95_cny": {k: _gep_ci(s, k) for k in s["gep"]["by_service"]},
                "by_township_ci95_cny": zone_ci95(s, "township")},
        "outputs": res.outputs,
    }
    if json_out:
        _echo_json(payload | {"input_warnings": s.get("input_warnings", [])})
        return
    for w in s.get("input_warnings", []):
        err.print(f"[yellow]warning[/]: {escape(w)}", highlight=False, soft_wrap=True)
    _print_summary(s, res.run_id, res.reused)


def _print_summary(s: dict, run_id: str, reused: bool = False) -> None:
    if reused:
        console.print(f"[yellow]identical inputs and rules: showing stored run {run_id} (use --force to recompute)[/]")
    t = Table(title=f"{s.get('name_zh', '')} {s['region']} {s['period'][0]}–{s['period'][1]}  run {run_id[:8]}")
    t.add_column("service")
    t.add_column("quantity", justify="right")
    t.add_column("unit")
    t.add_column("value (亿元)", justify="right")
    for k, v in sorted(s["gep"]["by_service"].items(), key=lambda kv: -kv[1]["value_cny"]):
        t.add_row(k.replace("_", " "), f"{v['quantity']:,.0f}", v["unit"], f"{v['value_cny'] / 1e8:,.2f}")
    t.add_row("[b]GEP total[/]", "", "", f"[b]{s['gep']['total_cny'] / 1e8:,.2f}[/]")
    console.print(t)
    ci = _gep_ci(s, None)
    if ci:
        console.print(f"GEP 95 % interval {ci[0] / 1e8:,.2f} – {ci[1] / 1e8:,.2f} 亿元 (Monte Carlo over every GEP "
                      f"parameter's range; `eco-value sensitivity {run_id[:8]}` ranks them)", highlight=False)
    if s["gep"].get("actual_total_cny") is not None:
        console.print(f"actual (used) GEP {s['gep']['actual_total_cny'] / 1e8:,.2f} 亿元 "
                      f"({100 * s['gep']['actual']['share_of_potential']:.0f} % of potential)", highlight=False)
    c = s["carbon"]
    lo, hi = c["ci95_tco2e_per_yr"]
    console.print(f"carbon sink {c['net_sink_tco2e_per_yr']:,.0f} t CO2e/yr (95 % CI {lo:,.0f} – {hi:,.0f}); "
                  f"stock {c['stock_tc']:,.0f} t C; forest coverage {s['extent']['forest_coverage_pct']:.1f} %")
    outs = s.get("outputs", {})
    if s.get("outputs_status", "written") not in ("written", "none"):
        from rich.markup import escape

        console.print(f"[yellow]output files: {escape(s['outputs_status'])}[/] (results are stored; "
                      f"`eco-value report {run_id[:8]} --out FILE` writes the report)", highlight=False)
    elif outs.get("report"):
        console.print(f"report: {outs['report']}")
    if s.get("synthetic_inputs"):
        console.print("[yellow]inputs are the synthetic pilot dataset: numbers show the method, not the county's accounts[/]")


@app.command()
def demo(
    out: Path = typer.Option(Path("eco-value-demo"), "--out", help="Folder for the pilot data and results."),
    pilot: str = typer.Option("qionglai", "--pilot", help="qionglai or dayi."),
    db: Optional[str] = DbOpt,
    fmt: str = FormatOpt,
):
    """Generate the Qionglai pilot data and run the full valuation on it (the README quick start)."""
    from .inputs.pilot import generate_pilot

    cat = out / pilot / "catalog.toml"
    if not cat.exists():
        with console.status("generating synthetic pilot data") as st:
            generate_pilot(pilot, out / pilot, progress=lambda m: st.update(f"pilot data: {m}"), fmt=fmt)
    run(catalog=cat, db=db or f"sqlite:///{(out / 'eco-value.sqlite').resolve()}", out=None, rules="cn2011-mee2020",
        scheduler=None, mc_draws=1000, price_year=None, force=False, overwrite=False, json_out=False)


@app.command("runs")
def runs_cmd(db: Optional[str] = DbOpt, json_out: bool = JsonOpt):
    """List stored runs."""
    from .store import Store

    rs = Store(db).runs()
    if json_out:
        _echo_json([{"run_id": r.id, "status": r.status, "region": r.region, "period": [r.period_start, r.period_end],
                     "rules": r.ruleset_name, "started": r.started, "error": r.error} for r in rs])
        return
    t = Table("run", "status", "region", "period", "rules", "started", "GEP (亿元)", "sink (t CO2e/yr)")
    for r in rs:
        s = json.loads(r.summary_json or "{}")
        t.add_row(r.id[:8], r.status, r.region, f"{r.period_start}–{r.period_end}", r.ruleset_name,
                  str(r.started)[:19], f"{s['gep']['total_cny'] / 1e8:,.2f}" if s else "",
                  f"{s['carbon']['net_sink_tco2e_per_yr']:,.0f}" if s else r.error[:40])
    console.print(t)


@app.command()
def show(run_id: str = typer.Argument(...), db: Optional[str] = DbOpt, json_out: bool = JsonOpt):
    """Summary of one stored run."""
    from .store import Store

    r = Store(db).run(run_id)
    s = json.loads(r.summary_json or "{}")
    if json_out:
        _echo_json({"run_id": r.id, "status": r.status, "error": r.error, "summary": s})
        return
    if r.status != "complete":
        console.print(f"run {r.id}: {r.status} {r.error}", markup=False, highlight=False)
        raise typer.Exit(0)
    _print_summary(s, r.id)


@app.command()
def sensitivity(run_id: str = typer.Argument(...), db: Optional[str] = DbOpt, top: int = typer.Option(10, "--top", min=1,
                help="Rows to print (all with --json)."), json_out: bool = JsonOpt):
    """Which GEP parameters to source first: ranked first-order Sobol and one-at-a-time shares of GEP variance."""
    from .gep_uncertainty import stored_sensitivity
    from .store import Store

    r = Store(db).run(run_id)
    t = stored_sensitivity(json.loads(r.summary_json or "{}"), r.id)
    if json_out:
        _echo_json(t)
        return
    mc = t["mc"]
    console.print(f"GEP {t['gep_cny'] / 1e8:,.2f} 亿元; Monte Carlo ({t['draws']} draws) mean {mc['mean'] / 1e8:,.2f}, "
                  f"95 % interval {mc['low'] / 1e8:,.2f} - {mc['high'] / 1e8:,.2f} 亿元", markup=False, highlight=False)
    tab = Table("#", "parameter", "value", "range (95 %)", "basis", "Sobol S1", "OAT share", "GEP at low / high (亿元)")
    for p in t["parameters"][:top]:
        oat = "" if p["gep_at_low"] is None else f"{p['gep_at_low'] / 1e8:,.2f} / {p['gep_at_high'] / 1e8:,.2f}"
        tab.add_row(str(p["rank"]), p["parameter"], f"{p['value']:.4g}", f"{p['low']:.4g} - {p['high']:.4g} {p['dist']}",
                    p["basis"], f"{max(p['sobol_first_order'], 0.0):.3f}", f"{p['oat_share']:.3f}", oat)
    console.print(tab)
    if t["held_fixed"]:
        console.print(f"held at their values (no rule-set parameter): {', '.join(t['held_fixed'])}", markup=False)


@app.command()
def diff(run_a: str, run_b: str, db: Optional[str] = DbOpt, json_out: bool = JsonOpt):
    """What changed between two runs: inputs, rules, results by service."""
    from .store import Store
    from .store.queries import diff_runs

    d = diff_runs(Store(db), run_a, run_b)
    if json_out:
        _echo_json(d)
        return
    console.print(f"inputs changed: {', '.join(d['inputs_changed']) or 'none'}")
    console.print(f"rules: {d['rules']['a']} → {d['rules']['b']} ({len(d['rules']['parameters_changed'])} parameter(s) changed)")
    for p in d["rules"]["parameters_changed"][:20]:
        console.print(f"  {p['parameter']}: {p['a']} → {p['b']} {p['unit']}")
    t = Table("service", "A (亿元)", "B (亿元)", "change %")
    for k, v in d["services"].items():
        t.add_row(k, f"{v['a'] / 1e8:,.2f}", f"{v['b'] / 1e8:,.2f}", f"{v['change_pct']:+.2f}" if v["change_pct"] is not None else "")
    console.print(t)


@app.command()
def compare(run_a: str, run_b: str,
            out: Optional[Path] = typer.Option(None, "--out", help="Folder for the difference maps (COG, B − A), tables (CSV) and compare.html."),
            db: Optional[str] = DbOpt, overwrite: bool = OverwriteOpt, json_out: bool = JsonOpt):
    """Scenario comparison B − A: by service and township (quantity, value), difference maps with --out."""
    from .outputs.compare import compare_runs, write_compare_outputs
    from .safe_write import run_files, safe_output, store_files
    from .store import Store

    st = Store(db)
    d = compare_runs(st, run_a, run_b)
    if out is not None:
        results = [(Path(f), f"the results of run {r[:8]}") for r in (d["a"], d["b"])
                   if (f := json.loads(st.run(r).summary_json or "{}").get("outputs", {}).get("rasters"))]
        target = safe_output(out, "dir", overwrite, store_files(st) + run_files(st, d["a"]) + run_files(st, d["b"]) + results)
        with target.staging() as tmp:
            d["outputs"] = write_compare_outputs(st, d, tmp, final_folder=out)
    if json_out:
        _echo_json(d)
        return
    t = Table("service", "A (亿元)", "B (亿元)", "B − A (亿元)", "change")
    for r in d["services"]:
        if r["zone_kind"] == "county":
            t.add_row(r["service"], f"{r['value_a_cny'] / 1e8:,.3f}", f"{r['value_b_cny'] / 1e8:,.3f}",
                      f"{r['value_diff_cny'] / 1e8:+,.3f}", "–" if r["value_rel"] is None else f"{100 * r['value_rel']:+.2f} %")
    console.print(t)
    if out is not None:
        console.print(f"wrote {len(d['outputs']['maps'])} difference map(s), tables and {d['outputs']['report']}",
                      markup=False, highlight=False)


@app.command("export-table")
def export_table(
    table: str = typer.Argument(..., help="services | carbon | zones | inputs | runs"),
    run_id: Optional[str] = typer.Argument(None),
    out: Path = typer.Option(..., "--out", help="File to write: .csv or .parquet"),
    db: Optional[str] = DbOpt,
    overwrite: bool = OverwriteOpt,
):
    """Export a result table for analysis in pandas (CSV or Parquet)."""
    from .safe_write import run_files, safe_output, store_files
    from .store import Store

    st = Store(db)
    rid = st.run(run_id).id if run_id else None
    target = safe_output(out, "file", overwrite, store_files(st) + (run_files(st, rid) if rid else []))
    df = st.table(table, rid)
    with target.staging() as tmp:
        if out.suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            from .ids import csv_safe_frame

            csv_safe_frame(df).to_csv(tmp, index=False)   # ids starting with = + - @ escaped for spreadsheets
    console.print(f"wrote {len(df)} rows to {out}")


@app.command()
def report(run_id: str, out: Path = typer.Option(Path("report.html"), "--out"), db: Optional[str] = DbOpt,
           overwrite: bool = OverwriteOpt):
    """Write the self-contained HTML report of a stored run."""
    from .outputs.report import write_report
    from .safe_write import run_files, safe_output, store_files
    from .store import Store

    st = Store(db)
    rid = st.run(run_id).id
    with safe_output(out, "file", overwrite, store_files(st) + run_files(st, rid)).staging() as tmp:
        write_report(st, rid, tmp)
    console.print(f"wrote {out}")


@app.command("carbon-stock", help=CARBON_STOCK_HELP, add_help_option=False,
             context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def carbon_stock_cmd(ctx: typer.Context):
    # listed by ``eco-value --help``; main() and the program start run it before typer is imported
    # (here only after a group option such as --debug): the options are CARBON_STOCK_OPTIONS
    _carbon_stock(list(ctx.args))


@rules_app.command("list")
def rules_list(json_out: bool = JsonOpt):
    """Rule sets shipped with eco-value."""
    from .rules import available, load_rules

    rows = []
    for n in available():
        r = load_rules(n)
        rows.append({"name": n, "title": r.meta.title, "hash": r.content_hash, "parameters": len(r.params),
                     "unverified": sum(not p.verified for p in r.params.values())})
    if json_out:
        _echo_json(rows)
        return
    t = Table("name", "title", "hash", "parameters", "unverified")
    for r in rows:
        t.add_row(r["name"], r["title"], r["hash"][:12], str(r["parameters"]), str(r["unverified"]))
    console.print(t)


@rules_app.command("show")
def rules_show(name: str, json_out: bool = JsonOpt):
    """Every parameter of a rule set with value, unit and source."""
    from .rules import load_rules

    r = load_rules(name)
    if json_out:
        _echo_json(r.canonical() | {"hash": r.content_hash})
        return
    t = Table("parameter", "value", "unit", "source", title=f"{r.name} {r.content_hash[:12]}")
    for k, p in sorted(r.params.items()):
        t.add_row(k, str(p.value), p.unit, p.source + ("" if p.verified else " [yellow](unverified)[/]"))
    console.print(t)


@rules_app.command("audit")
def rules_audit(
    rules: str = typer.Option("cn2011-mee2020", "--rules"),
    catalog: Optional[Path] = typer.Option(None, "--catalog", help="catalog.toml whose GEP and sink the shares refer to "
                                           "(default: the synthetic Qionglai pilot at 300 m, generated in a temporary folder)."),
    json_out: bool = JsonOpt,
):
    """Every parameter: source, verified flag, evidence class, range and its share of the pilot's GEP or sink.

    Share = |d ln(GEP or sink) / d ln(parameter)| by a one-at-a-time +1 % change (for a price that
    multiplies one service, that service's share of GEP).
    """
    import tempfile
    from dataclasses import asdict

    from .rules import load_rules
    from .rules.audit import MATERIAL, audit_rows

    r = load_rules(rules)
    with tempfile.TemporaryDirectory() as tmp:
        if catalog is None:
            from .inputs.pilot import generate_pilot
            with console.status("generating the 300 m synthetic pilot"):
                generate_pilot("qionglai", Path(tmp) / "qionglai", resolution_m=300.0, seed=7)
            catalog = Path(tmp) / "qionglai" / "catalog.toml"
        with console.status("one-at-a-time shares"):
            rows, totals = audit_rows(r, catalog)
    missing = [x.parameter for x in rows if (x.share or 0) >= MATERIAL and not x.sourced]
    if json_out:
        _echo_json({"rules": r.name, "hash": r.content_hash, "share_definition":
                    "elasticity |dln Y/dln p| of Y = GEP (gep.*) or net sink (carbon.*) to a +1 % one-at-a-time change",
                    "totals": totals, "material_without_source": missing,
                    "parameters": [asdict(x) | {"sourced": x.sourced} for x in rows]})
        return
    t = Table("parameter", "value", "evidence", "range", "verified", "share", "source / derivation",
              title=f"{r.name}: shares of the pilot's GEP ({totals['gep_cny'] / 1e8:.2f} 亿元) or sink "
                    f"({totals['sink_tco2e_per_yr']:,.0f} t CO2e/yr)")
    for x in sorted(rows, key=lambda x: -(x.share or 0)):
        rng = "" if x.low is None else f"{x.low:.4g}–{x.high:.4g}"
        share = "" if x.share is None else f"{x.share * 100:.1f} % {x.target}"
        src = x.source + (f" | derivation: {x.derivation}" if x.derivation else "")
        t.add_row(x.parameter, str(x.value), x.evidence or "", rng, "yes" if x.verified else "no", share, src)
    console.print(t)
    if missing:
        console.print(f"{len(missing)} parameter(s) carrying >= 1 % have neither a source nor a derivation: {', '.join(missing)}")


@rules_app.command("diff")
def rules_diff(a: str, b: str, json_out: bool = JsonOpt):
    """Parameters that differ between two rule sets."""
    from .rules import diff as rdiff
    from .rules import load_rules

    ra, rb = load_rules(a), load_rules(b)
    rows = rdiff(ra, rb)
    if json_out:
        _echo_json(rows)
        return
    t = Table("parameter", ra.name, rb.name, "unit", "change")
    for row in rows:
        t.add_row(row["parameter"], str(row[ra.name]), str(row[rb.name]), row["unit"], row["change"])
    console.print(t)


@app.command()
def explain(
    run_id: str = typer.Argument(...),
    parcel: Optional[str] = typer.Option(None, "--parcel", help="Parcel id (e.g. 510183-P00042)."),
    pixel: Optional[str] = typer.Option(None, "--pixel", help="X,Y map coordinates in the run's CRS."),
    policy: Optional[str] = typer.Option(None, "--policy", help="Id of a stored land-unit, damage or allocation result."),
    project: Optional[str] = typer.Option(None, "--project", help="With --parcel: the parcel's eligibility under this "
                                          "project's methodology (RUN_ID may then be the project id)."),
    db: Optional[str] = DbOpt,
    json_out: bool = JsonOpt,
):
    """The chain behind one number: pixels read, equations, parameters with sources, the result."""
    if project:
        return _explain_eligibility(project, parcel, db, json_out)
    from .audit import explain as do_explain
    from .audit import explain_policy
    from .store import Store

    if policy:
        d = explain_policy(Store(db), policy)
        if json_out:
            _echo_json(d)
        else:
            for line in d["chain"]:
                console.print(line, highlight=False)
        return

    xy = None
    if pixel:
        try:
            xy = tuple(float(v) for v in pixel.split(","))
            assert len(xy) == 2
        except (ValueError, AssertionError):
            raise EcoValueError(f"--pixel must be X,Y in metres, got '{pixel}'") from None
    d = do_explain(Store(db), run_id, parcel=parcel, pixel=xy)
    if json_out:
        _echo_json(d)
        return
    c = d["carbon"]
    console.print(f"[b]{d['target']}[/] in run {d['run_id']} (rules {d['rules']['name']} {d['rules']['hash'][:12]}); "
                  f"{d['pixels']} pixel(s) of {d['pixel_area_m2']:g} m², exact coverage at the edges")
    if d["inputs_changed_since_run"]:
        console.print(f"[red]inputs changed since the run: {d['inputs_changed_since_run']}[/]")
    console.print("[b]Carbon sink (stock difference)[/]")
    for t in c["terms"]:
        console.print(f"  {t['what']}: {t['equation']}")
        console.print(f"    inputs {json.dumps(t['inputs'])}")
        for p in t["parameters"]:
            console.print(f"    {p['name']} = {p['value']} {p['unit']}  [{p['source']}]{'' if p['verified'] else ' (unverified)'}")
        console.print(f"    → {t['result_tc_per_yr']:,.6f} t C/yr")
    console.print(f"  sum {c['sum_tc_per_yr']:,.6f} t C/yr × {c['co2_per_c']['value']} ({c['co2_per_c']['source']}) "
                  f"= [b]{c['net_sink_tco2e_per_yr']:,.6f} t CO2e/yr[/]; stored: {c['stored_net_sink_tco2e_per_yr']}")
    w = d["water_conservation"]
    console.print("[b]Water conservation[/]")
    for t in w["terms"]:
        console.print(f"  {t['class']}: {t['equation']} with alpha = {t['parameters'][0]['value']} → {t['result_m3']:,.3f} m3")
    console.print(f"  {w['quantity_m3']:,.3f} m3 × {w['price']['value']} CNY/m3 × CPI {w['price_index_factor']:.6f} "
                  f"= [b]{w['value_cny']:,.2f} CNY[/]; stored: {w['stored']}")
    if d.get("services_stored"):
        console.print("[b]All services stored for this parcel[/]")
        for k, v in d["services_stored"].items():
            console.print(f"  {k}: {v['quantity']:,.3f} {v['unit']} → {v['value_cny']:,.2f} CNY")


@app.command()
def rerun(run_id: str, db: Optional[str] = DbOpt, json_out: bool = JsonOpt):
    """Recompute a stored run from its manifest; report whether every result matches bit for bit."""
    from .audit import rerun as do_rerun
    from .store import Store

    d = do_rerun(Store(db), run_id)
    if json_out:
        _echo_json(d)
    elif d["matches"]:
        console.print(f"[green]identical[/]: {d['values_compared']:,} stored values recomputed bit for bit")
    else:
        console.print(f"[red]{len(d['mismatches'])} mismatch(es)[/] (inputs changed: {d['inputs_changed_since_run']})")
        for m in d["mismatches"][:10]:
            console.print(f"  {escape(str(m))}", highlight=False)
    raise typer.Exit(0 if d["matches"] else 3)


@app.command()
def issue(
    run_id: str = typer.Argument(..., help="Run id, or with --monitoring a project id."),
    vintage: Optional[int] = typer.Option(None, "--vintage", help="Vintage year (required without --monitoring)."),
    monitoring: Optional[str] = typer.Option(None, "--monitoring", help="START..END: issue PROJECT's credits of this "
                                             "monitoring period under its methodology, one issuance per vintage."),
    verification_body: str = typer.Option("", "--verification-body", help="With --monitoring: verification body."),
    verification_approach: str = typer.Option("", "--verification-approach", help="With --monitoring: how it was verified."),
    verification_date: str = typer.Option("", "--verification-date", help="With --monitoring: verification report date; "
                                          "without body, approach and date the units are pending."),
    parcels: Optional[str] = typer.Option(None, "--parcels", help="Comma-separated parcel ids (default: every eligible parcel)."),
    project: str = typer.Option("FC1", "--project", help="Project id (letters and digits; part of the serial)."),
    include_declared: bool = typer.Option(False, "--include-declared", help="Also issue parcels declared in another programme."),
    head_file: Optional[Path] = HeadFileOpt,
    db: Optional[str] = DbOpt,
    json_out: bool = JsonOpt,
):
    """Issue whole-tonne carbon-sink credits of a run's eligible parcels, with serial blocks."""
    from .exchange.registry import issue as do_issue
    from .store import Store

    if monitoring:
        return _issue_project(run_id, monitoring, vintage, verification_body, verification_approach, verification_date,
                              head_file, db, json_out)
    if vintage is None:
        raise EcoValueError("give --vintage YEAR (credits of a run), or --monitoring START..END (credits of a project)")
    plist = [p.strip() for p in parcels.split(",") if p.strip()] if parcels else None
    d = do_issue(Store(db), run_id, vintage, plist, project, include_declared)
    _anchor_head(d["head"], head_file, json_out)
    if json_out:
        _echo_json(d)
        return
    console.print(f"issuance {d['issuance_id']}: {d['net_issued_tco2e']:,} t CO2e issued to {d['parcels']} parcels, "
                  f"{d['buffer_tco2e']:,} t to the buffer")
    console.print(f"  gross {d['gross_removals_tco2e']:,.2f}; baseline {d['baseline_tco2e']:,.2f}; leakage {d['leakage_tco2e']:,.2f}; "
                  f"uncertainty {d['uncertainty_deduction_tco2e']:,.2f}; remainder kept {d['remainder_tco2e']:,.2f}")
    if d["skipped"]["declared_elsewhere"]:
        console.print(f"[yellow]{d['skipped']['declared_elsewhere']} parcel(s) declared in another programme were not issued "
                      "(--include-declared to override)[/]")
    for blk in d["serial_blocks"][:10]:
        console.print(f"  {blk['serial']}  {blk['count']:>8,}  {blk['status']:<8} {blk['holder_id']}")
    if len(d["serial_blocks"]) > 10:
        console.print(f"  … {len(d['serial_blocks']) - 10} more blocks")
    console.print(f"audit chain head {d['head']} (keep it outside the database: `audit log --expect-head`)", markup=False, soft_wrap=True)


@app.command()
def export(
    issuance_id: str = typer.Argument(...),
    out: Path = typer.Option(..., "--out", help="Bundle folder to write."),
    db: Optional[str] = DbOpt,
    overwrite: bool = OverwriteOpt,
    json_out: bool = JsonOpt,
):
    """Export an issuance as a signed bundle (records CSV + JSONL, schemas, manifest, signature)."""
    from .exchange.bundle import export_bundle
    from .store import Store

    d = export_bundle(Store(db), issuance_id, out, overwrite=overwrite)
    if json_out:
        _echo_json(d)
    else:
        console.print(f"wrote {d['bundle']}: {d['record_counts']}")


@app.command()
def verify(
    bundle: Path = typer.Argument(...),
    public_key: Optional[Path] = typer.Option(None, "--public-key", help="Trusted issuer public key (hex) file."),
    holdings: Optional[Path] = typer.Option(None, "--holdings", help="JSON Lines of blocks the importer already holds."),
    json_out: bool = JsonOpt,
):
    """Verify a bundle offline: signature, hashes, schemas, serials, vintages, totals (exit 2 with every problem)."""
    from .exchange.verify import verify_files

    probs = verify_files(bundle, public_key, holdings)
    if json_out:
        _echo_json({"ok": not probs, "problems": [p._asdict() for p in probs]})
    else:
        shown: dict[str, int] = {}
        for p in probs:
            shown[p.check] = shown.get(p.check, 0) + 1
            if shown[p.check] <= 10:
                err.print(f"FAIL [{p.check}] {p.path}: {p.message}", highlight=False, markup=False, soft_wrap=True)
        for c, n in shown.items():
            if n > 10:
                err.print(f"… and {n - 10} more [{c}] problem(s)", highlight=False, markup=False)
        if not probs:
            console.print("[green]OK[/]: signature, hashes, schemas, serials, vintages and totals hold")
    raise typer.Exit(0 if not probs else 2)


@app.command("apply-status")
def apply_status_cmd(
    file: Path = typer.Argument(..., help="CSV or JSON(L) of changes: first,last,status[,holder_id,beneficiary,reason,actor]."),
    head_file: Optional[Path] = HeadFileOpt,
    db: Optional[str] = DbOpt,
    json_out: bool = JsonOpt,
):
    """Apply transfers and retirements sent back by the exchange (all or nothing; every bad row is listed)."""
    from .exchange.registry import apply_status, read_status_file
    from .store import Store

    changes = read_status_file(file)
    d = apply_status(Store(db), changes, source=str(file))
    _anchor_head(d["head"], head_file, json_out)
    if json_out:
        _echo_json(d)
    else:
        console.print(f"applied {d['applied']} change(s)")
        console.print(f"audit chain head {d['head']}", markup=False, soft_wrap=True)


@audit_app.command("log")
def audit_log_cmd(
    expect_head: Optional[str] = typer.Option(None, "--expect-head", help="A chain head remembered earlier (printed by issue/apply-status); fail if it is no longer in the chain."),
    head_file: Optional[Path] = typer.Option(None, "--head-file", help="File holding a remembered head (written by --head-file of issue/apply-status)."),
    db: Optional[str] = DbOpt,
    json_out: bool = JsonOpt,
):
    """Check every event hash and link, that replaying the log gives the stored blocks and issuances, and the head."""
    from .exchange.registry import audit_log, check_head, read_head_file
    from .store import Store

    expected = [check_head(expect_head, "--expect-head")] if expect_head else []
    if head_file is not None:
        expected.append(read_head_file(head_file))
    store = Store(db)
    d = audit_log(store, expected[0] if expected else None)
    for h in expected[1:]:
        extra = audit_log(store, h)
        d["problems"] += [p for p in extra["problems"] if p not in d["problems"]]
        d["ok"] = d["ok"] and extra["ok"]
    if json_out:
        _echo_json(d)
    elif d["ok"]:
        console.print(f"OK: {d['events']} events chained to head {d['head']}; {d['blocks']} blocks and "
                      f"{d['issuances']} issuances match the replay", markup=False, soft_wrap=True)
    else:
        for p in d["problems"]:
            err.print(f"FAIL {p}", highlight=False, markup=False, soft_wrap=True)
    if not json_out:
        for n in d["notes"]:
            console.print(f"note: {n}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(0 if d["ok"] else 1)


@keys_app.command("generate")
def keys_generate(force: bool = typer.Option(False, "--force")):
    """Create the issuer's Ed25519 key pair (private key kept in the user config folder, mode 0600)."""
    from .exchange.keys import generate, public_key_hex

    p = generate(force)
    console.print(f"private key: {p}\npublic key: {public_key_hex()}")


@keys_app.command("export")
def keys_export(out: Path = typer.Option(..., "--out", help="File to write the public key (hex) to, for the exchange."),
                overwrite: bool = OverwriteOpt):
    """Write the issuer's public key for the exchange."""
    from .exchange.keys import KEY_NAME, key_dir, public_key_hex
    from .safe_write import safe_output

    text = public_key_hex() + "\n"
    with safe_output(out, "file", overwrite, [(key_dir() / KEY_NAME, "the signing key")]).staging() as tmp:
        tmp.write_text(text, encoding="ascii")
    console.print(f"wrote {out}")


@app.command("value-unit")
def value_unit_cmd(
    run_id: str = typer.Argument(...),
    polygon: Path = typer.Option(..., "--polygon", help="GeoPackage, GeoJSON or Shapefile (any CRS); features are merged."),
    layer: Optional[str] = typer.Option(None, "--layer"),
    years: Optional[int] = typer.Option(None, "--years", help="Project period for the present value."),
    discount_rate: Optional[float] = typer.Option(None, "--discount-rate", help="e.g. 0.045"),
    db: Optional[str] = DbOpt,
    json_out: bool = JsonOpt,
):
    """Value of a specific land unit: GEP by service, carbon, market/public split, present value."""
    from .policy import value_unit
    from .store import Store

    d = value_unit(Store(db), run_id, polygon, layer, years, discount_rate)
    if json_out:
        _echo_json(d)
        return
    console.print(f"land unit of {d['area_ha']:,.1f} ha: GEP {d['gep_total_cny'] / 1e4:,.1f} 万元/yr "
                  f"(market-realisable {d['market_realisable_cny'] / 1e4:,.1f}, public good {d['public_good_cny'] / 1e4:,.1f})")
    console.print(f"carbon stock {d['carbon']['stock_tc']:,.0f} t C; net sink {d['carbon']['net_sink_tco2e_per_yr']:,.1f} t CO2e/yr")
    if "present_value_cny" in d:
        console.print(f"present value over {d['years']} years at {d['discount_rate']:.1%}: {d['present_value_cny'] / 1e4:,.1f} 万元")
    t = Table("service", "quantity", "unit", "value (万元/yr)")
    for k, v in sorted(d["by_service"].items(), key=lambda kv: -kv[1]["value_cny"]):
        t.add_row(k, f"{v['quantity']:,.1f}", v["unit"], f"{v['value_cny'] / 1e4:,.2f}")
    console.print(t)


@app.command()
def damage(
    run_id: str = typer.Argument(...),
    after_lulc: Path = typer.Option(..., "--after-lulc", help="Land cover after the damage, on the run's grid."),
    polygon: Path = typer.Option(..., "--polygon", help="Damaged area (any vector format and CRS)."),
    layer: Optional[str] = typer.Option(None, "--layer"),
    recovery_years: int = typer.Option(10, "--recovery-years"),
    discount_rate: Optional[float] = typer.Option(None, "--discount-rate", help="Default from the rule set."),
    db: Optional[str] = DbOpt,
    json_out: bool = JsonOpt,
):
    """Price ecological damage: yearly GEP lost, carbon stock lost, compensation over recovery."""
    from .policy import damage as do_damage
    from .store import Store

    d = do_damage(Store(db), run_id, after_lulc, polygon, layer, recovery_years, discount_rate)
    if json_out:
        _echo_json(d)
        return
    console.print(f"damaged area {d['area_ha']:,.1f} ha: GEP lost {d['yearly_gep_loss_cny'] / 1e4:,.2f} 万元/yr; "
                  f"carbon stock lost {d['carbon_stock_lost_tco2e']:,.1f} t CO2e ({d['carbon_stock_lost_value_cny'] / 1e4:,.2f} 万元)")
    console.print(f"compensation {d['compensation_cny'] / 1e4:,.2f} 万元 (interim losses over {d['recovery_years']} years "
                  f"at {d['discount_rate']:.1%}: {d['interim_loss_cny'] / 1e4:,.2f} 万元)")


@app.command()
def allocate(
    run_id: str = typer.Argument(...),
    total: int = typer.Option(..., "--total", help="Whole units to allocate."),
    unit: str = typer.Option(..., "--unit", help="e.g. 't standard coal' or 't CO2'."),
    by: str = typer.Option("township", "--by", help="township, parcel, or a CSV with zone_id, baseline, gep_cny."),
    rule: str = typer.Option("gep_linked", "--rule", help="Allocation rule of the rule set (gep_linked, equal_weights, gep_only)."),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="CSV zone_id, baseline (last year's use)."),
    db: Optional[str] = DbOpt,
    json_out: bool = JsonOpt,
):
    """Split an initial allocation of a right among zones by baseline use and GEP."""
    from .policy import allocate as do_allocate
    from .store import Store

    d = do_allocate(Store(db), run_id, total, unit, by, rule, baseline)
    if json_out:
        _echo_json(d)
        return
    t = Table("zone", "baseline", "GEP (万元)", "score", f"quota ({unit})", title=f"allocation {d['policy_result_id'][:8]} rule {rule}")
    for ln in d["allocation"]:
        t.add_row(ln["zone_id"], f"{ln['baseline']:,.0f}", f"{ln['gep_cny'] / 1e4:,.0f}", f"{ln['score']:.4f}", f"{ln['quota']:,}")
    t.add_row("total", "", "", "", f"{sum(x['quota'] for x in d['allocation']):,}")
    console.print(t)


@app.command()
def methods(rules: str = typer.Option("cn2011-mee2020", "--rules"), out: Optional[Path] = typer.Option(None, "--out"),
            overwrite: bool = OverwriteOpt):
    """Render the method document (equations + parameter table) from a rule set, as Markdown."""
    from .outputs.methods import render_methods
    from .rules import load_rules
    from .safe_write import safe_output

    target = safe_output(out, "file", overwrite) if out else None
    text = render_methods(load_rules(rules))
    if target:
        with target.staging() as tmp:
            tmp.write_text(text, encoding="utf-8")
        console.print(f"wrote {out}")
    else:
        sys.stdout.write(text)


@app.command()
def serve(
    db: Optional[str] = DbOpt,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback only unless --public)."),
    port: int = typer.Option(8700, "--port"),
    public: bool = typer.Option(False, "--public", help="Allow a non-loopback --host (serve the network; cookies then need HTTPS)."),
    users: Optional[Path] = typer.Option(None, "--users", help="Users file (default: web_users.json in the user config folder)."),
    trusted_key: Optional[Path] = typer.Option(None, "--trusted-key", help="Issuer public key (hex) the bundle verifier trusts."),
    max_upload_mb: int = typer.Option(64, "--max-upload-mb", help="Largest upload accepted."),
    catalogs: Optional[Path] = typer.Option(None, "--catalogs", help="Folder whose catalogs (catalog.toml) the console may run; "
                                            "no other path can be run from the browser."),
    add_user: Optional[str] = typer.Option(None, "--add-user", help="Add (or reset) a user and exit; the password is asked for."),
    role: str = typer.Option("viewer", "--role", help="Role of --add-user: viewer, bureau or operator."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read --add-user's password from standard input."),
):
    """Local web console: runs, map with explain chains, land-unit values, bundle verification, status files."""
    from .web.app import WebConfig
    from .web.auth import add_user as do_add_user
    from .web.auth import default_users_file
    from .web.server import read_trusted_key
    from .web.server import serve as do_serve

    ufile = users or default_users_file()
    if add_user:
        pw = sys.stdin.readline().rstrip("\n") if password_stdin else typer.prompt("password", hide_input=True,
                                                                                   confirmation_prompt=True)
        do_add_user(ufile, add_user, role, pw)
        console.print(f"user {add_user} ({role}) saved in {ufile} (password hashed with argon2id)", markup=False)
        return
    from .store import Store

    Store(db)   # the database first: an unreachable or broken store is said before anything else
    cfg = WebConfig(db=db, users_file=ufile, trusted_key_hex=read_trusted_key(trusted_key),
                    max_upload_bytes=max_upload_mb * 1024 * 1024, catalogs_dir=catalogs)
    do_serve(cfg, host, port, public)


def _is_usage_error(exc: BaseException) -> bool:
    """click's (or typer's vendored click's) usage errors: missing argument, bad value, unknown command."""
    import click

    kinds = tuple(k for k in (click.exceptions.ClickException, getattr(typer.exceptions, "TyperException", None)) if k)
    return isinstance(exc, kinds) and hasattr(exc, "show")


# --- crediting projects (methodologies as data, eligibility per parcel, monitoring periods) ----------------
project_app = typer.Typer(no_args_is_help=True, help="Crediting projects: parcels of a run under a methodology.")
issuance_app = typer.Typer(no_args_is_help=True, help="Issuances: record a verification.")
app.add_typer(project_app, name="project")
app.add_typer(issuance_app, name="issuance")


@project_app.command("create")
def project_create(
    project_id: str = typer.Option(..., "--id", help="Project id (letters and digits; part of every serial)."),
    name: str = typer.Option(..., "--name"),
    developer: str = typer.Option(..., "--developer", help="Project developer (项目业主)."),
    methodology: str = typer.Option(..., "--methodology", help="accounting_rules/methodologies/NAME.toml, e.g. ccer-14-001-v01."),
    start: str = typer.Option(..., "--start", help="Project start date (ISO)."),
    run_id: str = typer.Option(..., "--run", help="The stored run whose parcels, land cover and removals the project uses."),
    parcels: Path = typer.Option(..., "--parcels", help="CSV: parcel_id (地块编号) and tenure_certificate (林权证号), "
                                 "forest_category (林种), planting_year (造林年份), planted_area_m2, wetland, other_programme, "
                                 "baseline_tco2e_per_yr."),
    crediting_end: Optional[str] = typer.Option(None, "--crediting-end", help="End of the crediting period (default: the "
                                                "methodology's shortest)."),
    validation_body: str = typer.Option("", "--validation-body"),
    validation_date: str = typer.Option("", "--validation-date"),
    db: Optional[str] = DbOpt,
    json_out: bool = JsonOpt,
):
    """Create a project; every parcel is judged against every eligibility rule, each a stored line with its reason."""
    from .exchange.projects import create_project
    from .store import Store

    d = create_project(Store(db), project_id=project_id, name=name, developer=developer, methodology=methodology, start=start,
                       run_id=run_id, parcel_table=parcels, crediting_end=crediting_end, validation_body=validation_body,
                       validation_date=validation_date)
    if json_out:
        _echo_json(d)
        return
    console.print(f"project {d['id']} ({d['methodology_code']}-{d['methodology_version']}, {d['start_date']}..{d['crediting_end']}): "
                  f"{d['eligible']} of {d['parcels']} parcels pass every rule", markup=False)
    for rule, n in sorted(d["refused_by_rule"].items()):
        console.print(f"  {n} parcel(s) fail {rule}", markup=False)


@project_app.command("show")
def project_show(project_id: str = typer.Argument(...), db: Optional[str] = DbOpt, json_out: bool = JsonOpt):
    """A project and how many parcels each rule refused (`explain --project ID --parcel P` for the lines)."""
    from .exchange.projects import project_summary
    from .store import Store

    d = project_summary(Store(db), project_id)
    if json_out:
        _echo_json(d)
        return
    for k in ("id", "name", "developer", "methodology", "start_date", "crediting_end", "status", "validation_body",
              "validation_date", "parcels", "eligible"):
        console.print(f"{k}: {d[k]}", markup=False)
    console.print(f"credits: {d['description']}", markup=False)
    for rule, n in sorted(d["refused_by_rule"].items()):
        console.print(f"  {n} parcel(s) fail {rule}", markup=False)


@project_app.command("package")
def project_package(
    project_id: str = typer.Argument(...),
    out: Path = typer.Option(..., "--out", help="New folder for the calculation package (CSV tables and summary.html)."),
    monitoring: Optional[str] = typer.Option(None, "--monitoring", help="START..END (ISO dates); default: the run's dates "
                                             "inside the crediting period."),
    overwrite: bool = OverwriteOpt,
    db: Optional[str] = DbOpt,
):
    """Calculation package for a CCER verifier: strata, parcels and eligibility, stocks by pool, parameters, deductions."""
    from .exchange.package import build_package, write_package
    from .exchange.projects import project_summary
    from .safe_write import run_files, safe_output, store_files
    from .store import Store

    st = Store(db)
    rid = project_summary(st, project_id)["run_id"]
    target = safe_output(out, "dir", overwrite, store_files(st) + run_files(st, rid))
    pkg = build_package(st, project_id, monitoring)
    with target.staging() as tmp:
        names = write_package(pkg, tmp)
    t = pkg.totals
    console.print(f"wrote {out}: {', '.join(names)} (project {project_id}, {pkg.methodology['code']}-{pkg.methodology['version']}, "
                  f"monitoring {pkg.monitoring[0]}..{pkg.monitoring[1]}: {t['credits_tco2e']:,} t CO2e credits, "
                  f"{t['eligible_parcels']} of {t['parcels']} parcels eligible)", markup=False)


@issuance_app.command("verify")
def issuance_verify(
    issuance_ids: list[str] = typer.Argument(..., help="Issuance ids (all vintages of a monitoring period)."),
    body: str = typer.Option(..., "--verification-body"),
    approach: str = typer.Option(..., "--verification-approach"),
    when: str = typer.Option(..., "--verification-date"),
    db: Optional[str] = DbOpt,
    json_out: bool = JsonOpt,
):
    """Record the verification of pending issuances: their units become held (and can be exported)."""
    from .exchange.credits import verify_issuances
    from .store import Store

    d = verify_issuances(Store(db), issuance_ids, body, approach, when)
    if json_out:
        _echo_json(d)
    else:
        console.print(f"verified {d['verified_issuances']} issuance(s); {d['blocks_released']} pending block(s) are now held")


def _issue_project(project_id, monitoring, vintage, body, approach, when, head_file, db, json_out) -> None:
    from .exchange.credits import issue_project
    from .store import Store

    d = issue_project(Store(db), project_id, monitoring, vintage, body, approach, when)
    _anchor_head(d["head"], head_file, json_out)
    if json_out:
        _echo_json(d)
        return
    t = d["totals"]
    console.print(f"project {d['project_id']} ({d['methodology']}), monitoring {d['monitoring']}: {t['net_issued_tco2e']:,} "
                  f"t CO2e issued, units {d['status']}", markup=False)
    console.print(f"  removals {t['gross_removals_tco2e']:,.2f}; baseline {t['baseline_tco2e']:,.2f}; leakage "
                  f"{t['leakage_tco2e']:,.2f}; uncertainty {t['uncertainty_deduction_tco2e']:,.2f}; buffer {t['buffer_tco2e']:,}; "
                  f"remainder kept {t['remainder_tco2e']:,.2f}", markup=False)
    for i in d["issuances"]:
        console.print(f"  vintage {i['vintage']}: issuance {i['issuance_id']}  {i['net_issued_tco2e']:,} t in "
                      f"{len(i['serial_blocks'])} block(s)", markup=False)
    if d["status"] == "pending":
        console.print("units are pending until the verification is recorded: `eco-value issuance verify ID… "
                      "--verification-body --verification-approach --verification-date`", markup=False)


def _explain_eligibility(project_id, parcel, db, json_out) -> None:
    from .exchange.methodology import load_methodology
    from .exchange.projects import eligibility_lines, project_summary
    from .store import Store

    store = Store(db)
    pr = project_summary(store, project_id)
    if not parcel:
        raise EcoValueError("give --parcel PARCEL_ID with --project (the parcel's eligibility lines)")
    lines = eligibility_lines(store, project_id, parcel)
    meth = load_methodology(pr["methodology"])
    d = {"project": project_id, "methodology": f"{meth.code}-{meth.version}", "credits": meth.credits, "parcel": parcel,
         "eligible": all(x["passed"] for x in lines), "lines": lines,
         "parameters": [p for p in meth.parameters() if p["name"].startswith("eligibility.")]}
    if json_out:
        _echo_json(d)
        return
    console.print(f"parcel {parcel} under {d['methodology']} (project {project_id}): "
                  f"{'ELIGIBLE' if d['eligible'] else 'REFUSED'}", markup=False)
    for x in lines:
        console.print(f"  [{'pass' if x['passed'] else 'FAIL'}] {x['rule']}: {x['reason']}", markup=False)
    for p in d["parameters"]:
        console.print(f"    {p['name']} = {p['value']} {p['unit']}  [{p['source']}]{'' if p['verified'] else ' (unverified)'}",
                      markup=False)


def main(argv: list[str] | None = None) -> None:
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    # rasterio's in-memory burn of a chunk (inputs/rasterize.py) warns "no geotransform" although the
    # window's transform is applied (the real-format path is equal to the raster path to 1e-9): not for users
    warnings.filterwarnings("ignore", category=NotGeoreferencedWarning, module="rasterio.features")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["carbon-stock"]:
        sys.exit(_run_carbon_stock(argv[1:]))
    try:
        rc = app(args=argv, prog_name="eco-value", standalone_mode=False)
        sys.exit(rc if isinstance(rc, int) else 0)
    except EcoValueError as exc:
        _print_error("error:", str(exc), _secrets(argv))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001
        import io

        import click

        from .store.db import mask_secrets

        if isinstance(exc, (click.exceptions.Abort, typer.Abort)):
            err.print("interrupted")
            sys.exit(130)
        if _is_usage_error(exc):   # click's own message (usage line, hint, error), exit 2 like any bad input
            buf = io.StringIO()
            exc.show(file=buf)
            sys.stderr.write(mask_secrets(buf.getvalue(), _secrets(argv)))
            sys.exit(EcoValueError.exit_code)
        if STATE["debug"]:
            raise
        _print_error("internal error:", f"{type(exc).__name__}: {exc}\n(run with --debug for the traceback)", _secrets(argv))
        sys.exit(1)


if __name__ == "__main__":
    main()
