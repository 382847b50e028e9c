"""Registry hardening (issue 12): project ids, strict status files, an audit chain that covers every
holding change and is anchored outside the database, private-key permissions, run-id lookup, ids in CSV."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from datetime import datetime

import pytest
from sqlalchemy import text
from sqlmodel import select

from conftest import make_fake_run
from eco_value.errors import EcoValueError, StoreError
from eco_value.exchange.registry import (RegistryError, StatusFileError, apply_status, audit_log, chain_head,
                                         issuance_summary, issue, read_status_file)
from eco_value.store import Store
from eco_value.store.models import CreditBlock, Issuance, StatusEvent

INT64_MAX = 2**63 - 1


@pytest.fixture(autouse=True)
def key_dir(tmp_path_factory, monkeypatch):
    d = tmp_path_factory.getbasetemp() / "keys-hardening"
    monkeypatch.setenv("ECO_VALUE_KEY_DIR", str(d))
    if not (d / "issuer_ed25519.key").exists():
        from eco_value.exchange.keys import generate
        generate()
    return d


@pytest.fixture
def reg(tmp_path):
    url = f"sqlite:///{tmp_path / 'reg.sqlite'}"
    store = Store(url)
    run = make_fake_run(store, [100.0, 55.5, 30.2, 260.0])
    d = issue(store, run, 2023)
    return store, run, d, url


def cli(monkeypatch, capsys, *args):
    """Run the real entry point in-process; return (exit code, stdout, stderr)."""
    from eco_value.cli import main

    monkeypatch.setattr(sys, "argv", ["eco-value", *map(str, args)])
    with pytest.raises(SystemExit) as e:
        main()
    out, err = capsys.readouterr()
    return e.value.code, out, err


def _counts(store):
    with store.session() as s:
        n_iss = len(s.exec(select(Issuance)).all())
        n_ev = len(s.exec(select(StatusEvent)).all())
        nxt = s.execute(text("SELECT next_serial FROM serial_counter")).scalar()
    return n_iss, n_ev, nxt


# ---------------------------------------------------------------- project ids (serial check digit)
BAD_PROJECTS = ["项目一", "FC项目", "FC🌲", "", " ", "FC 1", " FC1", "FC1\t", "ＦＣ１", "FC١", "FC-1", "FC_1", "É1"]


@pytest.mark.parametrize("project", BAD_PROJECTS)
def test_non_ascii_or_empty_project_is_refused_before_anything_is_written(tmp_path, project):
    store = Store(f"sqlite:///{tmp_path / 'p.sqlite'}")
    run = make_fake_run(store, [100.0, 55.5])
    before = _counts(store)
    with pytest.raises(EcoValueError, match=r"project id .* ASCII letters and digits") as e:
        issue(store, run, 2023, project_id=project)
    assert repr(project) in str(e.value) and "--project" in str(e.value)
    assert _counts(store) == before                 # no issuance, no event, counter unchanged


def test_ascii_project_serials_round_trip_and_unicode_serials_are_rejected():
    from eco_value.exchange.serials import format_serial, parse_serial

    s = format_serial("510183", "Fc2x", 2023, 7, 9)
    assert parse_serial(s)["project"] == "Fc2x"
    with pytest.raises(ValueError, match="ASCII"):
        format_serial("510183", "项目", 2023, 7, 9)
    # a serial written with Arabic-Indic or full-width digits is not an ECV1 serial (\d must not match them)
    arabic = s.replace("000000000007", "٠٠٠٠٠٠٠٠٠٠٠٧")
    with pytest.raises(ValueError, match="not an ECV1 serial"):
        parse_serial(arabic)


def test_cli_issue_with_chinese_project_exits_2(reg, monkeypatch, capsys):
    store, run, d, url = reg
    run2 = make_fake_run(store, [40.0], prefix="Q")
    rc, out, err = cli(monkeypatch, capsys, "issue", run2, "--vintage", 2023, "--project", "项目", "--db", url)
    assert rc == 2 and "project id" in err and "Traceback" not in err


# ---------------------------------------------------------------- apply-status: strict parsing
def _write(tmp_path, name, content: str | bytes):
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return p


def _first_block(d):
    b = d["serial_blocks"][0]
    assert b["count"] >= 5
    return b


def _problems(exc) -> list[tuple[str, str]]:
    return [(p.where, p.field) for p in exc.problems]


def test_json_float_bool_and_string_serials_are_refused(reg, tmp_path):
    store, run, d, url = reg
    f = _first_block(d)["first"]
    rows = [{"first": f + 0.9, "last": f + 1, "status": "listed"},
            {"first": True, "last": True, "status": "listed"},
            {"first": str(f), "last": f, "status": "listed"},
            {"first": f, "last": f, "status": "listed"}]
    p = _write(tmp_path, "c.json", json.dumps(rows, indent=1))
    with pytest.raises(StatusFileError) as e:
        read_status_file(p)
    probs = _problems(e.value)
    assert ("item 1 (line 2)", "first") in probs
    assert ("item 2 (line 7)", "first") in probs and ("item 2 (line 7)", "last") in probs
    assert ("item 3 (line 12)", "first") in probs
    assert not any(w.startswith("item 4") for w, _ in probs)
    msg = str(e.value)
    assert f"{f + 0.9!r}" in msg and "whole number" in msg and "true" in msg and "without quotes" in msg
    assert "nothing was applied" in msg
    # the Python API is as strict (320.9 used to become 320)
    with pytest.raises(StatusFileError, match="whole number"):
        apply_status(store, [{"first": float(f), "last": f, "status": "listed"}])
    assert audit_log(store)["ok"]


def test_retirement_needs_beneficiary_and_transfer_a_new_holder(reg, tmp_path):
    store, run, d, url = reg
    b = _first_block(d)
    f = b["first"]
    before = issuance_summary(store, d["issuance_id"])["serial_blocks"]
    cases = [({"first": f, "last": f, "status": "retired"}, "beneficiary"),
             ({"first": f, "last": f, "status": "retired", "beneficiary": "  "}, "beneficiary"),
             ({"first": f, "last": f, "status": "transferred"}, "holder_id"),
             ({"first": f, "last": f, "status": "transferred", "holder_id": b["holder_id"]}, "holder_id"),
             ({"first": f, "last": f, "status": "listed", "holder_id": "SOMEONE-ELSE"}, "holder_id"),
             ({"first": f, "last": f, "status": "listed", "beneficiary": "X Co."}, "beneficiary"),
             ({"first": f, "last": f, "status": "transferred", "holder_id": "=HYPERLINK(\"x\")"}, "holder_id"),
             ({"first": f, "last": f, "status": "retired", "beneficiary": "@SUM(A1)"}, "beneficiary")]
    for ch, field in cases:
        with pytest.raises(StatusFileError) as e:
            apply_status(store, [ch])
        assert ("change #1", field) in _problems(e.value), (ch, str(e.value))
    assert issuance_summary(store, d["issuance_id"])["serial_blocks"] == before
    ok = apply_status(store, [{"first": f, "last": f, "status": "transferred", "holder_id": "EXCH-42"},
                              {"first": f + 1, "last": f + 1, "status": "retired", "beneficiary": "Chengdu Metro Co."}])
    assert ok["applied"] == 2 and len(ok["head"]) == 64


def test_csv_with_bom_is_read_and_bad_csv_values_are_each_reported(reg, tmp_path):
    store, run, d, url = reg
    f = _first_block(d)["first"]
    good = _write(tmp_path, "bom.csv", "\ufefffirst,last,status,beneficiary\n"
                  f"{f},{f + 1},retired,Chengdu Metro Co.\n")
    changes = read_status_file(good)
    assert [(c.first, c.last, c.status, c.beneficiary) for c in changes] == [(f, f + 1, "retired", "Chengdu Metro Co.")]
    bad_values = ["1_000", "١٢٣", "１２３", str(INT64_MAX + 1), "9" * 30, "12.0", "+12", " 12", "-3", "0", "", "0x1F"]
    body = "first,last,status\n" + "".join(f"{v},{f},listed\n" for v in bad_values) + f"{f},{f},listed\n"
    p = _write(tmp_path, "bad.csv", body)
    with pytest.raises(StatusFileError) as e:
        read_status_file(p)
    probs = _problems(e.value)
    assert probs == [(f"line {i + 2}", "first") for i in range(len(bad_values))]
    msg = str(e.value)
    assert "U+0661" in msg and "U+FF11" in msg and "ASCII digits" in msg and "beyond" in msg
    r = apply_status(store, changes)
    assert r["applied"] == 1
    blocks = issuance_summary(store, d["issuance_id"])["serial_blocks"]
    assert [b["status"] for b in blocks if b["first"] == f] == ["retired"]


def test_invalid_utf8_unknown_columns_and_jsonl_lines(reg, tmp_path):
    store, run, d, url = reg
    f = _first_block(d)["first"]
    p = _write(tmp_path, "latin1.csv", b"first,last,status,beneficiary\n" + f"{f},{f},retired,M\xfcller GmbH\n".encode("latin-1"))
    with pytest.raises(StatusFileError, match=r"line 2.*not UTF-8.*byte 0xfc"):
        read_status_file(p)
    p = _write(tmp_path, "typo.csv", f"first,last,status,benficiary\n{f},{f},retired,X\n")
    with pytest.raises(StatusFileError, match="benficiary"):
        read_status_file(p)
    p = _write(tmp_path, "c.jsonl", json.dumps({"first": f, "last": f, "status": "listed"}) + "\n\n"
               + json.dumps({"first": f + 1, "last": 1e400, "status": "listed"}) + "\n" + "{not json\n")
    with pytest.raises(StatusFileError) as e:
        read_status_file(p)
    assert _problems(e.value) == [("line 3", "last"), ("line 4", "(line)")]


def test_all_or_nothing_and_every_db_problem_listed(reg, tmp_path):
    store, run, d, url = reg
    f = _first_block(d)["first"]
    before = issuance_summary(store, d["issuance_id"])["serial_blocks"]
    with pytest.raises(StatusFileError) as e:
        apply_status(store, [{"first": f, "last": f, "status": "listed"},
                             {"first": 10**9, "last": 10**9, "status": "listed"},
                             {"first": f + 1, "last": f + 1, "status": "listed"},
                             {"first": f, "last": f, "status": "retired"}])
    assert _problems(e.value) == [("change #2", "first"), ("change #4", "beneficiary")]
    assert issuance_summary(store, d["issuance_id"])["serial_blocks"] == before


def test_cli_apply_status_bad_file_exits_2_with_line_and_fix(reg, tmp_path, monkeypatch, capsys):
    store, run, d, url = reg
    f = _first_block(d)["first"]
    p = _write(tmp_path, "x.csv", f"first,last,status\n{f},{f},listed\n１２３,{f},listed\n")
    rc, out, err = cli(monkeypatch, capsys, "apply-status", p, "--db", url)
    assert rc == 2 and "line 3" in err and "'first'" in err and "Fix" in err
    assert "Traceback" not in err


# ---------------------------------------------------------------- audit: coverage and anchored head
def test_audit_covers_beneficiary_holder_and_issuance_totals(tmp_path):
    edits = [("UPDATE credit_blocks SET beneficiary = 'B Co.' WHERE status = 'retired'", "replayed"),
             ("UPDATE credit_blocks SET holder_id = 'THIEF' WHERE status = 'held'", "replayed"),
             ("UPDATE issuances SET net_issued_tco2e = net_issued_tco2e + 5", "issuance"),
             ("UPDATE issuances SET gross_removals_tco2e = gross_removals_tco2e * 2", "issuance"),
             ("UPDATE issuance_lines SET quantity_tco2e = quantity_tco2e + 1 WHERE kind = 'remainder'", "issuance"),
             ("UPDATE parcel_vintages SET other_programme = 'CCER X'", "issuance"),
             ("UPDATE credit_blocks SET parcels_json = '[\"P9999\"]' WHERE status = 'buffer'", "parcels"),
             ("UPDATE credit_blocks SET parcels_json = '[\"P9999\"]' WHERE id = (SELECT MIN(id) FROM credit_blocks "
              "WHERE status = 'held')", "parcels"),
             ("UPDATE serial_counter SET next_serial = 1", "counter")]
    for i, (sql, word) in enumerate(edits):
        store = Store(f"sqlite:///{tmp_path / f'a{i}.sqlite'}")
        d = issue(store, make_fake_run(store, [100.0, 55.5, 30.2, 260.0]), 2023)
        f = _first_block(d)["first"]
        apply_status(store, [{"first": f + 1, "last": f + 1, "status": "retired", "beneficiary": "A Co."}])
        assert audit_log(store)["ok"]
        with store.engine.begin() as c:
            assert c.execute(text(sql)).rowcount >= 1, sql
        r = audit_log(store)
        assert not r["ok"] and any(word in p for p in r["problems"]), (sql, r["problems"])


def _truncate_last_event_and_merge_blocks(store):
    with store.session() as s:
        ev = s.exec(select(StatusEvent).order_by(StatusEvent.id.desc())).first()
        blocks = s.exec(select(CreditBlock).where(CreditBlock.issuance_id == ev.issuance_id).order_by(CreditBlock.first)).all()
        s.delete(ev)
        # merge the split pieces back into one held block
        pieces = [b for b in blocks if b.last + 1 >= ev.first and b.first <= ev.last + 1 and b.status in ("held", "retired")]
        lo, hi = min(b.first for b in pieces), max(b.last for b in pieces)
        keep = pieces[0]
        for b in pieces:
            s.delete(b)
        s.flush()
        s.add(CreditBlock(issuance_id=keep.issuance_id, first=lo, last=hi, vintage=keep.vintage, status="held",
                          holder_id=keep.holder_id, parcels_json=keep.parcels_json))
        s.commit()


def test_truncated_tail_is_detected_against_the_remembered_head(reg, tmp_path, monkeypatch, capsys):
    store, run, d, url = reg
    f = _first_block(d)["first"]
    assert d["head"] == chain_head(store)
    head_file = tmp_path / "head.txt"
    ch = _write(tmp_path, "ret.csv", f"first,last,status,beneficiary\n{f + 1},{f + 2},retired,A Co.\n")
    rc, out, err = cli(monkeypatch, capsys, "apply-status", ch, "--db", url, "--head-file", head_file)
    assert rc == 0 and head_file.read_text().strip() == chain_head(store) and chain_head(store) in out
    remembered = chain_head(store)
    _truncate_last_event_and_merge_blocks(store)
    assert audit_log(store)["ok"]                     # without an anchor the removal is invisible …
    r = audit_log(store, expect_head=remembered)      # … with it, it is caught
    assert not r["ok"] and any("not in the chain" in p for p in r["problems"])
    rc, out, err = cli(monkeypatch, capsys, "audit", "log", "--db", url, "--head-file", head_file)
    assert rc == 1 and "not in the chain" in err
    rc, out, err = cli(monkeypatch, capsys, "audit", "log", "--db", url, "--expect-head", remembered)
    assert rc == 1
    # an older remembered head that is still in the chain is fine (the chain only grew since)
    assert audit_log(store, expect_head=d["head"])["ok"]
    rc, out, err = cli(monkeypatch, capsys, "audit", "log", "--db", url, "--expect-head", "xyz")
    assert rc == 2 and "64 hex" in err
    rc, out, err = cli(monkeypatch, capsys, "audit", "log", "--db", url, "--head-file", tmp_path / "nope.txt")
    assert rc == 2 and "nope.txt" in err


def test_issue_prints_and_writes_the_head_and_the_bundle_carries_it(reg, tmp_path, monkeypatch, capsys):
    from eco_value.exchange.bundle import export_bundle

    store, run, d, url = reg
    run2 = make_fake_run(store, [80.0, 20.0], prefix="Z")
    hf = tmp_path / "anchors" / "head"
    rc, out, err = cli(monkeypatch, capsys, "issue", run2, "--vintage", 2023, "--project", "FC9", "--db", url,
                       "--head-file", hf)
    assert rc == 0, err
    assert hf.read_text().strip() == chain_head(store) and f"head {chain_head(store)}" in out
    export_bundle(store, d["issuance_id"], tmp_path / "b")
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert m["registry_head"] == chain_head(store)


def _old_payload_hash(prev, ev):
    body = {"prev": prev, "created": ev["created"], "actor": ev["actor"], "first": ev["first"], "last": ev["last"],
            "from_status": ev["from_status"], "to_status": ev["to_status"], "holder_id": ev["holder_id"],
            "beneficiary": ev["beneficiary"], "issuance_id": ev["issuance_id"], "reason": ev["reason"]}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()


def test_events_stored_before_the_migration_still_verify(tmp_path, monkeypatch):
    """Events written by the old code (no issuance digest) keep their hashes through downgrade/upgrade."""
    from alembic import command

    from eco_value.exchange import registry
    from eco_value.store.db import _ENGINES, migration_config

    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    store = Store(url)
    run = make_fake_run(store, [100.0, 55.5])
    monkeypatch.setattr(registry, "issuance_digest", lambda *a, **k: "")   # what the old code stored
    d = issue(store, run, 2023)
    monkeypatch.undo()
    with store.engine.begin() as c:
        rows = [dict(r._mapping) for r in c.execute(text("SELECT * FROM status_events ORDER BY id"))]
    prev = registry.GENESIS
    for r in rows:   # the stored hashes are exactly the pre-migration formula
        r["created"] = registry._iso(datetime.fromisoformat(str(r["created"])))
        assert r["hash"] == _old_payload_hash(prev, r)
        prev = r["hash"]
    cfg = migration_config(url)
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0003")
    store.engine.dispose()
    _ENGINES.pop(url, None)
    store = Store(url)                               # upgrades to head again
    r = audit_log(store)
    assert r["ok"], r["problems"]
    assert any("predate" in n for n in r["notes"])
    with store.engine.begin() as c:                  # the count check still covers old issuances
        c.execute(text("UPDATE issuances SET buffer_tco2e = buffer_tco2e + 1"))
    assert not audit_log(store)["ok"]
    apply_status(store, [{"first": d["serial_blocks"][0]["first"], "last": d["serial_blocks"][0]["first"],
                          "status": "listed"}])      # new events chain onto old ones


# ---------------------------------------------------------------- private key permissions
def test_private_key_is_0600_despite_stale_temp_file_and_umask_000(tmp_path, monkeypatch):
    from eco_value.exchange import keys

    d = tmp_path / "k"
    monkeypatch.setenv("ECO_VALUE_KEY_DIR", str(d))
    old = os.umask(0)
    try:
        d.mkdir()
        stale = d / "issuer_ed25519.tmp"
        stale.write_bytes(b"stale")
        os.chmod(stale, 0o644)
        p = keys.generate()
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
        p2 = keys.generate(force=True)
        assert stat.S_IMODE(p2.stat().st_mode) == 0o600
        fresh = tmp_path / "fresh" / "keys"
        monkeypatch.setenv("ECO_VALUE_KEY_DIR", str(fresh))
        p3 = keys.generate()
        assert stat.S_IMODE(p3.stat().st_mode) == 0o600 and stat.S_IMODE(fresh.stat().st_mode) == 0o700
    finally:
        os.umask(old)
    leftovers = sorted(x.name for x in d.iterdir())
    assert leftovers == ["issuer_ed25519.key", "issuer_ed25519.tmp"]   # the stale file is not ours to delete
    assert stale.read_bytes() == b"stale"


# ---------------------------------------------------------------- run / issuance id lookup
def test_wildcards_and_empty_ids_never_match(reg):
    store, run, d, url = reg
    assert store.run(run[:8]).id == run                      # a unique prefix still works
    for bad in ("%", "_", "%%", "_" * 36, "\\", run[:4] + "%"):
        with pytest.raises(StoreError, match="no run"):
            store.run(bad)
    for empty in ("", "   "):
        with pytest.raises(StoreError, match="empty"):
            store.run(empty)
    assert issuance_summary(store, d["issuance_id"][:8])["issuance_id"] == d["issuance_id"]
    for bad in ("%", "_", ""):
        with pytest.raises(StoreError):
            issuance_summary(store, bad)


def test_cli_show_percent_exits_2(reg, monkeypatch, capsys):
    store, run, d, url = reg
    rc, out, err = cli(monkeypatch, capsys, "show", "%", "--db", url)
    assert rc == 2 and "no run" in err


# ---------------------------------------------------------------- ids on input and in CSV
def test_formula_and_empty_parcel_ids_refused_by_issue_and_escaped_in_csv(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 'f.sqlite'}"
    store = Store(url)
    run = make_fake_run(store, [50.0, 60.0], prefix="=1+")
    with pytest.raises(RegistryError, match=r"parcel_id.*'=1\+0000'.*formula"):
        issue(store, run, 2023)
    out = tmp_path / "zones.csv"
    rc, _o, err = cli(monkeypatch, capsys, "export-table", "zones", run, "--out", out, "--db", url)
    assert rc == 0, err
    import csv
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert sorted(r["zone_id"] for r in rows) == ["'=1+0000", "'=1+0001"]


def test_bundle_csv_cells_are_escaped():
    from eco_value.exchange.bundle import _csv

    got = _csv([{"a": "=cmd|' /C calc'!A0", "b": -3, "c": -2.5, "d": ["@x", "y"], "e": "ok"}], ["a", "b", "c", "d", "e"])
    assert got.decode().splitlines()[1] == "'=cmd|' /C calc'!A0,-3,-2.5,'@x;y,ok"


def test_csv_safe_frame_and_id_rule():
    import pandas as pd

    from eco_value.ids import csv_safe_frame, id_problem

    df = csv_safe_frame(pd.DataFrame({"id": ["=A", "+B", "-C", "@D", "\tE", "\rF", "G"], "v": [-1.0] * 7}))
    assert df.id.tolist() == ["'=A", "'+B", "'-C", "'@D", "'\tE", "'\rF", "G"] and df.v.tolist() == [-1.0] * 7
    assert id_problem("510183-P00001") is None and id_problem("碳惠天府 CDCI") is None
    for bad, word in [("", "empty"), ("  ", "whitespace"), (None, "empty"), (float("nan"), "empty"), ("=1", "formula"),
                      ("a\nb", "U+000A"), (" a", "whitespace"), ("a\u200bb", "U+200B")]:
        assert word in (id_problem(bad) or ""), bad


def test_validate_refuses_empty_and_formula_parcel_ids(pilot_copy):
    import geopandas as gpd

    from eco_value.inputs.catalog import load_catalog
    from eco_value.inputs.validate import check_structure

    p = pilot_copy / "parcels.gpkg"
    g = gpd.read_file(p, layer="parcels")
    g.loc[0, "parcel_id"] = ""
    g.loc[1, "parcel_id"] = "=HYPERLINK(\"http://x\")"
    g.loc[2, "parcel_id"] = "@SUM(A1)"
    g.loc[3, "holder_id"] = "+86 123"
    g.to_file(p, layer="parcels", driver="GPKG")
    probs = [q for q in check_structure(load_catalog(pilot_copy / "catalog.toml")) if q.kind == "bad-id"]
    text_ = " | ".join(str(q) for q in probs)
    assert len(probs) == 1, text_
    assert "3 parcel_id value(s)" in text_ and "1 holder_id value(s)" in text_ and "'@SUM(A1)'" in text_
