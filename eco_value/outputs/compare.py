"""Scenario comparison of two stored runs (``eco-value compare RUN_A RUN_B``): B − A.

- a table by service and zone (county, townships): quantity and value of A and B, the absolute
  difference B − A and the relative one (B − A) / A (``None`` where A is 0 and B is not);
- difference maps B − A (COGs, ``diff_<map>.tif``) of every map both runs wrote, read from their
  results folders (``summary.outputs.rasters``);
- a small self-contained HTML page (``compare.html``) with both.

Runs on different regions or grids are refused: a pixel difference between two grids means nothing.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

import numpy as np

from ..errors import EcoValueError
from . import COG_OPTIONS

NODATA = -9999.0
ZONE_KINDS = ("county", "township")


class CompareError(EcoValueError):
    """The two runs cannot be compared (not complete, different region or grid)."""


def _rel(a: float, b: float) -> float | None:
    if a == 0:
        return 0.0 if b == 0 else None
    return (b - a) / abs(a)


def _folder(summary: dict) -> Path | None:
    p = summary.get("outputs", {}).get("rasters")
    return Path(p) if p and Path(p).is_dir() else None


def _grid_of(path: Path) -> tuple:
    import rasterio

    with rasterio.open(path) as src:
        return (src.crs.to_string() if src.crs else "", tuple(round(x, 9) for x in src.transform)[:6], src.width, src.height)


def shared_maps(fa: Path | None, fb: Path | None) -> list[str]:
    """Names (without .tif) of the maps both results folders hold."""
    if fa is None or fb is None:
        return []
    return sorted({p.stem for p in fa.glob("*.tif")} & {p.stem for p in fb.glob("*.tif")})


def compare_runs(store, a: str, b: str) -> dict:
    """The comparison as a JSON-ready dict (tables; map names; no files written)."""
    ra, rb = store.run(a), store.run(b)
    for r in (ra, rb):
        if r.status != "complete":
            raise CompareError(f"run {r.id} is {r.status}; compare needs two complete runs")
    sa, sb = json.loads(ra.summary_json or "{}"), json.loads(rb.summary_json or "{}")
    if (ra.region, ra.adcode) != (rb.region, rb.adcode):
        raise CompareError(f"run {ra.id[:8]} is of region '{ra.region}' ({ra.adcode}) and run {rb.id[:8]} of "
                           f"'{rb.region}' ({rb.adcode}); compare needs two runs of the same region and grid. "
                           "Fix: compare runs of one catalog (e.g. two years or two rule sets)")
    za, zb = store.table("zones", ra.id), store.table("zones", rb.id)
    ga = dict(zip(za.kind + "/" + za.zone_id, za.geometry_sha256)) if len(za) else {}
    gb = dict(zip(zb.kind + "/" + zb.zone_id, zb.geometry_sha256)) if len(zb) else {}
    county = [k for k in ga if k.startswith("county/")]
    if [ga.get(k) for k in county] != [gb.get(k) for k in county]:
        raise CompareError(f"runs {ra.id[:8]} and {rb.id[:8]} have different county boundaries; compare needs the same "
                           "region. Fix: value both with the same boundary layer")
    fa, fb = _folder(sa), _folder(sb)
    maps = shared_maps(fa, fb)
    if maps:
        g1, g2 = _grid_of(fa / f"{maps[0]}.tif"), _grid_of(fb / f"{maps[0]}.tif")
        if g1 != g2:
            raise CompareError(f"runs {ra.id[:8]} and {rb.id[:8]} are on different grids ({g1[0]} {g1[2]}×{g1[3]} px, "
                               f"origin {g1[1][2]:.1f}, {g1[1][5]:.1f}, cell {g1[1][0]:g} vs {g2[0]} {g2[2]}×{g2[3]} px, "
                               f"origin {g2[1][2]:.1f}, {g2[1][5]:.1f}, cell {g2[1][0]:g}); compare needs one grid. "
                               "Fix: run both on the same catalog resolution and reference layer")
    rows = []
    ta, tb = store.table("services", ra.id), store.table("services", rb.id)
    for kind in ZONE_KINDS:
        da = ta[ta.zone_kind == kind] if len(ta) else ta
        db = tb[tb.zone_kind == kind] if len(tb) else tb
        ia = {(r.zone_id, r.service): r for r in da.itertuples()}
        ib = {(r.zone_id, r.service): r for r in db.itertuples()}
        for key in sorted(set(ia) | set(ib)):
            x, y = ia.get(key), ib.get(key)
            qa, qb = (float(x.quantity) if x is not None else 0.0), (float(y.quantity) if y is not None else 0.0)
            va, vb = (float(x.value_cny) if x is not None else 0.0), (float(y.value_cny) if y is not None else 0.0)
            rows.append({"zone_kind": kind, "zone_id": key[0], "service": key[1], "unit": (x or y).unit,
                         "quantity_a": qa, "quantity_b": qb, "quantity_diff": qb - qa, "quantity_rel": _rel(qa, qb),
                         "value_a_cny": va, "value_b_cny": vb, "value_diff_cny": vb - va, "value_rel": _rel(va, vb)})
    totals = {}
    for r in rows:
        t = totals.setdefault((r["zone_kind"], r["zone_id"]), [0.0, 0.0])
        t[0] += r["value_a_cny"]
        t[1] += r["value_b_cny"]
    gep = [{"zone_kind": k, "zone_id": z, "gep_a_cny": v[0], "gep_b_cny": v[1], "gep_diff_cny": v[1] - v[0],
            "gep_rel": _rel(v[0], v[1])} for (k, z), v in totals.items()]
    ca = sa.get("carbon", {}).get("net_sink_tco2e_per_yr", 0.0)
    cb = sb.get("carbon", {}).get("net_sink_tco2e_per_yr", 0.0)
    return {"a": ra.id, "b": rb.id, "region": ra.region,
            "rules": {"a": ra.ruleset_name, "b": rb.ruleset_name},
            "period": {"a": [ra.period_start, ra.period_end], "b": [rb.period_start, rb.period_end]},
            "services": rows, "gep": gep,
            "carbon_sink_tco2e_per_yr": {"a": ca, "b": cb, "diff": cb - ca, "rel": _rel(ca, cb)},
            "maps": maps, "maps_missing": fa is None or fb is None}


def write_difference_maps(store, cmp: dict, folder: Path) -> dict[str, dict]:
    """Write ``diff_<name>.tif`` (B − A, float32 COG, nodata where either run has none) for every shared map."""
    import rasterio
    from rasterio.shutil import copy as rio_copy

    fa = _folder(json.loads(store.run(cmp["a"]).summary_json))
    fb = _folder(json.loads(store.run(cmp["b"]).summary_json))
    stats = {}
    for name in cmp["maps"]:
        with rasterio.open(fa / f"{name}.tif") as A, rasterio.open(fb / f"{name}.tif") as B:
            a, b = A.read(1, masked=True), B.read(1, masked=True)
            profile = A.profile
            units = A.tags().get("units", "")
        d = (b.astype("float64") - a.astype("float64"))
        arr = np.ma.filled(d, NODATA).astype("float32")
        tmp = folder / f".diff_{name}.gtiff"
        profile.update(driver="GTiff", dtype="float32", nodata=NODATA, count=1, tiled=True, blockxsize=512, blockysize=512,
                       compress=None)
        profile.pop("interleave", None)
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(arr, 1)
            dst.update_tags(layer=f"diff_{name}", units=units, run_a=cmp["a"], run_b=cmp["b"], note="run B minus run A")
        out = folder / f"diff_{name}.tif"
        rio_copy(tmp, out, **COG_OPTIONS)
        os.remove(tmp)
        valid = d.compressed()
        stats[name] = {"path": str(out), "units": units, "min": float(valid.min()) if valid.size else 0.0,
                       "max": float(valid.max()) if valid.size else 0.0, "sum": float(valid.sum()) if valid.size else 0.0}
    return stats


def _fmt_rel(x) -> str:
    return "–" if x is None else f"{100 * x:+.2f} %"


def write_compare_outputs(store, cmp: dict, folder: Path, final_folder: Path | None = None) -> dict:
    """Difference maps, ``compare_services.csv``, ``compare_gep.csv`` and ``compare.html`` into ``folder``."""
    import pandas as pd

    from ..ids import csv_safe_frame
    from .report import _map

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    final = Path(final_folder) if final_folder else folder
    stats = write_difference_maps(store, cmp, folder)
    csv_safe_frame(pd.DataFrame(cmp["services"])).to_csv(folder / "compare_services.csv", index=False)
    csv_safe_frame(pd.DataFrame(cmp["gep"])).to_csv(folder / "compare_gep.csv", index=False)
    img = _map(folder / "diff_gep_cny_per_km2.tif", "GEP per km², B − A (CNY per km² per yr)", "RdBu", "CNY/km²/yr",
               True) if "gep_cny_per_km2" in cmp["maps"] else None
    county = [r for r in cmp["services"] if r["zone_kind"] == "county"]
    srows = "".join(
        f"<tr><td>{html.escape(r['service'].replace('_', ' '))}</td><td class=n>{r['quantity_a']:,.0f}</td>"
        f"<td class=n>{r['quantity_b']:,.0f}</td><td class=n>{r['quantity_diff']:+,.0f}</td><td>{html.escape(r['unit'])}</td>"
        f"<td class=n>{r['value_a_cny'] / 1e8:,.3f}</td><td class=n>{r['value_b_cny'] / 1e8:,.3f}</td>"
        f"<td class=n>{r['value_diff_cny'] / 1e8:+,.3f}</td><td class=n>{_fmt_rel(r['value_rel'])}</td></tr>" for r in county)
    trows = "".join(
        f"<tr><td>{html.escape(g['zone_id'])}</td><td class=n>{g['gep_a_cny'] / 1e8:,.3f}</td><td class=n>{g['gep_b_cny'] / 1e8:,.3f}</td>"
        f"<td class=n>{g['gep_diff_cny'] / 1e8:+,.3f}</td><td class=n>{_fmt_rel(g['gep_rel'])}</td></tr>"
        for g in sorted(cmp["gep"], key=lambda g: g["gep_diff_cny"]) if g["zone_kind"] == "township")
    mrows = "".join(f"<tr><td>diff_{html.escape(k)}.tif</td><td>{html.escape(v['units'])}</td><td class=n>{v['min']:,.4g}</td>"
                    f"<td class=n>{v['max']:,.4g}</td></tr>" for k, v in stats.items())
    c = cmp["carbon_sink_tco2e_per_yr"]
    doc = f"""<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8"><title>eco-value compare {cmp['a'][:8]} → {cmp['b'][:8]}</title>
