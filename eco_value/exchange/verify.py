"""Offline verifier of eco-value export bundles, for exchange operators.

Stand-alone on purpose: it imports nothing else of eco-value (only the standard library, jsonschema
and PyNaCl), so an exchange can copy this one file and the schemas and run it. It trusts nothing in
the bundle: the signature is checked against the key the exchange already knows, records are
validated against the verifier's own schemas, and every total is recomputed from the records.

    python -m eco_value.exchange.verify BUNDLE_DIR --public-key issuer.pub [--holdings held.jsonl]

Exit 0 only when every check holds; otherwise exit 1 and one line per problem.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
import sys
from pathlib import Path

SERIAL_RE = re.compile(r"^ECV1-(\d{6})-([A-Za-z0-9]+)-(\d{4})-(\d{12})-(\d{12})-(\d{2})$")
SCHEMA_FILES = {"credit_block": "credit_block.v1.json", "issuance": "issuance.v1.json", "gep_statement": "gep_statement.v1.json"}
STATUSES = {"held", "listed", "transferred", "retired", "cancelled", "buffer"}
TOL = 1e-6
FORMAT_V1, FORMAT_V2 = "eco-value-bundle/1", "eco-value-bundle/2"
FORMATS = (FORMAT_V1, FORMAT_V2)


def own_schema_dir() -> Path:
    here = Path(__file__).resolve()
    for cand in (here.parent.parent / "_data" / "exchange_export" / "schemas",       # installed wheel
                 here.parent.parent.parent / "exchange_export" / "schemas",          # source checkout
                 here.parent / "schemas"):                                            # copied beside this file
        if cand.is_dir():
            return cand
    raise FileNotFoundError("the verifier's own schemas were not found beside it")


def _digits(s: str) -> str:
    return "".join(str(int(ch, 36)) for ch in s.upper() if ch.isalnum())


def serial_ok(serial: str) -> bool:
    m = SERIAL_RE.match(serial)
    if not m:
        return False
    body = serial.rsplit("-", 1)[0]
    return int(_digits(body) + m.group(6)) % 97 == 1


def _read_jsonl(p: Path, problems: list, code: str) -> list[dict]:
    out = []
    for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:
            problems.append((code, f"{p.name} line {i}: not JSON ({exc})"))
    return out


def verify(bundle: str | Path, public_key_hex: str | None, holdings: list[dict] | None = None) -> list[tuple[str, str]]:
    """Return the list of (code, message) problems; empty means the bundle verifies."""
    import jsonschema
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey

    b = Path(bundle)
    problems: list[tuple[str, str]] = []
    mpath, spath = b / "manifest.json", b / "manifest.sig"
    if not mpath.exists() or not spath.exists():
        return [("missing-manifest", f"{b}: manifest.json and manifest.sig are required")]
    mbytes = mpath.read_bytes()
    # 1. signature, against the key the exchange already knows
    if not public_key_hex:
        problems.append(("no-trusted-key", "no trusted issuer key given (--public-key FILE); the bundle's own key proves nothing"))
    else:
        try:
            VerifyKey(bytes.fromhex(public_key_hex.strip())).verify(mbytes, bytes.fromhex(spath.read_text().strip()))
        except (BadSignatureError, ValueError):
            problems.append(("bad-signature", "manifest.sig is not a valid signature of manifest.json by the trusted issuer key"))
    try:
        manifest = json.loads(mbytes)
    except json.JSONDecodeError as exc:
        return problems + [("bad-manifest", f"manifest.json is not JSON ({exc})")]
    fmt = manifest.get("bundle_format") if isinstance(manifest, dict) else None
    if fmt not in FORMATS:
        return problems + [("unknown-format", f"manifest.json: bundle format '{fmt}' is not one this verifier reads "
                                              f"({', '.join(FORMATS)}); get a newer verifier")]
    if fmt == FORMAT_V2:
        return problems + verify_v2(b, manifest, holdings)
    # 2. every file's hash; no unlisted files
    listed = manifest.get("files", {})
    for rel, h in sorted(listed.items()):
        p = b / rel
        if not p.exists():
            problems.append(("missing-file", f"{rel} is listed in the manifest but missing"))
        elif hashlib.sha256(p.read_bytes()).hexdigest() != h:
            problems.append(("hash-mismatch", f"{rel}: SHA-256 differs from the manifest (file changed)"))
    for p in sorted(list((b / "records").glob("*")) + list((b / "schemas").glob("*"))):
        rel = p.relative_to(b).as_posix()
        if rel not in listed:
            problems.append(("unlisted-file", f"{rel} is not listed in the manifest"))
    # 3. schemas: the verifier's own, and the bundle's must be the same version
    own = {k: json.loads((own_schema_dir() / fn).read_text(encoding="utf-8")) for k, fn in SCHEMA_FILES.items()}
    for k, fn in SCHEMA_FILES.items():
        bp = b / "schemas" / fn
        if bp.exists():
            try:
                if json.loads(bp.read_text(encoding="utf-8")) != own[k]:
                    problems.append(("schema-differs", f"schemas/{fn} differs from the verifier's {k} schema"))
            except json.JSONDecodeError:
                problems.append(("schema-differs", f"schemas/{fn} is not JSON"))
    recs: dict[str, list[dict]] = {}
    for k in SCHEMA_FILES:
        jp, cp = b / "records" / f"{k}s.jsonl", b / "records" / f"{k}s.csv"
        if not jp.exists():
            problems.append(("missing-records", f"records/{k}s.jsonl is missing"))
            recs[k] = []
            continue
        recs[k] = _read_jsonl(jp, problems, "bad-record")
        validator = jsonschema.Draft202012Validator(own[k], format_checker=jsonschema.FormatChecker())
        for i, r in enumerate(recs[k], 1):
            for err in validator.iter_errors(r):
                problems.append(("schema-invalid", f"records/{k}s.jsonl record {i}: {err.message}"))
        if cp.exists():
            with open(cp, encoding="utf-8", newline="") as f:
                rows = list(csv.DictReader(f))
            if len(rows) != len(recs[k]):
                problems.append(("csv-jsonl-differ", f"records/{k}s.csv has {len(rows)} rows, the JSON Lines file {len(recs[k])}"))
            else:
                key = "serial" if k == "credit_block" else ("issuanceId" if k == "issuance" else None)
                if key:
                    if [r[key] for r in rows] != [str(r.get(key)) for r in recs[k]]:
                        problems.append(("csv-jsonl-differ", f"records/{k}s.csv and .jsonl hold different records"))
        counted = manifest.get("record_counts", {}).get(k)
        if counted is not None and counted != len(recs[k]):
            problems.append(("record-count", f"{k}: manifest says {counted} records, records/{k}s.jsonl has {len(recs[k])} (record removed or added?)"))
    # 4. serial blocks
    blocks = recs["credit_block"]
    for r in blocks:
        s, f, l_ = r.get("serial", ""), r.get("unitBlockStart"), r.get("unitBlockEnd")
        if not isinstance(f, int) or not isinstance(l_, int):
            continue
        if f > l_:
            problems.append(("serial-range", f"{s}: start {f} > end {l_}"))
        if r.get("unitCount") != l_ - f + 1:
            problems.append(("serial-count", f"{s}: unitCount {r.get('unitCount')} != end - start + 1 = {l_ - f + 1}"))
        m = SERIAL_RE.match(s)
        if not m or not serial_ok(s):
            problems.append(("serial-check", f"{s}: check digits (ISO 7064 MOD 97-10) do not hold"))
        elif (int(m.group(4)), int(m.group(5)), int(m.group(3)), m.group(1)) != (f, l_, r.get("vintageYear"), r.get("regionAdcode")):
            problems.append(("serial-fields", f"{s}: serial does not match the record's start, end, vintage or region"))
        start, end = str(r.get("startDate", "")), str(r.get("endDate", ""))
        if start[:4].isdigit() and end[:4].isdigit() and not (int(start[:4]) <= r.get("vintageYear", 0) <= int(end[:4])):
            problems.append(("vintage", f"{s}: vintage {r.get('vintageYear')} outside the monitoring period {start}..{end}"))
        if r.get("unitStatus") == "buffer" and r.get("unitOwner") != "BUFFER-POOL":
            problems.append(("buffer-holder", f"{s}: buffer units must sit in BUFFER-POOL, not {r.get('unitOwner')}"))
    ranges = sorted((r["unitBlockStart"], r["unitBlockEnd"], r.get("serial")) for r in blocks
                    if isinstance(r.get("unitBlockStart"), int) and isinstance(r.get("unitBlockEnd"), int))
    for (f1, l1, s1), (f2, l2, s2) in zip(ranges, ranges[1:]):
        if f2 <= l1:
            problems.append(("serial-overlap", f"{s1} and {s2} overlap (duplicated serial range?)"))
    for h in holdings or []:
        for f, l_, s in ranges:
            if f <= h["unitBlockEnd"] and h["unitBlockStart"] <= l_:
                problems.append(("serial-overlap-held", f"{s} overlaps serials the importer already holds ({h['unitBlockStart']}-{h['unitBlockEnd']})"))
    # 5. totals and deductions, recomputed
    for iss in recs["issuance"]:
        iid = iss.get("issuanceId")
        mine = [r for r in blocks if r.get("issuanceId") == iid]
        units = sum(r.get("unitCount", 0) for r in mine)
        if units != iss.get("netIssued", 0) + iss.get("buffer", 0):
            problems.append(("totals", f"issuance {iid}: blocks hold {units} units, net issued + buffer = {iss.get('netIssued', 0) + iss.get('buffer', 0)}"))
        lines = iss.get("parcelLines", [])
        for fld, tot in (("gross", "grossRemovals"), ("baseline", "baseline"), ("leakage", "leakage"),
                         ("uncertainty", "uncertaintyDeduction"), ("buffer", "buffer"), ("issued", "netIssued"), ("remainder", "remainder")):
            ssum = sum(ln.get(fld, 0) for ln in lines)
            if abs(ssum - iss.get(tot, 0)) > TOL * max(1.0, abs(ssum)):
                problems.append(("deductions", f"issuance {iid}: sum of parcel {fld} {ssum} != {tot} {iss.get(tot)}"))
        for ln in lines:
            rest = ln["gross"] - ln["baseline"] - ln["leakage"] - ln["uncertainty"] - ln["buffer"] - ln["issued"] - ln["remainder"]
            if abs(rest) > TOL * max(1.0, abs(ln["gross"])):
                problems.append(("deductions", f"parcel {ln.get('parcelId')}: gross - deductions - buffer - issued - remainder = {rest}, not 0"))
            if not (0 <= ln["remainder"] < 1):
                problems.append(("deductions", f"parcel {ln.get('parcelId')}: remainder {ln['remainder']} is not a fraction of a tonne"))
    t = manifest.get("totals", {})
    by = {}
    for r in blocks:
        d = by.setdefault(str(r.get("vintageYear")), {})
        d[r.get("unitStatus")] = d.get(r.get("unitStatus"), 0) + r.get("unitCount", 0)
    if t.get("units_by_vintage_and_status") != by:
        problems.append(("manifest-totals", f"manifest totals {t.get('units_by_vintage_and_status')} differ from the records {by}"))
    return problems


# --- eco-value-bundle/2: CAD Trust records (schemas v2) ---------------------------------------------------
V2_SCHEMAS = {"unit": "unit.v2.json", "issuance": "issuance.v2.json", "project": "project.v2.json"}
V2_STATUSES = {"Held", "Retired", "Cancelled", "Buffer"}   # what eco-value exports of CAD Trust's picklist


def verify_v2(b: Path, manifest: dict, holdings: list[dict] | None) -> list[tuple[str, str]]:
    """Checks of a /2 bundle (the signature was checked by the caller); same promises as /1."""
    import jsonschema

    problems: list[tuple[str, str]] = []
    listed = manifest.get("files", {})
    for rel, h in sorted(listed.items()):
        p = b / rel
        if not p.exists():
            problems.append(("missing-file", f"{rel} is listed in the manifest but missing"))
        elif hashlib.sha256(p.read_bytes()).hexdigest() != h:
            problems.append(("hash-mismatch", f"{rel}: SHA-256 differs from the manifest (file changed)"))
    for p in sorted(list((b / "records").glob("*")) + list((b / "schemas").glob("*"))):
        if p.relative_to(b).as_posix() not in listed:
            problems.append(("unlisted-file", f"{p.relative_to(b).as_posix()} is not listed in the manifest"))
    own = {k: json.loads((own_schema_dir() / "v2" / fn).read_text(encoding="utf-8")) for k, fn in V2_SCHEMAS.items()}
    recs: dict[str, list[dict]] = {}
    for k, fn in V2_SCHEMAS.items():
        bp = b / "schemas" / fn
        try:
            if bp.exists() and json.loads(bp.read_text(encoding="utf-8")) != own[k]:
                problems.append(("schema-differs", f"schemas/{fn} differs from the verifier's {k} schema (v2)"))
        except json.JSONDecodeError:
            problems.append(("schema-differs", f"schemas/{fn} is not JSON"))
        jp, cp = b / "records" / f"{k}s.jsonl", b / "records" / f"{k}s.csv"
        if not jp.exists():
            problems.append(("missing-records", f"records/{k}s.jsonl is missing"))
            recs[k] = []
            continue
        recs[k] = [r for r in _read_jsonl(jp, problems, "bad-record") if isinstance(r, dict)]
        val = jsonschema.Draft202012Validator(own[k], format_checker=jsonschema.FormatChecker())
        for i, r in enumerate(recs[k], 1):
            for err in val.iter_errors(r):
                problems.append(("schema-invalid", f"records/{k}s.jsonl record {i}: {err.message}"))
        if cp.exists():
            with open(cp, encoding="utf-8", newline="") as f:
                rows = list(csv.DictReader(f))
            key = {"unit": "serial", "issuance": "id", "project": "projectId"}[k]
            if [r.get(key) for r in rows] != [str(r.get(key)) for r in recs[k]]:
                problems.append(("csv-jsonl-differ", f"records/{k}s.csv and .jsonl hold different records"))
        if manifest.get("record_counts", {}).get(k) != len(recs[k]):
            problems.append(("record-count", f"{k}: manifest says {manifest.get('record_counts', {}).get(k)} records, "
                                             f"records/{k}s.jsonl has {len(recs[k])} (record removed or added?)"))
    projects = {p.get("projectId") for p in recs["project"]}
    if len(recs["project"]) != 1:
        problems.append(("project", f"a /2 bundle holds exactly one project record, not {len(recs['project'])}"))
    issuances = {i.get("id"): i for i in recs["issuance"]}
    for i in recs["issuance"]:
        if i.get("warehouseProjectId") not in projects:
            problems.append(("project", f"issuance {i.get('id')}: project {i.get('warehouseProjectId')} has no project record"))
    ranges = []
    for r in recs["unit"]:
        s = str(r.get("serial", ""))
        try:
            f, l_ = int(r.get("unitBlockStart")), int(r.get("unitBlockEnd"))
        except (TypeError, ValueError):
            continue          # the schema check reported it
        ranges.append((f, l_, s))
        if f > l_:
            problems.append(("serial-range", f"{s}: start {f} > end {l_}"))
        if r.get("unitCount") != l_ - f + 1:
            problems.append(("serial-count", f"{s}: unitCount {r.get('unitCount')} != end - start + 1 = {l_ - f + 1}"))
        m = SERIAL_RE.match(s)
        if not m or not serial_ok(s):
            problems.append(("serial-check", f"{s}: check digits (ISO 7064 MOD 97-10) do not hold"))
        elif (int(m.group(4)), int(m.group(5)), int(m.group(3)), m.group(1), m.group(2)) != \
                (f, l_, r.get("vintageYear"), r.get("regionAdcode"), r.get("warehouseProjectId")):
            problems.append(("serial-fields", f"{s}: serial does not match the record's start, end, vintage, region or project"))
        iss = issuances.get(r.get("issuanceId"))
        if iss is None:
            problems.append(("issuance", f"{s}: issuance {r.get('issuanceId')} is not in the bundle"))
        else:
            if iss.get("vintageYear") != r.get("vintageYear"):
                problems.append(("vintage", f"{s}: vintage {r.get('vintageYear')} differs from its issuance's {iss.get('vintageYear')}"))
            st, en = str(iss.get("startDate", "")), str(iss.get("endDate", ""))
            if st[:4].isdigit() and en[:4].isdigit() and not (int(st[:4]) <= (r.get("vintageYear") or 0) <= int(en[:4])):
                problems.append(("vintage", f"{s}: vintage {r.get('vintageYear')} outside the monitoring period {st}..{en}"))
        if r.get("unitStatus") not in V2_STATUSES:
            problems.append(("status", f"{s}: status {r.get('unitStatus')!r} is not one eco-value exports ({sorted(V2_STATUSES)})"))
        if r.get("unitStatus") == "Buffer" and r.get("unitOwner") != "BUFFER-POOL":
            problems.append(("buffer-holder", f"{s}: buffer units must sit in BUFFER-POOL, not {r.get('unitOwner')}"))
    ranges.sort()
    for (f1, l1, s1), (f2, l2, s2) in zip(ranges, ranges[1:]):
        if f2 <= l1:
            problems.append(("serial-overlap", f"{s1} and {s2} overlap (duplicated serial range?)"))
    for h in holdings or []:
        for f, l_, s in ranges:
            if f <= int(h["unitBlockEnd"]) and int(h["unitBlockStart"]) <= l_:
                problems.append(("serial-overlap-held", f"{s} overlaps serials the importer already holds "
                                                        f"({h['unitBlockStart']}-{h['unitBlockEnd']})"))
    for iid, iss in issuances.items():
        units = sum(r.get("unitCount", 0) for r in recs["unit"] if r.get("issuanceId") == iid)
        want = (iss.get("netIssued") or 0) + (iss.get("buffer") or 0)
        if units != want:
            problems.append(("totals", f"issuance {iid}: blocks hold {units} units, net issued + buffer = {want}"))
        lines = [ln for ln in iss.get("parcelLines", []) if isinstance(ln, dict)]
        for fld, tot in (("gross", "grossRemovals"), ("baseline", "baseline"), ("leakage", "leakage"),
                         ("uncertainty", "uncertaintyDeduction"), ("buffer", "buffer"), ("issued", "netIssued"),
                         ("remainder", "remainder")):
            ssum = sum(ln.get(fld, 0) for ln in lines)
            if abs(ssum - (iss.get(tot) or 0)) > TOL * max(1.0, abs(ssum)):
                problems.append(("deductions", f"issuance {iid}: sum of parcel {fld} {ssum} != {tot} {iss.get(tot)}"))
        for ln in lines:
            try:
                rest = ln["gross"] - ln["baseline"] - ln["leakage"] - ln["uncertainty"] - ln["buffer"] - ln["issued"] - ln["remainder"]
            except (KeyError, TypeError):
                continue      # the schema check reported it
            if abs(rest) > TOL * max(1.0, abs(ln["gross"])):
                problems.append(("deductions", f"parcel {ln.get('parcelId')}: gross - deductions - buffer - issued - remainder = {rest}, not 0"))
    by: dict[str, dict] = {}
    for r in recs["unit"]:
        d = by.setdefault(str(r.get("vintageYear")), {})
        d[r.get("unitStatus")] = d.get(r.get("unitStatus"), 0) + (r.get("unitCount") or 0)
    if manifest.get("totals", {}).get("units_by_vintage_and_status") != by:
        problems.append(("manifest-totals", f"manifest totals {manifest.get('totals', {}).get('units_by_vintage_and_status')} "
                                            f"differ from the records {by}"))
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Verify an eco-value export bundle offline.")
    ap.add_argument("bundle")
    ap.add_argument("--public-key", help="file with the issuer's Ed25519 public key (hex), obtained out of band")
    ap.add_argument("--holdings", help="JSON Lines of credit blocks the importer already holds")
    a = ap.parse_args(argv)
    key = Path(a.public_key).read_text().strip() if a.public_key else None
    held = [json.loads(x) for x in Path(a.holdings).read_text().splitlines() if x.strip()] if a.holdings else None
    probs = verify(a.bundle, key, held)
    for code, msg in probs:
        print(f"FAIL [{code}] {msg}")
    print("OK: signature, hashes, schemas, serials, vintages and totals hold" if not probs else f"{len(probs)} problem(s)")
    return 0 if not probs else 1


if __name__ == "__main__":
    sys.exit(main())
