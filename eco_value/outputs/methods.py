"""Method document generated from the service specs and a rule set (never written twice by hand)."""

from __future__ import annotations

from ..carbon import __doc__ as CARBON_DOC
from ..rules import RuleSet
from ..services import SERVICES


DERIVED = {"carbon_sink": "the carbon engine's net sink (t CO2e/ha/yr; from volume, forest type and land cover "
                          "at t1 and t2 and the `carbon.*` parameters, see Forest carbon)"}


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
