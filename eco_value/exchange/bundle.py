"""Export bundle of one issuance: records (CSV + JSON Lines), schemas, manifest, Ed25519 signature.

Record files are deterministic (sorted, no timestamps): re-exporting the same issuance gives
byte-identical records. The manifest lists the SHA-256 of every file and is signed with the
issuer's key (``eco-value keys generate``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import datetime, timezone
from pathlib import Path

from sqlmodel import select

from ..ids import csv_cell
from ..resources import data_dir
from ..store.models import CreditBlock, Issuance, IssuanceLine, ParcelVintage
from .keys import public_key_hex, signing_key
from .serials import format_serial

SCHEMAS = {"credit_block": "credit_block.v1.json", "issuance": "issuance.v1.json", "gep_statement": "gep_statement.v1.json"}
CORRESPONDING_ADJUSTMENT = "not required"   # domestic use; Article 6 transfers would need "committed"


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _jsonl(records: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n" for r in records).encode("utf-8")


def _csv(records: list[dict], columns: list[str]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in records:   # text cells starting with = + - @ are escaped (a leading ') so spreadsheets do not run them
        w.writerow([csv_cell(";".join(v)) if isinstance(v, list) else ("" if v is None else repr(v) if isinstance(v, float)
                    else csv_cell(v)) for v in (r.get(c) for c in columns)])
    return buf.getvalue().encode("utf-8")


def file_entries(files: dict[str, bytes]) -> dict:
    """The manifest's list of files: SHA-256 and size of each (the verifier reads no more than the size)."""
    return {"files": {rel: _sha(b) for rel, b in sorted(files.items())},
            "file_sizes": {rel: len(b) for rel, b in sorted(files.items())}}


def schema_columns(name: str) -> list[str]:
    s = json.loads((data_dir("exchange_export") / "schemas" / SCHEMAS[name]).read_text(encoding="utf-8"))
    return [k for k in s["properties"] if k != "parcelLines"]


def build_records(store, issuance_id: str) -> dict[str, list[dict]]:
    with store.session() as s:
        iss = s.get(Issuance, issuance_id)
        blocks = s.exec(select(CreditBlock).where(CreditBlock.issuance_id == issuance_id).order_by(CreditBlock.first)).all()
        lines = s.exec(select(IssuanceLine).where(IssuanceLine.issuance_id == issuance_id)).all()
        pv = {p.parcel_id: p.other_programme for p in s.exec(select(ParcelVintage).where(ParcelVintage.issuance_id == issuance_id)).all()}
    after = iss.gross_removals_tco2e - iss.baseline_tco2e - iss.leakage_tco2e
    u_share = iss.uncertainty_deduction_tco2e / after if after else 0.0
    by_parcel: dict[str, dict] = {}
    for ln in lines:
        by_parcel.setdefault(ln.parcel_id, {})[ln.kind] = ln.quantity_tco2e
    parcel_lines = [{"parcelId": p, "gross": v["gross"], "baseline": v["baseline"], "leakage": v["leakage"],
                     "uncertainty": v["uncertainty"], "buffer": int(round(v["buffer"])), "issued": int(round(v["issued"])),
                     "remainder": v["remainder"], "otherProgramme": pv.get(p, "none")} for p, v in sorted(by_parcel.items())]
    issuance = [{
        "issuanceId": iss.id, "runId": iss.run_id, "warehouseProjectId": iss.project_id, "regionAdcode": iss.region_adcode,
        "vintageYear": iss.vintage, "startDate": iss.monitoring_start, "endDate": iss.monitoring_end,
        "methodology": iss.methodology, "methodologyVersion": iss.methodology_version,
        "grossRemovals": iss.gross_removals_tco2e, "baseline": iss.baseline_tco2e, "leakage": iss.leakage_tco2e,
        "uncertaintyDeduction": iss.uncertainty_deduction_tco2e, "buffer": iss.buffer_tco2e, "remainder": iss.remainder_tco2e,
        "netIssued": iss.net_issued_tco2e, "bufferShareApplied": iss.buffer_share, "rulesetHash": iss.ruleset_hash,
        "verificationBody": iss.verification_body, "verificationDate": iss.verification_date,
        "parcelLines": parcel_lines, "schemaVersion": "issuance/v1"}]
    credit_blocks = []
    for b in blocks:
        pids = json.loads(b.parcels_json)
        others = sorted({pv.get(p, "none") for p in pids} - {"none"})
        rec = {"serial": format_serial(iss.region_adcode, iss.project_id, b.vintage, b.first, b.last),
               "unitBlockStart": b.first, "unitBlockEnd": b.last, "unitCount": b.last - b.first + 1,
               "vintageYear": b.vintage, "unitType": "removal - nature", "unitStatus": b.status, "unitOwner": b.holder_id,
               "issuanceId": iss.id, "warehouseProjectId": iss.project_id, "methodology": iss.methodology,
               "methodologyVersion": iss.methodology_version, "startDate": iss.monitoring_start, "endDate": iss.monitoring_end,
               "parcels": pids, "regionAdcode": iss.region_adcode, "rulesetHash": iss.ruleset_hash, "runId": iss.run_id,
               "correspondingAdjustmentDeclaration": CORRESPONDING_ADJUSTMENT, "bufferShareApplied": iss.buffer_share,
               "uncertaintyDeductionApplied": u_share, "otherProgrammes": others, "schemaVersion": "credit_block/v1"}
        if b.beneficiary:
            rec["beneficiary"] = b.beneficiary
        credit_blocks.append(rec)
    services = store.table("services", iss.run_id)
    zones = store.table("zones", iss.run_id)
    geo = {(r.kind, r.zone_id): r.geometry_sha256 for r in zones.itertuples()}
    run = store.run(iss.run_id)
    if services.empty:
        return {"credit_block": credit_blocks, "issuance": issuance, "gep_statement": []}
    sel = services[((services.zone_kind == "parcel") & services.zone_id.isin(list(by_parcel))) | (services.zone_kind == "county")]
    gep = [{"zoneKind": r.zone_kind, "zoneId": r.zone_id, "geometrySha256": geo[(r.zone_kind, r.zone_id)],
            "year": run.period_end, "service": r.service, "quantity": float(r.quantity), "unit": r.unit,
            "valueCny": float(r.value_cny), "priceYear": int(r.price_year), "rulesetHash": run.ruleset_hash,
            "runId": run.id, "schemaVersion": "gep_statement/v1"}
           for r in sel.sort_values(["zone_kind", "zone_id", "service"]).itertuples()]
    return {"credit_block": credit_blocks, "issuance": issuance, "gep_statement": gep}


