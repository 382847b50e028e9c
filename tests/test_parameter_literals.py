"""No parameter as a bare literal in the science code (issue 16): an ``ast`` scan of every numeric
literal in services/, carbon/, accounts/ and gep_uncertainty.py.

Allowed without comment: 0, 1, -1, 2 (powers, doubling), 0.5 and -0.5 (halves), and literals inside a
*named constant*: a module-level UPPER_CASE assignment that carries a comment on its line, or belongs to
a block of such assignments under a comment (``MM_PER_M = 1000.0  # unit conversion``). Everything else
is either a documented non-parameter (:data:`NOT_PARAMETERS`, with the reason) or a reported violation
its owner is to move into ``accounting_rules/`` or a named constant (:data:`REPORTED`). A new literal
fails the test; a listed one that is gone must be removed from its list.
"""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

import pytest

import eco_value

ROOT = Path(eco_value.__file__).parent
SCANNED = ("services", "carbon", "accounts", "gep_uncertainty.py")
ALLOWED = {0, 1, -1, 2, 0.5, -0.5}

# (file, enclosing function or "<module>", value): reason it is not a parameter
NOT_PARAMETERS = {
    ("services/soil_conservation.py", "c_factor", 100.0): "fraction -> percent (the C regression takes FVC in %)",
    ("services/soil_conservation.py", "c_factor", 1e-06): "floor of log10's argument (FVC <= 0 is C = 1, handled apart)",
    ("gep_uncertainty.py", "_soil_channels", 100.0): "fraction -> percent (the C regression takes FVC in %)",
    ("gep_uncertainty.py", "_soil_channels", 1e-06): "floor of log10's argument, as in services.soil_conservation.c_factor",
    ("carbon/invest.py", "build_lookup", 8): "bits per byte (dtype sizes)",
    ("carbon/invest.py", "build_lookup", 256): "number of uint8 values",
    ("carbon/invest.py", "totals_f32", 3): "array index of the fourth carbon pool",
    ("carbon/invest.py", "valuation_constant", 100): "percent -> fraction (InVEST's rates are in %)",
    ("carbon/invest.py", "carbon_block", 16): "bits of uint16 (dtype size)",
    ("carbon/uncertainty.py", "monte_carlo", 1000): "default draw count of a function argument (run option, not accounting)",
    ("carbon/uncertainty.py", "monte_carlo", 42): "default random seed of a function argument (run option)",
    ("carbon/uncertainty.py", "monte_carlo", 2.5): "bounds of the 95 % interval (percentiles)",
    ("carbon/uncertainty.py", "monte_carlo", 97.5): "bounds of the 95 % interval (percentiles)",
    ("carbon/uncertainty.py", "draw", 100.0): "percent -> fraction (ci95_pct)",
    ("carbon/uncertainty.py", "draw", 1.000001): "numerical guard: keeps sigma > 0 for a zero-width interval",
    ("carbon/uncertainty.py", "approach1_pct", 100.0): "fraction -> percent",
    ("accounts/zonal.py", "zonal_sums_by_id", 8): "fan-in of the dask tree reduction (performance, not a result)",
    ("accounts/zonal.py", "class_coverage", 256): "number of uint8 codes",
    ("gep_uncertainty.py", "gep_uncertainty", 1000): "default draw count of a function argument (run option)",
    ("gep_uncertainty.py", "gep_uncertainty", 42): "default random seed of a function argument (run option)",
    ("gep_uncertainty.py", "sensitivity", 2.5): "bounds of the 95 % interval (percentiles)",
    ("gep_uncertainty.py", "sensitivity", 97.5): "bounds of the 95 % interval (percentiles)",
    ("gep_uncertainty.py", "_ci", 2.5): "bounds of the 95 % interval (percentiles)",
    ("gep_uncertainty.py", "_ci", 97.5): "bounds of the 95 % interval (percentiles)",
    ("gep_uncertainty.py", "sobol_first_order", 4): "fewest samples for a regression index (statistics, not accounting)",
}

# genuine violations: a parameter or unit conversion written as a bare literal, each to become a
# rule-set parameter or a named, sourced constant. Issue 16's twelve are cleared (RUSLE LS coefficients
# named in services/soil_conservation.py; grid.HA_PER_KM2 and grid.M2_PER_HA); keep this empty.
REPORTED: dict[tuple[str, str, float], str] = {}


def _comment_lines(src: str) -> set[int]:
    return {t.start[0] for t in tokenize.generate_tokens(io.StringIO(src).readline) if t.type == tokenize.COMMENT}


def _is_constant_name(target) -> bool:
    if isinstance(target, ast.Name):
        return target.id.lstrip("_").isupper()
    if isinstance(target, ast.Tuple):
        return all(_is_constant_name(e) for e in target.elts)
    return False


