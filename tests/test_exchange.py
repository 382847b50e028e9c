"""Exchange export: issuance with deductions and unique serials, signed bundles, offline verifier,
status round trip with block splits, and a tamper-evident event log."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import make_fake_run
from eco_value.exchange.registry import RegistryError, apply_status, audit_log, creditable, issue
from eco_value.exchange.serials import format_serial, parse_serial
from eco_value.exchange.verify import verify
from eco_value.rules import load_rules
from eco_value.store import Store

RULES = load_rules("cn2011-mee2020")


@pytest.fixture(autouse=True)
def _signing_key(key_dir):   # every test here signs or verifies: the session's test key (conftest.key_dir)
    return key_dir


def test_serial_check_digits_catch_a_typo():
    s = format_serial("510183", "FC1", 2023, 1, 250)
    assert s.startswith("ECV1-510183-FC1-2023-000000000001-000000000250-")
    assert parse_serial(s)["last"] == 250
    typo = s.replace("000000000250", "000000000205")
    with pytest.raises(ValueError, match="check digits"):
        parse_serial(typo)


def test_small_parcels_never_get_a_negative_remainder():
    tiny = creditable("P3", "H1", 0.6, 0.58, 0.62, RULES, "none")
    assert (tiny.buffer, tiny.issued) == (0, 0) and tiny.remainder == pytest.approx(0.6)
    small = creditable("P4", "H1", 5.5, 5.4, 5.6, RULES, "none")
    assert (small.buffer, small.issued) == (1, 4) and small.remainder == pytest.approx(0.5)
    for net in np.linspace(0.01, 30, 777):
        pc = creditable("P", "H", float(net), float(net) * 0.95, float(net) * 1.05, RULES, "none")
        assert 0 <= pc.remainder < 1 and pc.buffer >= 0 and pc.issued >= 0


def test_deductions_by_hand():
    # sink 100 t, 95 % CI 80-120 (half-width 20 %): uncertainty share 20 % - 10 % = 10 %
    pc = creditable("P1", "H1", 100.0, 80.0, 120.0, RULES, "none")
    assert pc.uncertainty == pytest.approx(10.0)
    assert pc.buffer == math.ceil(90.0 * 0.15) == 14          # buffer rounded up
    assert pc.issued == math.floor(90.0 - 14) == 76          # credits rounded down
    assert pc.remainder == pytest.approx(0.0)
    pc2 = creditable("P2", "H1", 10.5, 10.0, 11.0, RULES, "none")   # half-width 4.8 % < 10 %: no discount
    assert pc2.uncertainty == 0.0 and pc2.buffer == 2 and pc2.issued == 8 and pc2.remainder == pytest.approx(0.5)


@pytest.fixture
def issued(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'reg.sqlite'}")
    run = make_fake_run(store, [100.0, 55.5, 30.2, -12.0, 7.9, 260.0])
    d = issue(store, run, 2023)
    return store, run, d


def test_issuance_blocks_totals_and_single_issue(issued):
    store, run, d = issued
    assert d["skipped"]["no_net_removal"] == 1
    units = sum(b["count"] for b in d["serial_blocks"])
    assert units == d["net_issued_tco2e"] + d["buffer_tco2e"]
    assert [b["status"] for b in d["serial_blocks"]].count("buffer") == 1
    firsts = [(b["first"], b["last"]) for b in d["serial_blocks"]]
    assert firsts[0][0] == 1 and all(b[0] == a[1] + 1 for a, b in zip(firsts, firsts[1:]))   # contiguous, no gaps
    with pytest.raises(RegistryError, match="already issued"):
        issue(store, run, 2023, project_id="FC2")
    with pytest.raises(RegistryError, match="outside the run's monitoring period"):
        issue(store, run, 2019)
    assert audit_log(store)["ok"]


def test_export_verify_and_byte_identical_reexport(issued, tmp_path, key_dir):
    from eco_value.exchange.bundle import export_bundle
    from eco_value.exchange.keys import public_key_hex

    store, run, d = issued
    a = export_bundle(store, d["issuance_id"], tmp_path / "a")
    b = export_bundle(store, d["issuance_id"], tmp_path / "b")
    for rel in ("records/credit_blocks.csv", "records/credit_blocks.jsonl", "records/issuances.jsonl",
                "records/gep_statements.jsonl", "records/issuances.csv"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert verify(tmp_path / "a", public_key_hex()) == []
    key = tmp_path / "issuer.pub"
    key.write_text(public_key_hex())
    r = subprocess.run([sys.executable, "-m", "eco_value.exchange.verify", str(tmp_path / "a"), "--public-key", str(key)],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "OK" in r.stdout
    assert a["record_counts"]["credit_block"] == len(d["serial_blocks"])


def _resign(bundle, rel):
    """List ``rel`` as it now is and sign the manifest with the issuer's key (an issuer signing bad records)."""
    import hashlib

    from eco_value.exchange.keys import signing_key

    m = json.loads((bundle / "manifest.json").read_bytes())
    data = (bundle / rel).read_bytes()
    m["files"][rel], m["file_sizes"][rel] = hashlib.sha256(data).hexdigest(), len(data)
    raw = json.dumps(m, indent=2, sort_keys=True).encode()
    (bundle / "manifest.json").write_bytes(raw)
    (bundle / "manifest.sig").write_text(signing_key().sign(raw).signature.hex() + "\n")


