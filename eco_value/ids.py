"""Identifiers and names that users give (parcel, holder, beneficiary ids): one rule on input, one on CSV output.

An id is refused on input when it is empty, has leading or trailing whitespace, contains a control
character (tab, CR, LF, NUL …), or starts with a character that spreadsheets read as a formula
(``= + - @``; OWASP "CSV injection"). Every CSV writer of ids still escapes such cells on output
(a leading ``'``, as OWASP recommends) because stored data may predate the input rule.
"""

from __future__ import annotations

import unicodedata

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
ID_FIX = "use a non-empty id of letters, digits and inner spaces/punctuation that does not start with = + - @"


def id_problem(value) -> str | None:
    """What is wrong with ``value`` as an id or a name, or None if it is acceptable."""
    if value is None or (isinstance(value, float) and value != value):
        return "is empty (missing)"
    if not isinstance(value, str):
        value = str(value)
    if not value.strip():
        return "is empty" if not value else "is only whitespace"
    if value.startswith(FORMULA_START):
        return f"starts with {value[0]!r}, which spreadsheets run as a formula"
    ctrl = sorted({f"U+{ord(c):04X}" for c in value if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")})
    if ctrl:
        return f"contains control character(s) {', '.join(ctrl)}"
    if value != value.strip():
        return "has leading or trailing whitespace"
    return None


def csv_cell(v):
    """A cell value safe to open in a spreadsheet: strings starting with a formula character get a leading '."""
    if isinstance(v, str) and v.startswith(FORMULA_START):
        return "'" + v
    return v


def csv_safe_frame(df):
    """A copy of a pandas DataFrame whose text cells are escaped with :func:`csv_cell` (numbers untouched)."""
    out = df.copy()
    for c in out.columns:
        if out[c].dtype == object or str(out[c].dtype) in ("string", "str"):
            out[c] = out[c].map(csv_cell)
    return out
