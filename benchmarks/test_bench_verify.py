"""The offline verifier: a 25,000-record bundle (time, peak RSS) and hostile manifests listing a 2 GiB
sparse file (refused at once). Each verification runs in its own process, so peak RSS is its own.

    pytest benchmarks/test_bench_verify.py --benchmark-only

Goals (issue 12): 25,000 records verified in < 10 s with peak RSS < 200 MB; a 2 GiB listed file refused
in < 1 s. The bundle is synthesised with the exporter's own writers (records, CSV, manifest entries) and
signed with a throw-away key, so no registry is needed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest
from nacl.signing import SigningKey

from conftest import BENCH_DIR
from eco_value.exchange.bundle import SCHEMAS, _csv, _jsonl, file_entries, schema_columns
from eco_value.exchange.serials import format_serial
from eco_value.resources import data_dir

N_BLOCKS = 25_000                   # credit blocks: one issued and one buffer block per parcel
ADCODE, PROJECT, VINTAGE = "510183", "BENCH", 2023
RULESET = "ab" * 32
GIB2 = 2 << 30

# verify() in a child process: prints its own seconds, problems and peak RSS. The peak is VmHWM of the
# child's own address space (ru_maxrss of a child also counts the parent's pages it was forked with).
CHILD = """
import json, resource, sys, time
from eco_value.exchange.verify import verify
t = time.perf_counter()
p = verify(sys.argv[1], sys.argv[2])
s = time.perf_counter() - t
try:
    hwm = next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM:")) / 1024
except OSError:
    hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"verify_s": s, "peak_rss_mb": round(hwm, 1), "problems": [list(x) for x in p[:20]], "n_problems": len(p)}))
