"""Status changes sent back by the exchange (``apply-status``): strict reading, every bad row reported.

Accepted files: ``.csv`` (header ``first,last,status[,holder_id,beneficiary,reason,actor]``), ``.jsonl``
(one object per line) and ``.json`` (an array of objects). UTF-8 only; a leading UTF-8 byte-order mark
(as Excel writes) is ignored. Rules, the same for every format:

- ``first``/``last`` are serial positions: positive whole numbers, at most :data:`SERIAL_MAX`. In JSON they
  are integers (not booleans, decimals, exponents or strings); in CSV plain ASCII digits ``0-9`` (no
  sign, space, ``_``, separator, decimal point, or other scripts' digits such as ``١٢٣`` or ``１２３``).
- ``status`` is one of :data:`CHANGE_STATUSES`; a retirement names its ``beneficiary``, a transfer its
  new ``holder_id``; a beneficiary only goes with a retirement.
- ids and names follow :func:`eco_value.ids.id_problem` (not empty, no control characters, no leading
  formula character).
- Unknown columns or keys are refused (a misspelt ``benficiary`` must not be dropped silently).

Every problem is collected with its line number, field, value and fix; if there is any, the whole
file is refused and nothing is applied.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from ..errors import EcoValueError
from ..ids import id_problem
from .serials import SERIAL_MAX, RegistryError

CHANGE_STATUSES = ("held", "listed", "transferred", "retired", "cancelled")
REQUIRED = ("first", "last", "status")
OPTIONAL = ("holder_id", "beneficiary", "reason", "actor")
FIELDS = REQUIRED + OPTIONAL
_ASCII_DIGITS = re.compile(r"[0-9]+", re.ASCII)
BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class RowProblem:
    where: str        # "line 3", "item 2 (line 7)", "change #4"
    field: str        # a column/key, or "(file)", "(header)", "(line)"
    value: object
    problem: str
    fix: str
    order: int = 0

    def __str__(self) -> str:
        val = "" if self.value is NO_VALUE else f"{_show(self.value)} "
        return f"{self.where}, field '{self.field}': {val}{self.problem}. Fix: {self.fix}"


NO_VALUE = object()


class StatusFileError(RegistryError):
    """A status file or change list the registry refuses as a whole; ``problems`` lists every bad row."""

    def __init__(self, source: str, problems: list[RowProblem]):
        self.source = source
        self.problems = sorted(problems, key=lambda p: p.order)
        lines = [f"{source}: {len(self.problems)} problem(s); nothing was applied (fix them and send the whole file again):"]
        lines += [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class Change:
    where: str
    order: int
    first: int
    last: int
    status: str
    holder_id: str = ""
    beneficiary: str = ""
    reason: str = ""
    actor: str = ""


def _show(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    return repr(v)


def _codepoints(chars) -> str:
    return ", ".join(f"{c!r} (U+{ord(c):04X})" for c in chars)


# ------------------------------------------------------------------------------------------------ values
def _serial(raw, kind: str, where: str, field: str, order: int, probs: list[RowProblem]) -> int | None:
    def bad(problem: str, fix: str) -> None:
        probs.append(RowProblem(where, field, raw, problem, fix, order))

    example = "e.g. 1234"
    if raw is None or raw == "":
        bad("is missing", f"give the serial position as a whole number, {example}")
        return None
    if isinstance(raw, bool):
        bad("is a boolean, not a serial", f"write the serial position as a number, {example}")
        return None
    if isinstance(raw, float):
        if not math.isfinite(raw):
            bad("is not a finite number", f"write the serial position as a whole number, {example}")
        else:
            bad("is a decimal number; serials are whole numbers (a decimal would be cut, 320.9 -> 320)",
                "write the whole serial position without a decimal point or exponent")
        return None
    if isinstance(raw, str):
        if kind != "csv":
            bad("is a JSON string, not a number", "write the number without quotes")
            return None
        if not _ASCII_DIGITS.fullmatch(raw):
            odd = sorted({c for c in raw if not ("0" <= c <= "9")}, key=raw.index)
            digits = [c for c in odd if unicodedata.digit(c, None) is not None]
            hint = ""
            if all(unicodedata.digit(c, None) is not None or c in "_, " for c in raw.strip()) and raw.strip():
                hint = ", e.g. " + "".join(str(unicodedata.digit(c)) for c in raw if unicodedata.digit(c, None) is not None)
            what = ("contains non-ASCII digit(s) " + _codepoints(digits)) if digits else f"contains {_codepoints(odd)}"
            bad(f"{what}; serials are written in plain ASCII digits 0-9 only (no sign, space, '_', separator, "
                "decimal point or exponent)", f"write it with the ASCII digits 0-9 only{hint}")
            return None
        value = int(raw)
    elif isinstance(raw, int):
        value = raw
    else:
        bad(f"is a {type(raw).__name__}, not a serial position", f"write the serial position as a whole number, {example}")
        return None
    if value < 1:
        bad("is not positive; serial positions start at 1", "use the serial positions printed by `eco-value issue`")
        return None
    if value > SERIAL_MAX:
        bad(f"is beyond the largest serial position the ECV1 format holds ({SERIAL_MAX})",
            "use the serial positions printed by `eco-value issue`")
        return None
    return value


def _text(raw, kind: str, where: str, field: str, order: int, probs: list[RowProblem], *, is_id: bool) -> str:
    """An optional text field: '' when absent; an id/name must pass :func:`id_problem`."""
    if raw is None or raw == "":
        return ""
    if not isinstance(raw, str):
        probs.append(RowProblem(where, field, raw, f"is a {type(raw).__name__}, not text",
                                'write it as text (in JSON: in quotes, e.g. "H001")', order))
        return ""
    if is_id:
        why = id_problem(raw)
    else:
        ctrl = sorted({c for c in raw if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")})
        why = f"contains control character(s) {_codepoints(ctrl)}" if ctrl else None
    if why:
        probs.append(RowProblem(where, field, raw, why, "give a plain name without control characters, leading or "
                                "trailing spaces or a leading = + - @ (spreadsheets run those as formulas)", order))
        return ""
    return raw


def check_changes(rows: list[tuple[str, int, dict]], kind: str) -> tuple[list[Change], list[RowProblem]]:
    """Structural checks of raw rows (``where``, order, mapping); returns the good changes and every problem."""
    changes: list[Change] = []
    probs: list[RowProblem] = []
    for where, order, row in rows:
        if not isinstance(row, dict):
            probs.append(RowProblem(where, "(line)", row, "is not an object with first, last and status",
                                    'write one object per change, e.g. {"first": 1, "last": 5, "status": "retired", '
                                    '"beneficiary": "…"}', order))
            continue
        n0 = len(probs)
        unknown = [k for k in row if k not in FIELDS]
        for k in unknown:
            probs.append(RowProblem(where, str(k), row[k], "is not a field of a status change",
                                    f"use only {', '.join(FIELDS)} (check the spelling)", order))
        first = _serial(row.get("first"), kind, where, "first", order, probs)
        last = _serial(row.get("last"), kind, where, "last", order, probs)
        status = row.get("status")
        if status is None or status == "":
            probs.append(RowProblem(where, "status", NO_VALUE, "is missing", f"give one of {', '.join(CHANGE_STATUSES)}", order))
            status = None
        elif status not in CHANGE_STATUSES:
            probs.append(RowProblem(where, "status", status, "is not a status a change can set",
                                    f"use one of {', '.join(CHANGE_STATUSES)} (lower case, no spaces)", order))
            status = None
        holder = _text(row.get("holder_id"), kind, where, "holder_id", order, probs, is_id=True)
        ben = _text(row.get("beneficiary"), kind, where, "beneficiary", order, probs, is_id=True)
        bad_ben = any(p.field == "beneficiary" for p in probs[n0:])
        bad_holder = any(p.field == "holder_id" for p in probs[n0:])
        reason = _text(row.get("reason"), kind, where, "reason", order, probs, is_id=False)
        actor = _text(row.get("actor"), kind, where, "actor", order, probs, is_id=True)
        if first is not None and last is not None and first > last:
            probs.append(RowProblem(where, "last", last, f"is below first ({first})",
                                    "give the range as first <= last", order))
        if status == "retired" and not ben and not bad_ben:
            probs.append(RowProblem(where, "beneficiary", NO_VALUE, "is missing: a retirement must name who it is for",
                                    "add the beneficiary (the organisation or person the retirement is claimed for)", order))
        if status != "retired" and ben:
            probs.append(RowProblem(where, "beneficiary", ben, f"goes only with a retirement (this change is {status})",
                                    "remove the beneficiary, or make the change a retirement", order))
        if status == "transferred" and not holder and not bad_holder:
            probs.append(RowProblem(where, "holder_id", NO_VALUE, "is missing: a transfer must name the new holder",
                                    "add holder_id (the account the units go to)", order))
        if len(probs) == n0:
            changes.append(Change(where, order, first, last, status, holder, ben, reason, actor))
    return changes, probs


# ------------------------------------------------------------------------------------------------ files
def _decode(data: bytes, probs: list[RowProblem]) -> str | None:
    if data.startswith(BOM):
        data = data[len(BOM):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        probs.append(RowProblem(f"line {line}", "(file)", NO_VALUE,
                                f"is not UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start})",
                                "save the file as UTF-8 (Excel: 'CSV UTF-8'; or iconv -f GB18030 -t UTF-8)", line))
        return None


def _json_const(name: str) -> float:
    return float(name.replace("Infinity", "inf"))   # NaN / ±Infinity: reported as not finite


def _json_array(text: str, probs: list[RowProblem]) -> list[tuple[str, int, object]]:
    dec = json.JSONDecoder(parse_constant=_json_const)
    ws = re.compile(r"\s*")

    def line_of(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    def fail(pos: int, what: str) -> None:
        ln = line_of(pos)
        probs.append(RowProblem(f"line {ln}", "(file)", NO_VALUE, what,
                                'write a JSON array of change objects, e.g. [{"first": 1, "last": 5, "status": "listed"}]', ln))

    i = ws.match(text, 0).end()
    if i >= len(text) or text[i] != "[":
        fail(i, "is not a JSON array")
        return []
    i = ws.match(text, i + 1).end()
    items: list[tuple[str, int, object]] = []
    if i < len(text) and text[i] == "]":
        i += 1
    else:
        while True:
            try:
                obj, end = dec.raw_decode(text, i)
            except json.JSONDecodeError as e:
                fail(e.pos, f"is not valid JSON ({e.msg})")
                return items
            ln = line_of(i)
            items.append((f"item {len(items) + 1} (line {ln})", ln, obj))
            i = ws.match(text, end).end()
            if i < len(text) and text[i] == ",":
                i = ws.match(text, i + 1).end()
                continue
            if i < len(text) and text[i] == "]":
                i += 1
                break
            fail(i, "expected ',' or ']' after an item")
            return items
    if ws.match(text, i).end() != len(text):
        fail(i, "has text after the closing ']'")
    return items


def _jsonl(text: str, probs: list[RowProblem]) -> list[tuple[str, int, object]]:
    items = []
    for ln, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            items.append((f"line {ln}", ln, json.loads(line, parse_constant=_json_const)))
        except json.JSONDecodeError as e:
            probs.append(RowProblem(f"line {ln}", "(line)", line[:80], f"is not valid JSON ({e.msg})",
                                    "write one JSON object per line", ln))
    return items


def _csv(text: str, probs: list[RowProblem]) -> list[tuple[str, int, object]]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return []
    except csv.Error as e:
        probs.append(RowProblem("line 1", "(header)", NO_VALUE, f"is not valid CSV ({e})", "fix the header row", 1))
        return []
    fix = f"the header must be {','.join(REQUIRED)} plus any of {','.join(OPTIONAL)}"
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        probs.append(RowProblem("line 1", "(header)", dup, "repeats column(s)", fix, 1))
    unknown = [h for h in header if h not in FIELDS]
    if unknown:
        probs.append(RowProblem("line 1", "(header)", unknown, "has unknown column(s) (misspelt?)", fix, 1))
    missing = [h for h in REQUIRED if h not in header]
    if missing:
        probs.append(RowProblem("line 1", "(header)", missing, "lacks required column(s)", fix, 1))
    if dup or unknown or missing:
        return []
    items = []
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            probs.append(RowProblem(f"line {start}", "(line)", NO_VALUE, f"is not valid CSV ({e})",
                                    "check the quotes on this line", start))
            break
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(header):
            probs.append(RowProblem(f"line {start}", "(line)", row, f"has {len(row)} cells, the header {len(header)}",
                                    "give one cell per column (quote cells that contain commas)", start))
            continue
        items.append((f"line {start}", start, dict(zip(header, row))))
    return items


def read_status_file(path: str | Path) -> list[Change]:
    """Read and check a whole status file; raise :class:`StatusFileError` listing every problem."""
    p = Path(path)
    if not p.is_file():
        raise EcoValueError(f"{p}: the status file does not exist (or is not a regular file); give the CSV, "
                            "JSON or JSON Lines file of changes from the exchange")
    kinds = {".csv": "csv", ".jsonl": "jsonl", ".json": "json"}
    kind = kinds.get(p.suffix.lower())
    if kind is None:
        raise EcoValueError(f"{p}: unknown status file type '{p.suffix}'; name it .csv, .json or .jsonl after its content")
    probs: list[RowProblem] = []
    text = _decode(p.read_bytes(), probs)
    items = [] if text is None else {"csv": _csv, "jsonl": _jsonl, "json": _json_array}[kind](text, probs)
    changes, row_probs = check_changes(items, "csv" if kind == "csv" else "json")
    probs += row_probs
    if not probs and not changes:
        probs.append(RowProblem("line 1", "(file)", NO_VALUE, "holds no changes", "send a file with at least one change", 0))
    if probs:
        raise StatusFileError(str(p), probs)
    return changes