def _named_constants(tree: ast.Module, src: str) -> set[int]:
    """ids of the nodes inside documented module-level UPPER_CASE assignments."""
    comments = _comment_lines(src)
    lines = src.splitlines()
    ok = set()
    body = tree.body
    for i, node in enumerate(body):
        if not isinstance(node, (ast.Assign, ast.AnnAssign)):
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if not all(_is_constant_name(t) for t in targets):
            continue
        documented = any(n in comments for n in range(node.lineno, node.end_lineno + 1))
        # or: a block of constant assignments (no blank line) directly under a comment
        j, line = i, node.lineno
        while not documented:
            above = line - 1
            if above >= 1 and lines[above - 1].lstrip().startswith("#"):
                documented = True
            elif j > 0 and isinstance(body[j - 1], (ast.Assign, ast.AnnAssign)) and body[j - 1].end_lineno == above \
                    and all(_is_constant_name(t) for t in (body[j - 1].targets if isinstance(body[j - 1], ast.Assign)
                                                           else [body[j - 1].target])):
                j, line = j - 1, body[j - 1].lineno
            else:
                break
        if documented:
            ok |= {id(n) for n in ast.walk(node)}
    return ok


def literals(src: str) -> list[tuple[str, float, int]]:
    """(enclosing function or "<module>", value, line) of each numeric literal that is not allowed."""
    tree = ast.parse(src)
    skip = _named_constants(tree, src)
    negated = {id(n.operand) for n in ast.walk(tree)
               if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.USub) and isinstance(n.operand, ast.Constant)}
    out = []

    def visit(node, where):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                # defaults belong to the function they configure
                visit(child, child.name if where == "<module>" else where)
                continue
            if isinstance(child, ast.Constant) and type(child.value) in (int, float) and id(child) not in skip:
                v = -child.value if id(child) in negated else child.value
                if v not in ALLOWED:
                    out.append((where, v, child.lineno))
            visit(child, where)

    visit(tree, "<module>")
    return out


def _scanned_files():
    for s in SCANNED:
        p = ROOT / s
        yield from (sorted(p.rglob("*.py")) if p.is_dir() else [p])


def scan() -> dict[tuple[str, str, float], list[int]]:
    found: dict = {}
    for f in _scanned_files():
        rel = f.relative_to(ROOT).as_posix()
        for where, v, line in literals(f.read_text(encoding="utf-8")):
            found.setdefault((rel, where, v), []).append(line)
    return found


def test_no_new_parameter_literals_in_science_code():
    found = scan()
    listed = set(NOT_PARAMETERS) | set(REPORTED)
    new = {k: v for k, v in found.items() if k not in listed}
    assert not new, "numeric literals that look like parameters (move them to accounting_rules/ or a named, " \
                     "commented constant):\n" + "\n".join(f"  {f}:{lines} in {w}: {v!r}" for (f, w, v), lines in sorted(
                         new.items(), key=str))
    gone = listed - set(found)
    assert not gone, f"listed literals no longer in the code: remove them from the lists: {sorted(gone, key=str)}"


def test_lists_do_not_overlap_and_give_reasons():
    assert not set(NOT_PARAMETERS) & set(REPORTED)
    assert all(len(r) > 10 for r in [*NOT_PARAMETERS.values(), *REPORTED.values()])


PLANTED = '''
MM_PER_M = 1000.0      # unit conversion
# RUSLE constants of the published equation
UNIT_PLOT_LENGTH_M = 22.13
SLOPE_BREAK_TAN = 0.09

UNDOCUMENTED = 0.307

def water(p, et, a=0.35):
    half = 0.5 * p ** 2 - 1 + x[-1]
    return (p - p * a - et) * 0.81 / MM_PER_M - -6.1107
'''


def test_scan_catches_planted_literals():
    hits = {(w, v) for w, v, _ in literals(PLANTED)}
    # caught: an undocumented module constant, a default, a factor in an expression, a negated literal
    assert hits == {("<module>", 0.307), ("water", 0.35), ("water", 0.81), ("water", -6.1107)}, hits


def test_scan_catches_a_literal_planted_in_a_real_service(monkeypatch):
    f = ROOT / "services" / "water_conservation.py"
    src = f.read_text(encoding="utf-8")
    assert "/ MM_PER_M" in src
    planted = src.replace("/ MM_PER_M", "/ MM_PER_M * 0.95", 1)
    assert ("water_conservation_m3", 0.95) in {(w, v) for w, v, _ in literals(planted)}
    assert not literals(src)


@pytest.mark.parametrize("word", ["0.307", "1.634", "44 / 12", "6.1107", "68.15"])
def test_the_old_word_list_numbers_are_caught(word):
    """The numbers the old word-list scan looked for are caught as literals (and no longer needed as words)."""
    assert literals(f"def f(x):\n    return x * {word}\n")