def _codes(bundle, key):
    return {c for c, *_ in verify(bundle, key)}


def test_tampering_each_file_fails_with_its_own_message(issued, tmp_path):
    from eco_value.exchange.bundle import export_bundle
    from eco_value.exchange.keys import public_key_hex

    store, run, d = issued
    export_bundle(store, d["issuance_id"], tmp_path / "orig")
    key = public_key_hex()
    files = [p.relative_to(tmp_path / "orig").as_posix() for p in (tmp_path / "orig").rglob("*") if p.is_file()]
    assert len(files) >= 11
    for rel in files:
        if rel == "public_key":
            continue  # the bundle's own key is never trusted, so changing it changes nothing
        t = tmp_path / f"t-{rel.replace('/', '_')}"
        shutil.copytree(tmp_path / "orig", t)
        p = t / rel
        data = bytearray(p.read_bytes()) or bytearray(b"{}")   # an empty records file gets bytes added
        grew = data == b"{}"
        data[len(data) // 2] ^= 0x01
        p.write_bytes(bytes(data))
        codes = _codes(t, key)
        expected = {"manifest.json": "bad-signature", "manifest.sig": "bad-signature"}.get(
            rel, "size-mismatch" if grew else "hash-mismatch")   # a size differing from the manifest's: not even read
        assert expected in codes, (rel, codes)


def test_removed_record_duplicated_range_and_other_key(issued, tmp_path):
    from nacl.signing import SigningKey

    from eco_value.exchange.bundle import export_bundle
    from eco_value.exchange.keys import public_key_hex

    store, run, d = issued
    export_bundle(store, d["issuance_id"], tmp_path / "orig")
    key = public_key_hex()
    # removing a record
    rm = tmp_path / "rm"
    shutil.copytree(tmp_path / "orig", rm)
    lines = (rm / "records/credit_blocks.jsonl").read_text().splitlines(keepends=True)
    (rm / "records/credit_blocks.jsonl").write_text("".join(lines[1:]))
    assert _codes(rm, key) == {"size-mismatch"}             # changed after signing: not even read
    _resign(rm, "records/credit_blocks.jsonl")               # signed as it is: the records are checked
    assert {"record-count", "totals"} <= _codes(rm, key)
    # duplicating a serial range
    dup = tmp_path / "dup"
    shutil.copytree(tmp_path / "orig", dup)
    (dup / "records/credit_blocks.jsonl").write_text("".join(lines + lines[:1]))
    _resign(dup, "records/credit_blocks.jsonl")
    assert "serial-overlap" in _codes(dup, key)
    # a bundle signed with another key
    other = SigningKey.generate()
    assert "bad-signature" in _codes(tmp_path / "orig", other.verify_key.encode().hex())
    # the importer already holds these serials
    held = [{"unitBlockStart": 1, "unitBlockEnd": 5}]
    assert "serial-overlap-held" in {c for c, *_ in verify(tmp_path / "orig", key, held)}
    # no trusted key
    assert "no-trusted-key" in _codes(tmp_path / "orig", None)


def test_partial_retirement_splits_and_finality(issued):
    store, run, d = issued
    blk = d["serial_blocks"][0]
    f, l_ = blk["first"], blk["last"]
    assert l_ - f >= 4
    r = apply_status(store, [{"first": f + 1, "last": f + 2, "status": "retired", "beneficiary": "Chengdu Metro Co."}])
    assert r["applied"] == 1
    from eco_value.exchange.registry import issuance_summary
    blocks = issuance_summary(store, d["issuance_id"])["serial_blocks"]
    mine = sorted((b["first"], b["last"], b["status"]) for b in blocks if f <= b["first"] <= l_)
    assert mine == [(f, f, "held"), (f + 1, f + 2, "retired"), (f + 3, l_, "held")]
    with pytest.raises(RegistryError, match="retired .final"):
        apply_status(store, [{"first": f + 1, "last": f + 1, "status": "retired", "beneficiary": "B"}])
    with pytest.raises(RegistryError, match="never issued"):
        apply_status(store, [{"first": 10_000_000, "last": 10_000_001, "status": "retired", "beneficiary": "B"}])
    buffer = [b for b in blocks if b["status"] == "buffer"][0]
    with pytest.raises(RegistryError, match="cannot become retired"):
        apply_status(store, [{"first": buffer["first"], "last": buffer["first"], "status": "retired", "beneficiary": "B"}])
    # a failed batch changes nothing
    before = issuance_summary(store, d["issuance_id"])["serial_blocks"]
    with pytest.raises(RegistryError):
        apply_status(store, [{"first": f + 3, "last": f + 3, "status": "listed"}, {"first": f + 1, "last": f + 1, "status": "held"}])
    assert issuance_summary(store, d["issuance_id"])["serial_blocks"] == before
    assert audit_log(store)["ok"]


def test_tampering_with_history_is_detected(issued):
    from sqlalchemy import text

    store, run, d = issued
    blk = d["serial_blocks"][0]
    apply_status(store, [{"first": blk["first"], "last": blk["first"], "status": "retired", "beneficiary": "A"}])
    assert audit_log(store)["ok"]
    with store.engine.begin() as c:
        c.execute(text("UPDATE status_events SET beneficiary = 'B' WHERE to_status = 'retired'"))
    assert any("edited" in p for p in audit_log(store)["problems"])
    with store.engine.begin() as c:
        c.execute(text("UPDATE status_events SET beneficiary = 'A' WHERE to_status = 'retired'"))
        c.execute(text("UPDATE credit_blocks SET status = 'held' WHERE status = 'retired'"))
    assert any("replayed" in p for p in audit_log(store)["problems"])


CONCURRENT = """
import sys, time
from eco_value.exchange.registry import issue
from eco_value.store import Store
t0 = float(sys.argv[5])
while time.time() < t0:
    time.sleep(0.001)
d = issue(Store(sys.argv[1]), sys.argv[2], 2023, sys.argv[3].split(','), project_id=sys.argv[4])
print(d['serial_blocks'][0]['first'], d['serial_blocks'][-1]['last'])
"""


def test_concurrent_issuances_get_disjoint_serials(db_url):
    store = Store(db_url)
    for rnd in range(3):
        pre = f"R{rnd}P"
        run = make_fake_run(store, [float(20 + i) for i in range(40)], prefix=pre)
        a = ",".join(f"{pre}{i:04d}" for i in range(0, 40, 2))
        b = ",".join(f"{pre}{i:04d}" for i in range(1, 40, 2))
        t0 = time.time() + 2.0
        env = dict(os.environ)
        procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT, db_url, run, parcels, f"C{rnd}{k}", str(t0)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                 for k, parcels in enumerate((a, b))]
        outs = [p.communicate(timeout=120) for p in procs]
        assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
        (f1, l1), (f2, l2) = [tuple(map(int, o[0].split())) for o in outs]
        assert l1 < f2 or l2 < f1
    assert audit_log(store)["ok"]


