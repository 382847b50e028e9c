"""Report section: GEP intervals by service, the ten parameters to source first, a tornado chart."""

from __future__ import annotations

import html

TOP = 10


def tornado_png(rows: list[dict], gep0: float) -> str | None:
    """Tornado chart (PNG data URI): GEP at each parameter's 2.5 % and 97.5 % bound, others nominal."""
    rows = [r for r in rows if r.get("gep_at_low") is not None]
    rows = sorted(rows, key=lambda r: -r["swing_cny"])[:TOP][::-1]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .report import _png

    fig, ax = plt.subplots(figsize=(7.5, 0.38 * len(rows) + 1.2))
    for i, r in enumerate(rows):
        lo, hi = (r["gep_at_low"] - gep0) / 1e8, (r["gep_at_high"] - gep0) / 1e8
        ax.barh(i, lo, color="#2c7fb8")
        ax.barh(i, hi, color="#d95f0e")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(range(len(rows)), [r["parameter"].removeprefix("gep.") for r in rows], fontsize=8)
    ax.set_xlabel(f"change of GEP (1e8 CNY) from {gep0 / 1e8:,.2f}; blue: parameter at its low bound, orange: high")
    ax.set_title("One-at-a-time sensitivity of GEP (95 % range of each parameter)", fontsize=10)
    return _png(fig)


def section(g: dict) -> str:
    u = g.get("uncertainty")
    if not u or not u.get("sensitivity"):
        return ""
    t = u["total"]
    srows = "".join(
        f"<tr><td>{html.escape(k)}</td><td class=n>{g['by_service'][k]['value_cny'] / 1e8:,.2f}</td>"
        f"<td class=n>{v['mean'] / 1e8:,.2f}</td><td class=n>{v['low'] / 1e8:,.2f} – {v['high'] / 1e8:,.2f}</td></tr>"
        for k, v in u["by_service"].items() if k in g["by_service"])
    prow = "".join(
        f"<tr><td class=n>{r['rank']}</td><td><code>{html.escape(r['parameter'])}</code></td><td class=n>{r['value']:.4g}</td>"
        f"<td>{r['low']:.4g} – {r['high']:.4g} ({html.escape(r['dist'])}; {html.escape(r['basis'])})</td>"
        f"<td class=n>{max(r['sobol_first_order'], 0.0):.3f}</td><td class=n>{r['oat_share']:.3f}</td></tr>"
        for r in u["sensitivity"][:TOP])
    img = tornado_png(u["sensitivity"], u["deterministic_cny"])
    fixed = ", ".join(u.get("held_fixed", [])) or "none"
    return f"""<section><h2>GEP uncertainty and sensitivity</h2>
<p>Monte Carlo over every GEP parameter (N = {u['draws']}, seed {u['seed']}), each drawn once per iteration from its
95 % range (its sources, else the default spread of its evidence class), in the same iterations as the carbon interval.
GEP {g['total_cny'] / 1e8:,.2f} 亿元; Monte Carlo mean {t['mean'] / 1e8:,.2f}, 95 % interval
<b>{t['low'] / 1e8:,.2f} – {t['high'] / 1e8:,.2f} 亿元</b>. Method: every parameter is drawn from a distribution whose
mean is the rule set's value, so the Monte Carlo mean is the point value within sampling error: a normal or lognormal
range keeps its form; a sources' minimum–maximum becomes a triangular of the same span with the value as its mean (the
sources' range with mode 3·value − low − high when the value lies in its middle third, else the span slid until the
mode is the end nearest the value); a parameter that divides (air-conditioner efficiency, fertiliser N and P content) is
drawn through its reciprocal, with mean 1/value; the two coefficients of the soil C-factor regression are drawn
together. The table's range is the 2.5–97.5 % of each parameter as drawn. Held at their values (no rule-set
parameter): {html.escape(fixed)}. The soil C factor is evaluated at each bin's mean log10 FVC.</p>
<div class=grid><div><table><tr><th>service</th><th>亿元</th><th>MC mean</th><th>95 % interval</th></tr>{srows}</table></div>
<div>{'<img alt="tornado chart" src="' + img + '">' if img else ''}</div></div>
<h3>Parameters to source first</h3><table><tr><th>#</th><th>parameter</th><th>value</th><th>95 % range</th>
<th>Sobol first-order share</th><th>one-at-a-time share</th></tr>{prow}</table></section>"""
