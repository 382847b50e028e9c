"""Self-contained HTML report of a stored run: maps, GEP by service, townships, uncertainty, rules, inputs."""

from __future__ import annotations

import base64
import html
import io
import json
import os
from pathlib import Path

import numpy as np

FOREST_TARGETS_PCT = {"Chengdu 2025 target": 41.0, "Chengdu 2030 target": 42.0}  # policy targets (report only)
# a map image is ~825 × 510 px (7.5 × 4.6 in at 110 dpi): rasters are read decimated to at most this many
# pixels a side (from the COG's overviews when it has them), never at full resolution (10 m: 27 Mpx a map)
MAP_MAX_PX = 1000


def _read_decimated(src, window=None):
    """Band 1 (masked) of ``window`` (default: all), read at ≤ MAP_MAX_PX a side: GDAL picks the nearest
    overview level and decimates block by block, so memory is that of the small array only."""
    from rasterio.windows import Window

    win = window if window is not None else Window(0, 0, src.width, src.height)
    h, w = int(win.height), int(win.width)
    f = max(1, -(-max(h, w) // MAP_MAX_PX))
    return src.read(1, window=win, out_shape=(max(1, h // f), max(1, w // f)), masked=True)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _map(path: Path, title: str, cmap: str, unit: str, diverging: bool = False) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import rasterio

    if not path.exists():
        return None
    with rasterio.open(path) as src:
        a = _read_decimated(src)
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    data = a.astype(np.float32).filled(np.nan)
    finite = data[np.isfinite(data)]
    if finite.size:
        lo, hi = np.percentile(finite, [2, 98])
        if diverging:
            m = max(abs(lo), abs(hi))
            lo, hi = -m, m
        im = ax.imshow(data, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
        cb = fig.colorbar(im, ax=ax, shrink=0.8)
        cb.set_label(unit)
    ax.set_title(title, fontsize=11)
    ax.set_axis_off()
    return _png(fig)


def _bar(by_service: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = sorted(by_service.items(), key=lambda kv: kv[1]["value_cny"])
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    colors = {"provisioning": "#c98b2b", "regulating": "#2b7bb9", "cultural": "#8e44ad"}
    ax.barh([k.replace("_", " ") for k, _ in items], [v["value_cny"] / 1e8 for _, v in items],
            color=[colors.get(v.get("category", ""), "#777") for _, v in items])
    ax.set_xlabel("value, 100 million CNY per year")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("GEP by service", fontsize=11)
    return _png(fig)


def _fmt(x, digits=0) -> str:
    if x is None:
        return "–"
    return f"{x:,.{digits}f}"


def _policy_map(folder: Path, geom_wkb: bytes, title: str) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import rasterio
    import shapely

    path = folder / "gep_cny_per_km2.tif"
    if not path.exists():
        return None
    g = shapely.from_wkb(geom_wkb)
    with rasterio.open(path) as src:
        minx, miny, maxx, maxy = g.bounds
        pad = max(maxx - minx, maxy - miny) * 0.6 + 3 * src.res[0]
        win = rasterio.windows.from_bounds(minx - pad, miny - pad, maxx + pad, maxy + pad, src.transform)
        win = win.round_offsets().round_lengths().intersection(rasterio.windows.Window(0, 0, src.width, src.height))
        a = _read_decimated(src, win)
        b = rasterio.windows.bounds(win, src.transform)
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    ax.imshow(a.filled(np.nan), extent=(b[0], b[2], b[1], b[3]), cmap="viridis")
    for part in shapely.get_parts(g):
        if part.geom_type == "Polygon":
            x, y = part.exterior.xy
            ax.plot(x, y, color="#e8412c", lw=2)
    ax.set_title(title, fontsize=10)
    ax.set_axis_off()
    return _png(fig)


def _policy_section(store, run_id: str, folder: Path) -> str:
    from sqlmodel import select

    from ..store.models import PolicyResult

    with store.session() as s:
        rows = s.exec(select(PolicyResult).where(PolicyResult.run_id == run_id).order_by(PolicyResult.created)).all()
    if not rows:
        return ""
    parts = []
    for r in rows:
        d = json.loads(r.result_json)
        if r.kind == "unit_value":
            img = _policy_map(folder, r.geometry_wkb, "land unit") if r.geometry_wkb else None
            pv = f"; present value {d['present_value_cny'] / 1e4:,.1f} 万元 over {d['years']} yr at {d['discount_rate']:.1%}" if "present_value_cny" in d else ""
            parts.append(f"<div class=grid><div>{'<img alt=unit src=' + chr(34) + img + chr(34) + '>' if img else ''}</div><div>"
                         f"<h3>Land unit <code>{r.id[:8]}</code></h3><p>{d['area_ha']:,.1f} ha · GEP {d['gep_total_cny'] / 1e4:,.1f} 万元/yr "
                         f"(market-realisable {d['market_realisable_cny'] / 1e4:,.1f}, public good {d['public_good_cny'] / 1e4:,.1f}){pv} · "
                         f"carbon sink {d['carbon']['net_sink_tco2e_per_yr']:,.1f} t CO₂e/yr</p></div></div>")
        elif r.kind == "damage":
            img = _policy_map(folder, r.geometry_wkb, "damaged area") if r.geometry_wkb else None
            parts.append(f"<div class=grid><div>{'<img alt=damage src=' + chr(34) + img + chr(34) + '>' if img else ''}</div><div>"
                         f"<h3>Damage <code>{r.id[:8]}</code></h3><p>{d['area_ha']:,.1f} ha · GEP lost {d['yearly_gep_loss_cny'] / 1e4:,.2f} 万元/yr · "
                         f"carbon stock lost {d['carbon_stock_lost_tco2e']:,.1f} t CO₂e · compensation <b>{d['compensation_cny'] / 1e4:,.2f} 万元</b> "
                         f"({d['recovery_years']} yr recovery at {d['discount_rate']:.1%})</p></div></div>")
        elif r.kind == "allocation":
            trs = "".join(f"<tr><td>{html.escape(x['zone_id'])}</td><td class=n>{x['baseline']:,.0f}</td><td class=n>{x['gep_cny'] / 1e4:,.0f}</td>"
                          f"<td class=n>{x['score']:.4f}</td><td class=n>{x['quota']:,}</td></tr>" for x in d["allocation"][:60])
            parts.append(f"<h3>Allocation <code>{r.id[:8]}</code>: {d['total']:,} {html.escape(d['unit'])} by {html.escape(d['by'])}, "
                         f"rule {html.escape(d['rule'])} (w_baseline {d['weights']['w_baseline']}, w_gep {d['weights']['w_gep']})</h3>"
                         f"<table><tr><th>zone</th><th>baseline</th><th>GEP 万元</th><th>score</th><th>quota</th></tr>{trs}</table>")
    return "<section><h2>Policy instruments</h2>" + "".join(parts) + "</section>"


def _ls_note(folder: Path) -> str:
    """Method note: soil conservation's dependence on the cell size (with this run's cell, if its maps exist)."""
    from .methods import ls_cell_size_note

    cell = None
    gep_map = folder / "gep_cny_per_km2.tif"
    if gep_map.exists():
        import rasterio

        with rasterio.open(gep_map) as src:
            cell = float(src.res[0])
    return f"<p class=method><b>Method note — grid size.</b> {html.escape(ls_cell_size_note(cell))}</p>"


def _missing_data(by_service: dict, services, area_km2: float) -> str:
    """A short "missing data" table: per service, the county's pixels of valid land cover without a
    result (a layer the service declares holds no data) and the townships that lack them; empty when none."""
    rows = [(k, v) for k, v in by_service.items() if v.get("nodata_px")]
    if not rows:
        return ""
    has = "nodata_px" in services.columns
    trs = []
    for k, v in sorted(rows, key=lambda kv: -kv[1]["nodata_px"]):
        t = services[(services.zone_kind == "township") & (services.service == k)] if has else services.iloc[:0]
        t = t[t.nodata_px > 0].sort_values("nodata_px", ascending=False)
        towns = ", ".join(f"{html.escape(str(z))} ({n:,.0f} px)" for z, n in zip(t.zone_id, t.nodata_px))
        share = 100 * v["nodata_ha"] / (area_km2 * 100.0) if area_km2 else 0.0
        trs.append(f"<tr><td>{html.escape(k)}</td><td class=n>{v['nodata_px']:,.0f}</td><td class=n>{v['nodata_ha']:,.1f}</td>"
                   f"<td class=n>{share:.3f} %</td><td>{towns}</td></tr>")
    return ("<section><h2>Missing data</h2><p>Pixels of valid land cover where a service has no result because a "
            "layer it reads holds no data (NaN, ±inf, the declared nodata or a fill code); they add nothing to the "
            "totals above.</p><table><tr><th>service</th><th>county px</th><th>ha</th><th>share of area</th>"
            f"<th>townships (px)</th></tr>{''.join(trs)}</table></section>")


def write_report(store, run_id: str, out: Path, rasters: Path | None = None) -> Path:
    """Write the report of ``run_id`` to ``out`` (temp file renamed into place); maps are read from
    ``rasters`` (default: the run's output folder)."""
    from .gep_uncertainty_section import section as gep_uncertainty_section

    run = store.run(run_id)
    s = json.loads(run.summary_json)
    folder = Path(rasters) if rasters is not None else Path(s.get("outputs", {}).get("rasters", out.parent))
    rules = store.rules_json(run.ruleset_hash)
    inputs = store.table("inputs", run.id)
    # the report shows townships only: read theirs, not every parcel's rows (memory flat in parcels, issue 17)
    tw = store.table("services", run.id, "township")
    carbon = store.table("carbon", run.id, "township")
    zones = store.table("zones", run.id, "township")
    c = s["carbon"]
    g = s["gep"]
    imgs = {
        "sink": _map(folder / "carbon_sink_tco2e_per_ha_yr.tif", "Net carbon sink (t CO2e per ha per yr)", "RdYlGn", "t CO2e/ha/yr", True),
        "gep": _map(folder / "gep_cny_per_km2.tif", "GEP per km² (CNY per km² per yr)", "viridis", "CNY/km²/yr"),
        "stock": _map(folder / f"carbon_stock_{s['period'][1]}_tc_per_ha.tif", f"Carbon stock {s['period'][1]} (t C per ha)",
                      "YlGn", "t C/ha"),
    }
    bar = _bar(g["by_service"])
    ls_note = _ls_note(folder) if "soil_conservation" in g["by_service"] else ""
    twp = tw[tw.zone_kind == "township"].pivot_table(index="zone_id", values="value_cny", aggfunc="sum")
    tz = zones[zones.kind == "township"].set_index("zone_id")
    tc = carbon[carbon.zone_kind == "township"].set_index("zone_id")
    gi = store.table("gep_intervals", run.id, "township")   # GEP 95 % intervals (none for runs stored before them)
    gi = gi.set_index("zone_id") if len(gi) else None
    trs = []
    for zid, r in twp.sort_values("value_cny", ascending=False).iterrows():
        area_km2 = tz.loc[zid, "area_ha"] / 100.0
        ci = (f"{gi.loc[zid, 'ci95_low_cny'] / 1e8:,.2f} – {gi.loc[zid, 'ci95_high_cny'] / 1e8:,.2f}"
              if gi is not None and zid in gi.index else "")
        trs.append(f"<tr><td>{html.escape(zid)}</td><td>{html.escape(str(tz.loc[zid, 'name']))}</td><td class=n>{area_km2:,.1f}</td>"
                   f"<td class=n>{r.value_cny / 1e8:,.2f}</td><td class=n>{ci}</td><td class=n>{r.value_cny / area_km2 / 1e4:,.0f}</td>"
                   f"<td class=n>{tc.loc[zid, 'net_sink_tco2e_per_yr']:,.0f}</td></tr>")
    srows = "".join(
        f"<tr><td>{html.escape(k.replace('_', ' '))}</td><td>{html.escape(v.get('name_zh', ''))}</td><td>{v.get('category', '')}</td>"
        f"<td class=n>{_fmt(v['quantity'])}</td><td>{html.escape(v['unit'])}</td><td class=n>{v['value_cny'] / 1e8:,.2f}</td>"
        f"<td class=n>{100 * v['value_cny'] / g['total_cny']:.1f} %</td>"
        f"<td class=n>{_fmt(100 * v['used_share'] if 'used_share' in v else None)}{' %' if 'used_share' in v else ''}</td>"
        f"<td class=n>{v['actual_value_cny'] / 1e8 if 'actual_value_cny' in v else 0:,.2f}</td></tr>"
        for k, v in sorted(g["by_service"].items(), key=lambda kv: -kv[1]["value_cny"]))
    act = g.get("actual")
    actual_note = (f"<p>Actual (used) GEP <b>{act['total_cny'] / 1e8:,.2f} 亿元</b> = {100 * act['share_of_potential']:.0f} % of potential: "
                   f"each service's supply times the share its beneficiaries use (inputs: {html.escape(', '.join(act['inputs']) or 'none')}; "
                   f"a service without its beneficiary input takes the default share {act['default_use_share']:.2f}). "
                   f"Method: {html.escape(act['method'])}.</p>") if act and act.get("share_of_potential") is not None else ""
    prows = "".join(
        f"<tr><td><code>{html.escape(k)}</code></td><td class=n>{html.escape(json.dumps(p['value']))}</td><td>{html.escape(p['unit'])}</td>"
        f"<td>{html.escape(p['source'])}{'' if p.get('verified', True) else ' <span class=warn>unverified</span>'}</td></tr>"
        for k, p in sorted(rules["params"].items()))
    irows = "".join(f"<tr><td>{html.escape(r.layer)}</td><td>{html.escape(os.path.basename(r.path))}</td>"
                    f"<td><code>{r.sha256[:16]}…</code></td><td class=n>{r.size_bytes:,}</td></tr>" for r in inputs.itertuples())
    cov = s["extent"]["forest_coverage_pct"]
    cov2 = s["extent"]["forest_and_shrub_coverage_pct"]
    target_rows = "".join(
        f"<tr><td>{k}</td><td class=n>{v:.0f} %</td><td class=n>{cov2:.1f} %</td><td>{'meets' if cov2 >= v else 'below'}</td></tr>"
        for k, v in FOREST_TARGETS_PCT.items())
    synth = ("<div class=banner>Inputs are the SYNTHETIC pilot dataset generated by eco-value: figures show how the "
             "method behaves, not the county's real accounts.</div>") if s.get("synthetic_inputs") else ""
    lo, hi = c["ci95_tco2e_per_yr"]
    img = lambda k: f'<img alt="{k} map" src="{imgs[k]}">' if imgs.get(k) else "<p>(map not written)</p>"  # noqa: E731
    doc = f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>eco-value report {html.escape(s['region'])} {s['period'][1]}</title>
<style>
body{{font-family:"Noto Sans CJK SC","Noto Sans",system-ui,sans-serif;margin:0;color:#1d2a22;background:#f6f8f5}}
header{{background:#1f5f3a;color:#fff;padding:20px 32px}} header h1{{margin:0;font-size:24px}} header p{{margin:4px 0 0;opacity:.85}}
main{{padding:16px 32px;max-width:1200px}} section{{background:#fff;border-radius:8px;padding:16px 20px;margin:14px 0;box-shadow:0 1px 3px #0002}}
.kpis{{display:flex;gap:14px;flex-wrap:wrap}} .kpi{{flex:1;min-width:200px;background:#fff;border-radius:8px;padding:14px;box-shadow:0 1px 3px #0002}}
.kpi b{{display:block;font-size:22px;color:#1f5f3a}} .kpi span{{font-size:13px;color:#555}}
table{{border-collapse:collapse;width:100%;font-size:13px}} td,th{{border-bottom:1px solid #e3e8e4;padding:4px 6px;text-align:left}}
th{{background:#eef3ef}} td.n{{text-align:right;font-variant-numeric:tabular-nums}} .grid{{display:grid;grid-template-columns:1fr 1fr;gap:12px}}
img{{max-width:100%}} .banner{{background:#fff4d6;border:1px solid #e0b84a;padding:8px 12px;border-radius:6px;margin:10px 0}}
.warn{{color:#a15c00;font-size:11px}} details summary{{cursor:pointer;font-weight:600}} code{{font-size:12px}}
</style></head><body>
<header><h1>{html.escape(s.get('name_zh') or '')} {html.escape(s['region'].title())} — GEP and forest carbon sink {s['period'][0]}–{s['period'][1]}</h1>
<p>Run <code>{run.id}</code> · rule set {html.escape(s['rules']['name'])} <code>{s['rules']['hash'][:12]}</code> · eco-value {html.escape(run.code_version)} · prices of {g['price_year']}</p></header>
<main>{synth}
<div class=kpis>
<div class=kpi><b>{g['total_cny'] / 1e8:,.1f} 亿元</b><span>GEP per year ({g['total_cny']:,.0f} CNY)</span></div>
{f"<div class=kpi><b>{g['actual_total_cny'] / 1e8:,.1f} 亿元</b><span>actual (used) GEP per year</span></div>" if g.get('actual_total_cny') is not None else ''}
<div class=kpi><b>{g['cny_per_km2'] / 1e4:,.0f} 万元/km²</b><span>GEP per km² over {s['area_km2']:,.0f} km²</span></div>
<div class=kpi><b>{c['net_sink_tco2e_per_yr']:,.0f} t CO₂e/yr</b><span>net forest carbon sink, 95 % CI {lo:,.0f} – {hi:,.0f}</span></div>
<div class=kpi><b>{cov:.1f} %</b><span>forest coverage (forest class); {cov2:.1f} % with shrubland</span></div>
</div>
<section><h2>Maps</h2><div class=grid>{img('gep')}{img('sink')}</div>{img('stock')}</section>
<section><h2>GEP by service</h2><div class=grid><div><img alt="GEP by service" src="{bar}"></div><div><table><tr><th>service</th><th>服务</th><th>type</th><th>quantity</th><th>unit</th><th>potential 亿元</th><th>share</th><th>used</th><th>actual 亿元</th></tr>{srows}
<tr><th colspan=5>total GEP</th><th class=n>{g['total_cny'] / 1e8:,.2f}</th><th class=n>100 %</th><th></th><th class=n>{_fmt(g['actual_total_cny'] / 1e8 if g.get('actual_total_cny') is not None else None, 2)}</th></tr></table>{actual_note}</div></div>{ls_note}</section>
{_missing_data(g["by_service"], tw, s["area_km2"])}
{gep_uncertainty_section(g)}
<section><h2>Carbon account</h2><table>
<tr><th>item</th><th>value</th></tr>
<tr><td>carbon stock {s['period'][0]} (t C)</td><td class=n>{c['stock_t1_tc']:,.0f}</td></tr>
<tr><td>carbon stock {s['period'][1]} (t C)</td><td class=n>{c['stock_tc']:,.0f}</td></tr>
<tr><td>net sink (t CO₂e/yr), stock-difference</td><td class=n>{c['net_sink_tco2e_per_yr']:,.0f}</td></tr>
<tr><td>95 % interval, Monte Carlo (N = {c['mc_draws']}, seed {c['mc_seed']})</td><td class=n>{lo:,.0f} – {hi:,.0f}</td></tr>
<tr><td>Approach 1 (error propagation) half-width</td><td class=n>{_fmt(c['approach1_ci95_pct'], 1)} %</td></tr>
{''.join(f"<tr><td>{k.replace('_', ' ')} (t CO₂e/yr; {c['by_lucc_area_ha'][k]:,.0f} ha)</td><td class=n>{v:,.0f}</td></tr>" for k, v in c['by_lucc_tco2e_per_yr'].items())}
<tr><td>forest remaining forest, per ha (t CO₂e/ha/yr)</td><td class=n>{c['forest_sink_tco2e_per_ha_yr']:,.2f}</td></tr>
</table></section>
<section><h2>Forest coverage against Chengdu's targets</h2><table><tr><th>policy target</th><th>forest coverage</th><th>this county (forest + shrub)</th><th></th></tr>{target_rows}</table></section>
<section><h2>Townships</h2><table><tr><th>id</th><th>name</th><th>km²</th><th>GEP 亿元</th><th>GEP 95 % interval 亿元</th><th>GEP 万元/km²</th><th>sink t CO₂e/yr</th></tr>{''.join(trs)}</table></section>
{_policy_section(store, run.id, folder)}
<section><details><summary>Rule set: every parameter with its source ({len(rules['params'])})</summary><table><tr><th>parameter</th><th>value</th><th>unit</th><th>source</th></tr>{prows}</table></details></section>
<section><details><summary>Input files (SHA-256)</summary><table><tr><th>layer</th><th>file</th><th>sha256</th><th>bytes</th></tr>{irows}</table></details></section>
</main></body></html>"""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(doc, encoding="utf-8")
    os.replace(tmp, out)
    return out