ops = st.lists(st.tuples(st.sampled_from(["issue", "transfer", "retire", "list", "cancel"]),
                         st.integers(0, 10_000), st.integers(0, 10_000), st.integers(1, 40)), min_size=1, max_size=12)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops)
def test_property_every_serial_in_exactly_one_block_and_totals_conserved(tmp_path, seq):
    import tempfile

    from eco_value.exchange.registry import issuance_summary
    from eco_value.store.models import CreditBlock, Issuance
    from sqlmodel import select

    d = tempfile.mkdtemp(dir=tmp_path)
    store = Store(f"sqlite:///{d}/p.sqlite")
    issued_total = 0
    for kind, x, y, n in seq:
        if kind == "issue" or issued_total == 0:
            run = make_fake_run(store, [float(n + k * 3.7) for k in range(1 + x % 5)], prefix=f"I{issued_total}-{x}-")
            s = issue(store, run, 2023)
            issued_total += s["net_issued_tco2e"] + s["buffer_tco2e"]
            continue
        with store.session() as s:
            blocks = s.exec(select(CreditBlock).order_by(CreditBlock.first)).all()
        b = blocks[x % len(blocks)]
        f = b.first + y % (b.last - b.first + 1)
        l_ = min(b.last, f + n - 1)
        to = {"transfer": "transferred", "retire": "retired", "list": "listed", "cancel": "cancelled"}[kind]
        extra = {"transferred": {"holder_id": f"NEW{x % 3}"}, "retired": {"beneficiary": "Beneficiary Co."}}.get(to, {})
        try:
            apply_status(store, [{"first": f, "last": l_, "status": to, **extra}])
        except RegistryError:
            pass  # illegal transitions are refused; the invariants below must still hold
        with store.session() as s:
            blocks = s.exec(select(CreditBlock).order_by(CreditBlock.first)).all()
            issuances = s.exec(select(Issuance)).all()
        # every serial 1..N in exactly one block
        pos = 1
        for blk in blocks:
            assert blk.first == pos and blk.last >= blk.first
            pos = blk.last + 1
        assert pos - 1 == issued_total
        for iss in issuances:
            units = sum(b.last - b.first + 1 for b in blocks if b.issuance_id == iss.id)
            assert units == iss.net_issued_tco2e + iss.buffer_tco2e
    assert audit_log(store)["ok"]


def test_issue_export_verify_on_the_pilot_run(pilot_run, tmp_path):
    """End to end on realistic parcels (thousands, many tiny sinks): the bundle verifies."""
    from eco_value.exchange.bundle import export_bundle
    from eco_value.exchange.keys import public_key_hex

    store, res = pilot_run
    d = issue(store, res.run_id, 2023, project_id="PILOT")
    assert d["parcels"] > 100 and d["net_issued_tco2e"] > 0
    export_bundle(store, d["issuance_id"], tmp_path / "b")
    assert verify(tmp_path / "b", public_key_hex()) == []