def write_bundle_files(work: Path, recs: dict[str, list[dict]], columns, schemas: dict[str, Path]) -> dict[str, bytes]:
    """Write a bundle's records (JSON Lines + CSV), schemas and public key into ``work``; return every
    file's bytes by relative path (all of them are listed in the manifest)."""
    (work / "records").mkdir()
    (work / "schemas").mkdir()
    files: dict[str, bytes] = {}
    for name, records in recs.items():
        files[f"records/{name}s.jsonl"] = _jsonl(records)
        files[f"records/{name}s.csv"] = _csv(records, columns(name))
    for fn, path in schemas.items():
        files[f"schemas/{fn}"] = path.read_bytes()
    files["public_key"] = (public_key_hex() + "\n").encode("ascii")
    for rel, b in files.items():
        (work / rel).write_bytes(b)
    return files


def export_bundle(store, issuance_id: str, out_dir: str | Path, issuer: str = "eco-value issuer",
                  overwrite: bool = False) -> dict:
    """Write the signed bundle of ``issuance_id`` to the folder ``out_dir`` (a new folder, or an existing
    one replaced only with ``overwrite``; never the database's or the signing key's folder)."""
    from ..safe_write import safe_output, store_files
    from .keys import KEY_NAME, key_dir
    from .registry import chain_head, issuance_summary

    issuance_id = issuance_summary(store, issuance_id)["issuance_id"]
    target = safe_output(out_dir, "dir", overwrite, store_files(store) + [(key_dir() / KEY_NAME, "the signing key")])
    from .bundle_v2 import export_bundle_v2, group_of

    project, group = group_of(store, issuance_id)
    if project is not None:   # a project's monitoring period: CAD Trust records (eco-value-bundle/2)
        return export_bundle_v2(store, project, group, target, issuer)
    recs = build_records(store, issuance_id)
    out = Path(out_dir)
    with target.staging() as work:
        files = write_bundle_files(work, recs, schema_columns,
                                   {fn: data_dir("exchange_export") / "schemas" / fn for fn in SCHEMAS.values()})
        iss = recs["issuance"][0]
        run = store.run(iss["runId"])
        inputs = store.table("inputs", run.id)
        totals: dict[str, dict[str, int]] = {}
        for b in recs["credit_block"]:
            t = totals.setdefault(str(b["vintageYear"]), {})
            t[b["unitStatus"]] = t.get(b["unitStatus"], 0) + b["unitCount"]
        manifest = {
            "bundle_format": "eco-value-bundle/1",
            "bundle_id": f"{issuance_id}:{_sha(files['records/credit_blocks.jsonl'])[:16]}",
            "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
            "issuer": {"name": issuer, "public_key_ed25519_hex": public_key_hex()},
            "issuance_id": issuance_id,
            "schema_versions": {k: f"{k}/v1" for k in SCHEMAS},
            "record_counts": {k: len(v) for k, v in recs.items()},
            "totals": {"units_by_vintage_and_status": totals, "net_issued_tco2e": iss["netIssued"], "buffer_tco2e": iss["buffer"]},
            "ruleset_hash": run.ruleset_hash,
            "input_hashes": {} if inputs.empty else {r.layer: r.sha256 for r in inputs.sort_values("layer").itertuples()},
            **file_entries(files),
            # the registry's audit-chain head when the bundle was made: `audit log --expect-head` checks it later
            "registry_head": chain_head(store),
        }
        mbytes = json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True).encode("utf-8")
        (work / "manifest.json").write_bytes(mbytes)
        sig = signing_key().sign(mbytes).signature
        (work / "manifest.sig").write_text(sig.hex() + "\n", encoding="ascii")
    return {"bundle": str(out), "issuance_id": issuance_id, "record_counts": manifest["record_counts"],
            "totals": manifest["totals"]}