<style>body{{font-family:"Noto Sans CJK SC","Noto Sans",system-ui,sans-serif;margin:24px;color:#1d2a22}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border-bottom:1px solid #e3e8e4;padding:4px 6px;text-align:left}} th{{background:#eef3ef}} td.n{{text-align:right;font-variant-numeric:tabular-nums}} img{{max-width:100%}}</style></head><body>
<h1>Scenario comparison: B − A</h1>
<p>A = run <code>{cmp['a']}</code> (rules {html.escape(cmp['rules']['a'])}, {cmp['period']['a'][0]}–{cmp['period']['a'][1]}) ·
B = run <code>{cmp['b']}</code> (rules {html.escape(cmp['rules']['b'])}, {cmp['period']['b'][0]}–{cmp['period']['b'][1]}) · region {html.escape(cmp['region'])}</p>
<section><h2>GEP by service (county)</h2><table><tr><th>service</th><th>quantity A</th><th>quantity B</th><th>B − A</th><th>unit</th>
<th>A 亿元</th><th>B 亿元</th><th>B − A 亿元</th><th>change</th></tr>{srows}</table>
<p>Net carbon sink: {c['a']:,.0f} → {c['b']:,.0f} t CO₂e/yr ({c['diff']:+,.0f}, {_fmt_rel(c['rel'])}).</p></section>
<section><h2>Difference map</h2>{f'<img alt="GEP difference" src="{img}">' if img else '<p>(no shared maps: a run wrote no rasters)</p>'}
<table><tr><th>map (in {html.escape(str(final))})</th><th>unit</th><th>min</th><th>max</th></tr>{mrows}</table></section>
<section><h2>GEP by township</h2><table><tr><th>township</th><th>A 亿元</th><th>B 亿元</th><th>B − A 亿元</th><th>change</th></tr>{trows}</table></section>
</body></html>"""
    (folder / "compare.html").write_text(doc, encoding="utf-8")
    return {"maps": {k: str(final / Path(v["path"]).name) for k, v in stats.items()},
            "services_csv": str(final / "compare_services.csv"), "gep_csv": str(final / "compare_gep.csv"),
            "report": str(final / "compare.html")}
