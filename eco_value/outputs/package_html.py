"""Self-contained HTML summary of a calculation package (``eco_value.exchange.package``): the methodology and
what it credits, totals, and one table per CSV, with Chinese labels beside the English ones."""

from __future__ import annotations

import jinja2

TABLE_TITLES = {
    "strata.csv": ("Strata", "分层"),
    "parcels.csv": ("Parcels: area, tenure and eligibility", "地块面积、权属与合格性"),
    "stocks.csv": ("Carbon stocks by pool at each monitoring date", "各监测日期分碳库碳储量"),
    "parameters.csv": ("Parameters: value, unit, source, verified, uncertainty", "参数：数值、单位、来源、是否核实、不确定性"),
    "deductions.csv": ("Deductions from removals to credits, per vintage", "按年份从碳汇量到减排量的扣减"),
}
TOTAL_LABELS = {
    "removals_tco2e": ("removals", "项目碳汇量"), "baseline_tco2e": ("baseline", "基线碳汇量"),
    "leakage_tco2e": ("leakage", "泄漏"), "uncertainty_deduction_tco2e": ("uncertainty deduction", "不确定性扣减"),
    "buffer_tco2e": ("buffer", "缓冲库"), "credits_tco2e": ("credits", "减排量"), "remainder_tco2e": ("remainder kept", "留存余量"),
    "parcels": ("parcels", "地块数"), "eligible_parcels": ("eligible parcels", "合格地块数"),
    "refused_parcels": ("refused parcels", "不合格地块数"), "area_ha": ("area, ha", "面积（公顷）"),
    "eligible_parcels_area_ha": ("area of eligible parcels, ha", "合格地块面积（公顷）"),
    "credited_area_ha": ("credited land (the land-use change the methodology credits), ha", "计入土地面积（公顷）"),
    "removals_from_stock_change_tco2e": ("removals from the stock change of the credited land (check)", "按计入土地碳储量变化核算的碳汇量（校核）"),
}

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Calculation package 计算包 — {{ p.project.id }} ({{ m.code }}-{{ m.version }})</title>
<style>
body{font-family:system-ui,"Noto Sans CJK SC","Microsoft YaHei",sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:12px;margin:8px 0} td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top}
th{background:#f2f2f2;text-align:left} td.n{text-align:right;font-variant-numeric:tabular-nums}
.synthetic{background:#fff3cd;border:2px solid #a15c00;padding:10px;font-weight:700;margin:12px 0}
.zh{color:#555} .fail{color:#b00020;font-weight:600} .box{background:#f7f9fc;border:1px solid #d8e0ea;padding:10px}
.scroll{max-height:480px;overflow:auto}
</style></head><body>
{% if p.synthetic %}<div class="synthetic">SYNTHETIC 合成数据: the run's inputs are the synthetic pilot dataset; these figures
show the method, not real removals. 本计算包的输入为合成数据，仅演示方法，不代表真实碳汇。</div>{% endif %}
<h1>Calculation package 计算包: {{ p.project.name }} ({{ p.project.id }})</h1>
<p>Developer 项目业主: {{ p.project.developer }} · start 开始日期 {{ p.project.start_date }} · crediting period 计入期
{{ p.project.start_date }}..{{ p.project.crediting_end }} · monitoring period 监测期 {{ p.monitoring[0] }}..{{ p.monitoring[1] }}
· status 状态 {{ p.project.status }}{% if p.project.validation_body %} · validated by 审定机构 {{ p.project.validation_body }}
({{ p.project.validation_date }}){% endif %}</p>
<p>Run 核算运行 {{ p.run.id }} (inventories 清查 {{ p.run.period }}, rule set 参数集 {{ p.run.rules }}, hash {{ p.run.ruleset_hash[:12] }})</p>
<h2>Methodology 方法学</h2>
<div class="box">
<p><b>{{ m.code }}-{{ m.version }}</b> {{ m.title }} <span class="zh">{{ m.title_zh }}</span> — programme 机制: {{ m.programme }}</p>
<p><b>What it credits 计入内容:</b> {{ m.credits }}</p>
<p class="zh"><b>计入内容：</b>{{ m.credits_zh }}</p>
<p><b>Baseline 基线:</b> {{ m.baseline }}</p>
<p><b>Buffer 缓冲库:</b> {{ m.buffer }}</p>
<p>For CCER the national registry (全国温室气体自愿减排注册登记系统), not eco-value, issues the units; this package is the
calculation a verifier checks. 减排量由国家注册登记系统登记，本计算包供审定与核查机构核算。</p>
</div>
<h2>Totals 合计</h2>
<table><tr><th>item 项目</th><th>value 数值</th></tr>
{% for k, v in totals %}<tr><td>{{ k[0] }} <span class="zh">{{ k[1] }}</span></td><td class="n">{{ v }}</td></tr>
{% endfor %}</table>
<p>removals − baseline − leakage − uncertainty deduction − buffer = credits + remainder (t CO2e)
<span class="zh">项目碳汇量 − 基线 − 泄漏 − 不确定性扣减 − 缓冲库 = 减排量 + 留存余量</span></p>
{% for name, title, cols, rows in tables %}
<h2 id="{{ name }}">{{ title[0] }} <span class="zh">{{ title[1] }}</span> — {{ name }} ({{ rows|length }} rows 行)</h2>
<div class="scroll"><table><tr>{% for c in cols %}<th>{{ c }}</th>{% endfor %}</tr>
{% for r in rows %}<tr>{% for c in cols %}{% set x = r.get(c, "") %}<td{% if x is number and x is not sameas true and x is not sameas false %} class="n"{% elif x == "FAIL" %} class="fail"{% endif %}>{{ fmt(x) }}</td>{% endfor %}</tr>
{% endfor %}</table></div>
{% endfor %}
<h2>Notes 说明</h2><ul>{% for n in p.notes %}<li>{{ n }}</li>{% endfor %}</ul>
</body></html>
"""


def _fmt(x) -> str:
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:,.4f}"
    if isinstance(x, int):
        return f"{x:,}"
    return "" if x is None else str(x)


def render(pkg) -> str:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    tpl = env.from_string(_TEMPLATE)
    tables = [(name, TABLE_TITLES[name], cols, rows) for name, (cols, rows) in pkg.tables.items()]
    totals = [(TOTAL_LABELS.get(k, (k, "")), _fmt(v)) for k, v in pkg.totals.items()]
    return tpl.render(p=pkg, m=pkg.methodology, tables=tables, totals=totals, fmt=_fmt)