"""


def synth_records(n_blocks: int) -> dict[str, list[dict]]:
    parcels = n_blocks // 2
    common = {"issuanceId": "BENCH-I1", "warehouseProjectId": PROJECT, "methodology": "CCER-14-002-V01",
              "methodologyVersion": "V01", "startDate": "2020-01-01", "endDate": "2023-12-31", "regionAdcode": ADCODE,
              "rulesetHash": RULESET, "runId": "bench-run", "correspondingAdjustmentDeclaration": "not required",
              "bufferShareApplied": 0.15, "uncertaintyDeductionApplied": 0.0, "otherProgrammes": [],
              "schemaVersion": "credit_block/v1", "unitType": "removal - nature", "vintageYear": VINTAGE}
    blocks, lines, pos = [], [], 1
    for i in range(parcels):
        pid = f"{ADCODE}-P{i:06d}"
        for status, owner, units in (("held", f"H{i % 97:03d}", 85), ("buffer", "BUFFER-POOL", 15)):
            blocks.append({**common, "serial": format_serial(ADCODE, PROJECT, VINTAGE, pos, pos + units - 1),
                           "unitBlockStart": pos, "unitBlockEnd": pos + units - 1, "unitCount": units,
                           "unitStatus": status, "unitOwner": owner, "parcels": [pid]})
            pos += units
        lines.append({"parcelId": pid, "gross": 100.25, "baseline": 0.0, "leakage": 0.0, "uncertainty": 0.0,
                      "buffer": 15, "issued": 85, "remainder": 0.25, "otherProgramme": "none"})
    issuance = {"issuanceId": "BENCH-I1", "runId": "bench-run", "warehouseProjectId": PROJECT, "regionAdcode": ADCODE,
                "vintageYear": VINTAGE, "startDate": "2020-01-01", "endDate": "2023-12-31", "methodology": "CCER-14-002-V01",
                "methodologyVersion": "V01", "grossRemovals": 100.25 * parcels, "baseline": 0.0, "leakage": 0.0,
                "uncertaintyDeduction": 0.0, "buffer": 15 * parcels, "remainder": 0.25 * parcels, "netIssued": 85 * parcels,
                "bufferShareApplied": 0.15, "rulesetHash": RULESET, "parcelLines": lines, "schemaVersion": "issuance/v1"}
    return {"credit_block": blocks, "issuance": [issuance], "gep_statement": []}


def write_bundle(out, recs: dict[str, list[dict]], sk: SigningKey) -> None:
    if out.exists():
        shutil.rmtree(out)
    (out / "records").mkdir(parents=True)
    (out / "schemas").mkdir()
    files: dict[str, bytes] = {}
    for name, records in recs.items():
        files[f"records/{name}s.jsonl"] = _jsonl(records)
        files[f"records/{name}s.csv"] = _csv(records, schema_columns(name))
    for fn in SCHEMAS.values():
        files[f"schemas/{fn}"] = (data_dir("exchange_export") / "schemas" / fn).read_bytes()
    files["public_key"] = (sk.verify_key.encode().hex() + "\n").encode()
    for rel, b in files.items():
        (out / rel).write_bytes(b)
    totals: dict[str, dict[str, int]] = {}
    for b in recs["credit_block"]:
        t = totals.setdefault(str(b["vintageYear"]), {})
        t[b["unitStatus"]] = t.get(b["unitStatus"], 0) + b["unitCount"]
    manifest = {"bundle_format": "eco-value-bundle/1", "bundle_id": "bench", "issuance_id": "BENCH-I1",
                "record_counts": {k: len(v) for k, v in recs.items()},
                "totals": {"units_by_vintage_and_status": totals}, **file_entries(files)}
    sign(out, manifest, sk)


def sign(out, manifest: dict, sk: SigningKey) -> None:
    raw = json.dumps(manifest, indent=2, sort_keys=True).encode()
    (out / "manifest.json").write_bytes(raw)
    (out / "manifest.sig").write_text(sk.sign(raw).signature.hex() + "\n")


@pytest.fixture(scope="module")
def bundle_25k():
    sk = SigningKey.generate()
    out = BENCH_DIR / "verify_25k"
    t = time.perf_counter()
    write_bundle(out, synth_records(N_BLOCKS), sk)      # the records are freed before any verification
    return out, sk, time.perf_counter() - t


@pytest.fixture(scope="module")
def bundle_small():
    """A 200-block bundle: what the hostile cases measure is the refusal of the 2 GiB file, not the rest."""
    sk = SigningKey.generate()
    out = BENCH_DIR / "verify_200"
    write_bundle(out, synth_records(200), sk)
    return out, sk


def run_child(bundle, key_hex: str) -> dict:
    """verify() in its own process; its CPU time from its own rusage (os.wait4)."""
    with tempfile.TemporaryFile() as so, tempfile.TemporaryFile() as se:
        t = time.perf_counter()
        p = subprocess.Popen([sys.executable, "-c", CHILD, str(bundle), key_hex], stdout=so, stderr=se)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
        p.returncode = os.waitstatus_to_exitcode(status)
        so.seek(0)
        se.seek(0)
        out, err = so.read().decode(), se.read().decode()
    assert p.returncode == 0, err[-2000:]
    r = json.loads(out.strip().splitlines()[-1])
    return {**r, "process_s": round(wall, 3), "process_cpu_s": round(ru.ru_utime + ru.ru_stime, 3)}


def test_verify_25000_records(benchmark, bundle_25k):
    out, sk, build_s = bundle_25k
    r = benchmark.pedantic(run_child, args=(out, sk.verify_key.encode().hex()), rounds=1, iterations=1)
    size_mb = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1e6
    benchmark.extra_info.update({**r, "records": N_BLOCKS + 1, "bundle_mb": round(size_mb, 1), "build_s": round(build_s, 2)})
    assert r["n_problems"] == 0, r["problems"]
    print(f"\n25,000-record bundle ({size_mb:.1f} MB): verify {r['verify_s']:.2f} s in process, {r['process_s']:.2f} s "
          f"whole process ({r['process_cpu_s']:.2f} s CPU), peak RSS {r['peak_rss_mb']:.0f} MB")


@pytest.mark.parametrize("case", ["declared-small", "bad-signature", "declared-2gib"])
def test_hostile_2gib_listed_file(benchmark, bundle_small, tmp_path, case):
    """records/gep_statements.jsonl replaced by a 2 GiB sparse file: the manifest still declares its real
    size (refused before reading), the signature is broken (nothing opened), or the signer declares
    2 GiB (read in chunks within that limit; bounded memory, then refused on the hash)."""
    out, sk = bundle_small
    h = tmp_path / "hostile"
    h.mkdir()
    for name in ("manifest.json", "manifest.sig", "public_key"):
        shutil.copy(out / name, h / name)
    shutil.copytree(out / "schemas", h / "schemas")
    (h / "records").mkdir()
    for f in (out / "records").iterdir():
        if f.name != "gep_statements.jsonl":
            shutil.copy(f, h / "records" / f.name)
    with open(h / "records/gep_statements.jsonl", "wb") as f:
        f.truncate(GIB2)
    if case == "bad-signature":
        (h / "manifest.sig").write_text("00" * 64 + "\n")
    elif case == "declared-2gib":
        m = json.loads((h / "manifest.json").read_bytes())
        m["file_sizes"]["records/gep_statements.jsonl"] = GIB2
        sign(h, m, sk)
    r = benchmark.pedantic(run_child, args=(h, sk.verify_key.encode().hex()), rounds=1, iterations=1)
    benchmark.extra_info.update({**r, "case": case})
    expected = {"declared-small": "size-mismatch", "bad-signature": "bad-signature", "declared-2gib": "hash-mismatch"}[case]
    assert expected in {p[0] for p in r["problems"]}, r["problems"]
    print(f"\n2 GiB listed file, {case}: refused in {r['verify_s']:.3f} s ({r['process_s']:.2f} s whole process, "
          f"{r['process_cpu_s']:.2f} s CPU, peak RSS {r['peak_rss_mb']:.0f} MB), "
          f"problems {[tuple(p[:2]) for p in r['problems']]}")
    if case != "declared-2gib":
        assert r["verify_s"] < 1.0
