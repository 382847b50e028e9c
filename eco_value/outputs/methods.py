"""Method document generated from the service specs and a rule set (never written twice by hand)."""

from __future__ import annotations

from ..carbon import __doc__ as CARBON_DOC
from ..rules import RuleSet
from ..services import SERVICES


DERIVED = {"carbon_sink": "the carbon engine's net sink (t CO2e/ha/yr; from volume, forest type and land cover "
                          "at t1 and t2 and the `carbon.*` parameters, see Forest carbon)"}


# Known dependence of a service on the grid (issue 15 item 6). Measured, not parameters: documentation.
LS_REFERENCE_CELL_M = 30.0      # the cell size the guideline's examples use (Landsat / CLCD grid)
LS_MEASURED = (
    "Measured on the synthetic Qionglai pilot (seed 7; the generator gives the same landscape at every "
    "resolution, net carbon sink 458,922 t CO2e/yr at 90 m vs 460,287 at 30 m, 0.3 %): soil conservation "
    "67.2 / 45.0 / 26.9 亿元 at 270 / 90 / 30 m. Σ LS·area over the county is 1.67 times larger at 90 m than "
    "at 30 m with slope length = cell size, and 0.97 times with a fixed 30 m slope length (the rest is the "
    "S factor of a smoother slope on a coarser DEM): the L term is the cause. The previous release "
    "reported 6.40 亿元 at 30 m and 3.76 at 10 m for the same landscape (×1.70).")


def ls_cell_size_note(cell_m: float | None = None) -> str:
    """Why soil conservation depends on the cell size, with the measured size of the effect.

    RUSLE's L = (λ / 22.13)^m with the slope length λ taken as one cell (the MEE 2020 guideline's
    pixel formulation), m = 0.5 on slopes ≥ 5 %: L, and so the quantity and value of soil conservation,
    grow as cell^0.5 — ×√3 = 1.73 for a 3× coarser grid. A flow-length L (Desmet & Govers 1996; the
    upslope-contributing-area L of InVEST SDR) would remove this; until the engine has one, values are
    comparable only between runs on the same cell size.
    """
    text = ("Soil conservation depends on the grid: RUSLE's slope-length factor L = (λ/22.13)^m takes the slope "
            "length λ as one cell (MEE 2020 pixel formulation), so on slopes ≥ 5 % (m = 0.5) L grows as the square "
            "root of the cell size: ×1.73 for a 3× coarser grid. A flow-length L (Desmet & Govers 1996; InVEST SDR's "
            "upslope contributing area) is not implemented yet: compare soil conservation only between runs on "
            "the same cell size. " + LS_MEASURED)
    if cell_m:
        text += (f" This run's cell is {cell_m:g} m: on slopes ≥ 5 % its L is {(cell_m / LS_REFERENCE_CELL_M) ** 0.5:.2f} "
                 f"times that of a {LS_REFERENCE_CELL_M:g} m run.")
    return text


def render_methods(rules: RuleSet) -> str:
    lines = [f"# eco-value methods — rule set `{rules.name}`", "", rules.meta.title, "",
             f"Content hash: `{rules.content_hash}`", "", "## Forest carbon", "", CARBON_DOC.strip(), "",
             "## GEP services", ""]
    wanted = rules.meta.services or list(SERVICES)
    for key, mod in SERVICES.items():
        s = mod.SPEC
        status = "" if key in wanted else " (not in this rule set)"
        lines += [f"### {s.name_en} {s.name_zh}{status}", "", f"- category: {s.category}",
                  f"- equation: `{s.equation}`", f"- quantity unit: {s.quantity_unit} (per pixel; maps per km²)",
                  f"- layers: {', '.join(f'{x.key} [{x.unit}]' for x in s.layers)}",
                  f"- parameters: {', '.join(f'`{p}`' for p in s.parameters) or 'none'}"]
        if s.tables:
            lines.append(f"- tables: {', '.join(s.tables)}")
        if s.derived:
            lines.append(f"- derived: {', '.join(DERIVED.get(d, d) for d in s.derived)}")
        if key == "soil_conservation":
            lines.append(f"- grid dependence: {ls_cell_size_note()}")
        lines += [f"- source: {s.source}", ""]
    lines += ["## Parameters", "", "| parameter | value | unit | source | 95 % uncertainty | verified |", "|---|---|---|---|---|---|"]
    for k, p in sorted(rules.params.items()):
        u = ""
        if p.uncertainty is not None:
            u = f"±{p.uncertainty.ci95_pct:g} % ({p.uncertainty.dist})" if p.uncertainty.ci95_pct is not None \
                else f"{p.uncertainty.low:g}–{p.uncertainty.high:g} ({p.uncertainty.dist})"
        lines.append(f"| `{k}` | {p.value} | {p.unit} | {p.source} | {u} | {'yes' if p.verified else '**no**'} |")
    lines += ["", "## Sources", ""]
    for k, s in sorted(rules.sources.items()):
        lines.append(f"- `{k}`: {s.citation}")
    return "\n".join(lines) + "\n"
