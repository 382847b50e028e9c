"""The offline verifier against hostile bundles: it trusts nothing before the signature, opens only
regular files inside the bundle, never hangs or reads without bound, lists every problem (never a
traceback), and `--holdings` catches parcel-vintages issued twice under other serials."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import make_fake_run
from eco_value.exchange import verify as V
from eco_value.exchange.verify import verify

HANG_S = 30          # a verifier that has not answered by then is hanging
MEM_LIMIT = 2 << 30  # address-space limit for the subprocess: reading /dev/zero must not eat the machine


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One exported bundle (6 parcels, one issuance) and the trusted key, copied by each test."""
    from eco_value.exchange.bundle import export_bundle
    from eco_value.exchange.keys import generate, public_key_hex
    from eco_value.exchange.registry import issue
    from eco_value.store import Store

    base = tmp_path_factory.mktemp("hostile")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ECO_VALUE_KEY_DIR", str(base / "keys"))
        generate()
        store = Store(f"sqlite:///{base / 'reg.sqlite'}")
        run = make_fake_run(store, [100.0, 55.5, 30.2, -12.0, 7.9, 260.0])
        d = issue(store, run, 2023)
        export_bundle(store, d["issuance_id"], base / "bundle")
        key = public_key_hex()
        from eco_value.exchange.keys import signing_key
        sk = signing_key()
    (base / "issuer.pub").write_text(key + "\n")
    return {"bundle": base / "bundle", "key": key, "key_file": base / "issuer.pub", "sk": sk}


@pytest.fixture
def b(exported, tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(exported["bundle"], dst)
    return dst


def checks(probs) -> set[str]:
    return {p[0] for p in probs}


def resign(bundle: Path, sk, mutate=None, raw: bytes | None = None) -> None:
    """Rewrite manifest.json (mutated, or raw bytes) and sign it with the issuer's key: a *valid* signature."""
    if raw is None:
        m = json.loads((bundle / "manifest.json").read_bytes())
        mutate(m)
        raw = json.dumps(m, indent=2, sort_keys=True).encode()
    (bundle / "manifest.json").write_bytes(raw)
    (bundle / "manifest.sig").write_text(sk.sign(raw).signature.hex() + "\n")


def list_file(m: dict, rel: str, data: bytes) -> None:
    m["files"][rel] = hashlib.sha256(data).hexdigest()
    m.setdefault("file_sizes", {})[rel] = len(data)


def _limit():
    resource.setrlimit(resource.RLIMIT_AS, (MEM_LIMIT, MEM_LIMIT))


def run_verifier(bundle: Path, key_file: Path | None, *extra: str, cli: bool = False) -> subprocess.CompletedProcess:
    """The verifier in a subprocess with a timeout and a memory limit (a hang or unbounded read fails the test)."""
    cmd = ([sys.executable, "-m", "eco_value.cli", "verify"] if cli else [sys.executable, "-m", "eco_value.exchange.verify"])
    cmd += [str(bundle)] + (["--public-key", str(key_file)] if key_file else []) + list(extra)
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=HANG_S, preexec_fn=_limit)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the verifier hung on {bundle} (no answer within {HANG_S} s)")


def test_clean_bundle_verifies_and_lists_every_file(exported, b):
    assert verify(b, exported["key"]) == []
    m = json.loads((b / "manifest.json").read_bytes())
    on_disk = {p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file()} - {"manifest.json", "manifest.sig"}
    assert set(m["files"]) == set(m["file_sizes"]) == on_disk
    assert all(m["file_sizes"][r] == (b / r).stat().st_size for r in on_disk)


# ---- special files: FIFO, socket, device, symlinks; listed or merely present -------------------------

def _make_fifo(p: Path) -> None:
    p.unlink(missing_ok=True)
    os.mkfifo(p)


def _make_socket(p: Path) -> socket.socket:
    p.unlink(missing_ok=True)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(p))
    return s


@pytest.mark.parametrize("signed", [True, False], ids=["valid-signature", "tampered-signature"])
def test_fifo_listed_in_the_manifest_never_hangs(exported, b, signed):
    rel = "records/gep_statements.jsonl"
    _make_fifo(b / rel)
    if not signed:
        sig = bytearray((b / "manifest.sig").read_bytes())
        sig[0] = ord("0") if sig[0] != ord("0") else ord("1")
        (b / "manifest.sig").write_bytes(bytes(sig))
    t = time.monotonic()
    r = run_verifier(b, exported["key_file"])
    assert time.monotonic() - t < HANG_S
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    if signed:
        assert f"[not-regular-file] {rel}" in r.stdout and "FIFO" in r.stdout
    else:   # nothing is opened before the signature holds
        assert "[bad-signature] manifest.sig" in r.stdout and rel not in r.stdout


def test_fifo_present_but_unlisted_in_records_never_hangs(exported, b):
    _make_fifo(b / "records" / "extra.jsonl")
    r = run_verifier(b, exported["key_file"])
    assert r.returncode == 2 and "[unlisted-file] records/extra.jsonl" in r.stdout and "FIFO" in r.stdout, r.stdout + r.stderr


def test_socket_listed_or_present_is_refused(exported, b):
    s1 = _make_socket(b / "records" / "issuances.csv")
    s2 = _make_socket(b / "stray.sock")
    try:
        probs = verify(b, exported["key"])
    finally:
        s1.close()
        s2.close()
    assert ("not-regular-file", "records/issuances.csv") in {p[:2] for p in probs}
    assert ("unlisted-file", "stray.sock") in {p[:2] for p in probs}
    assert any("socket" in p[2] for p in probs)


def test_symlink_to_dev_zero_is_refused_without_reading(exported, b):
    rel = "records/gep_statements.jsonl"
    (b / rel).unlink()
    (b / rel).symlink_to("/dev/zero")
    r = run_verifier(b, exported["key_file"])
    assert r.returncode == 2 and f"[not-regular-file] {rel}" in r.stdout and "symbolic link" in r.stdout, r.stdout + r.stderr


def test_symlink_to_an_identical_file_or_folder_is_refused(exported, b, tmp_path):
    # a symlink whose target has the right bytes (hash holds): still not a file inside the bundle
    outside = tmp_path / "outside.jsonl"
    shutil.copy(b / "records/issuances.jsonl", outside)
    (b / "records/issuances.jsonl").unlink()
    (b / "records/issuances.jsonl").symlink_to(outside)
    assert ("not-regular-file", "records/issuances.jsonl") in {p[:2] for p in verify(b, exported["key"])}
    # a symlinked folder
    c = tmp_path / "c"
    shutil.copytree(exported["bundle"], c)
    shutil.move(c / "schemas", tmp_path / "schemas-elsewhere")
    (c / "schemas").symlink_to(tmp_path / "schemas-elsewhere")
    probs = verify(c, exported["key"])
    assert ("not-regular-file", "schemas/credit_block.v1.json") in {p[:2] for p in probs}, probs


def test_a_device_is_refused_before_it_is_opened():
    for name in ("null", "zero"):                       # /dev holds real character devices
        with pytest.raises(V.NotRegular, match="character device"):
            V.open_inside(Path("/dev"), name)


def test_a_device_node_inside_the_bundle_is_refused(exported, b):
    rel = "records/gep_statements.csv"
    (b / rel).unlink()
    try:
        os.mknod(b / rel, 0o600 | stat.S_IFCHR, os.makedev(1, 3))   # /dev/null
    except (PermissionError, OSError):
        pytest.skip("cannot create device nodes here")
    probs = verify(b, exported["key"])
    assert ("not-regular-file", rel) in {p[:2] for p in probs} and any("character device" in p[2] for p in probs)


# ---- paths in the manifest ---------------------------------------------------------------------------

@pytest.mark.parametrize("rel", ["../outside.txt", "ABSOLUTE", "records/../../outside.txt", "records/./x.txt",
                                 "records//x.txt", "records\\x.txt", ""])
def test_manifest_paths_outside_or_not_normal_are_refused(exported, b, rel):
    data = b"hello\n"
    (b.parent / "outside.txt").write_bytes(data)          # would hash correctly if followed
    if rel == "ABSOLUTE":
        rel = str(b.parent / "outside.txt")
    resign(b, exported["sk"], lambda m: list_file(m, rel, data))
    probs = verify(b, exported["key"])
    assert ("bad-path", rel) in {p[:2] for p in probs}, probs


def test_duplicate_paths_in_the_manifest_are_refused(exported, b):
    text = (b / "manifest.json").read_text()
    rel = "records/issuances.jsonl"
    line = next(ln for ln in text.splitlines() if ln.strip().startswith(f'"{rel}"'))
    raw = text.replace(line, line.rstrip(",") + ",\n" + line.rstrip(",") + ("," if line.endswith(",") else ""), 1)
    resign(b, exported["sk"], raw=raw.encode())
    assert ("duplicate-path", rel) in {p[:2] for p in verify(b, exported["key"])}
    # the same file under two spellings a case-insensitive file system would merge
    c = b.parent / "c"
    shutil.copytree(exported["bundle"], c)
    resign(c, exported["sk"], lambda m: (m["files"].__setitem__("RECORDS/issuances.jsonl", m["files"][rel]),
                                         m["file_sizes"].__setitem__("RECORDS/issuances.jsonl", m["file_sizes"][rel])))
    assert "duplicate-path" in checks(verify(c, exported["key"]))


def test_unlisted_files_anywhere_are_refused(exported, b):
    (b / "README.txt").write_text("not listed")
    (b / "extra").mkdir()
    (b / "extra" / "notes.csv").write_text("a,b\n")
    (b / "empty-folder").mkdir()
    got = {p[:2] for p in verify(b, exported["key"])}
    assert {("unlisted-file", "README.txt"), ("unlisted-file", "extra/notes.csv"), ("unlisted-file", "empty-folder")} <= got


# ---- sizes: the manifest's size is a hard limit, checked before reading --------------------------------

def test_a_2_gib_listed_file_is_refused_at_once(exported, b):
    rel = "records/gep_statements.jsonl"
    with open(b / rel, "r+b") as f:
        f.truncate(2 << 30)                                   # sparse: costs no disk
    t = time.monotonic()
    probs = verify(b, exported["key"])
    assert time.monotonic() - t < 1.0
    assert ("size-mismatch", rel) in {p[:2] for p in probs}
    assert "2147483648" in dict((p[1], p[2]) for p in probs)[rel]


def test_size_mismatch_and_missing_file(exported, b):
    (b / "records/issuances.csv").write_bytes((b / "records/issuances.csv").read_bytes() + b"x")
    (b / "records/credit_blocks.csv").unlink()
    got = {p[:2] for p in verify(b, exported["key"])}
    assert ("size-mismatch", "records/issuances.csv") in got and ("missing-file", "records/credit_blocks.csv") in got


# ---- the signature first --------------------------------------------------------------------------------

def test_nothing_is_read_when_the_signature_fails(exported, b):
    (b / "records/credit_blocks.jsonl").write_text("tampered\n")
    os.mkfifo(b / "records" / "fifo")
    (b / "manifest.sig").write_text("00" * 64 + "\n")
    probs = verify(b, exported["key"])
    assert probs == [("bad-signature", "manifest.sig", probs[0][2])], probs
    from nacl.signing import SigningKey

    other_hex = SigningKey.generate().verify_key.encode().hex()
    assert checks(verify(exported["bundle"], other_hex)) == {"bad-signature"}
    assert checks(verify(exported["bundle"], None)) == {"no-trusted-key"}
    assert checks(verify(exported["bundle"], "not hex")) == {"bad-public-key"}


def test_manifest_and_signature_are_read_with_a_size_cap(exported, b):
    with open(b / "manifest.json", "r+b") as f:
        f.truncate(4 << 30)
    t = time.monotonic()
    probs = verify(b, exported["key"])
    assert time.monotonic() - t < 1.0 and checks(probs) == {"manifest-too-large"}, probs
    (b / "manifest.json").unlink()
    os.mkfifo(b / "manifest.json")
    assert ("not-regular-file", "manifest.json") in {p[:2] for p in verify(b, exported["key"])}


# ---- malformed but parseable (and validly signed): a list of problems, never a traceback ---------------

MANIFEST_MUTATIONS = {
    "manifest-is-a-list": lambda m: [m],
    "files-is-a-list": lambda m: {**m, "files": list(m["files"])},
    "files-missing": lambda m: {k: v for k, v in m.items() if k != "files"},
    "hash-is-a-number": lambda m: {**m, "files": {**m["files"], "records/issuances.csv": 12}},
    "size-is-a-string": lambda m: {**m, "file_sizes": {**m["file_sizes"], "records/issuances.csv": "12"}},
    "size-is-negative": lambda m: {**m, "file_sizes": {**m["file_sizes"], "records/issuances.csv": -1}},
    "size-is-bool": lambda m: {**m, "file_sizes": {**m["file_sizes"], "records/issuances.csv": True}},
    "sizes-missing": lambda m: {k: v for k, v in m.items() if k != "file_sizes"},
    "record-counts-is-a-string": lambda m: {**m, "record_counts": "three"},
    "totals-is-a-list": lambda m: {**m, "totals": [1, 2]},
    "format-unknown": lambda m: {**m, "bundle_format": "eco-value-bundle/99"},
}


@pytest.mark.parametrize("name", sorted(MANIFEST_MUTATIONS))
def test_malformed_manifest_types_give_problems_not_tracebacks(exported, b, name):
    m = MANIFEST_MUTATIONS[name](json.loads((b / "manifest.json").read_bytes()))
    resign(b, exported["sk"], raw=json.dumps(m).encode())
    probs = verify(b, exported["key"])
    assert probs and all(len(p) == 3 and all(isinstance(x, str) for x in p) for p in probs)
    assert checks(probs) & {"bad-manifest", "record-count", "manifest-totals", "unknown-format"}, probs


RECORD_MUTATIONS = {
    "start-is-a-string": ("credit_blocks", lambda r: {**r, "unitBlockStart": "1"}),
    "end-missing": ("credit_blocks", lambda r: {k: v for k, v in r.items() if k != "unitBlockEnd"}),
    "parcels-is-a-string": ("credit_blocks", lambda r: {**r, "parcels": "P0001"}),
    "record-is-a-list": ("credit_blocks", lambda r: [r]),
    "record-is-null": ("credit_blocks", lambda r: None),
    "serial-is-a-number": ("credit_blocks", lambda r: {**r, "serial": 7}),
    "count-is-huge": ("credit_blocks", lambda r: {**r, "unitCount": 10 ** 400}),      # valid type, wrong count
    "parcel-lines-is-a-dict": ("issuances", lambda r: {**r, "parcelLines": {"a": 1}}),
    "parcel-line-gross-is-a-string": ("issuances", lambda r: {**r, "parcelLines": [{**r["parcelLines"][0], "gross": "1"}]
                                                             + r["parcelLines"][1:]}),
    "parcel-line-is-a-number": ("issuances", lambda r: {**r, "parcelLines": [3]}),
    "net-issued-missing": ("issuances", lambda r: {k: v for k, v in r.items() if k != "netIssued"}),
    "vintage-is-a-string": ("issuances", lambda r: {**r, "vintageYear": "2023"}),
    "nan": ("issuances", lambda r: {**r, "grossRemovals": float("nan")}),
}


@pytest.mark.parametrize("name", sorted(RECORD_MUTATIONS))
def test_malformed_records_give_problems_not_tracebacks(exported, b, name):
    kind, mutate = RECORD_MUTATIONS[name]
    rel = f"records/{kind}.jsonl"
    lines = (b / rel).read_text().splitlines()
    lines[0] = json.dumps(mutate(json.loads(lines[0])))
    data = ("\n".join(lines) + "\n").encode()
    (b / rel).write_bytes(data)
    resign(b, exported["sk"], lambda m: list_file(m, rel, data))
    probs = verify(b, exported["key"])
    assert probs and all(len(p) == 3 and all(isinstance(x, str) for x in p) for p in probs)
    assert {"schema-invalid", "bad-record", "serial-count"} & checks(probs), probs
    assert any(p[1] == rel for p in probs)


def test_malformed_everything_through_both_command_lines(exported, b):
    rel = "records/credit_blocks.jsonl"
    data = b'{"unitBlockStart": "x", "parcels": 5}\n[1, 2]\n"str"\n{"a": \n'
    (b / rel).write_bytes(data)
    resign(b, exported["sk"], lambda m: (list_file(m, rel, data), m.__setitem__("record_counts", {"credit_block": "x"})))
    for cli in (False, True):
        r = run_verifier(b, exported["key_file"], cli=cli)
        assert r.returncode == 2 and "Traceback" not in r.stderr + r.stdout and "internal error" not in r.stderr, r.stderr
        assert "schema-invalid" in r.stdout + r.stderr and "bad-record" in r.stdout + r.stderr


# ---- command-line inputs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("cli", [False, True], ids=["module", "eco-value"])
def test_missing_or_bad_public_key_file_is_a_clear_error(exported, b, tmp_path, cli):
    r = run_verifier(b, tmp_path / "nope.pub", cli=cli)
    out = r.stdout + r.stderr
    assert r.returncode == 2 and "Traceback" not in out and "nope.pub" in out and "does not exist" in out, out
    os.mkfifo(tmp_path / "fifo.pub")
    r = run_verifier(b, tmp_path / "fifo.pub", cli=cli)
    assert r.returncode == 2 and "not a regular file" in r.stdout + r.stderr
    for dev in ("/dev/zero", str(tmp_path)):                  # a device, a folder
        r = run_verifier(b, Path(dev), cli=cli)
        assert r.returncode == 2 and "not a regular file" in r.stdout + r.stderr, r.stdout + r.stderr
    (tmp_path / "link.pub").symlink_to(exported["key_file"])  # the user's own file may be a link
    assert run_verifier(b, tmp_path / "link.pub", cli=cli).returncode == 0
    (tmp_path / "bad.pub").write_text("zz" * 32)
    r = run_verifier(b, tmp_path / "bad.pub", cli=cli)
    assert r.returncode == 2 and "bad-public-key" in r.stdout + r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("cli", [False, True], ids=["module", "eco-value"])
def test_bad_holdings_file_is_listed_not_a_traceback(exported, b, tmp_path, cli):
    h = tmp_path / "held.jsonl"
    h.write_text('{"unitBlockStart": 1}\nnot json\n[1]\n{"unitBlockStart": "a", "unitBlockEnd": 3}\n')
    r = run_verifier(b, exported["key_file"], "--holdings", str(h), cli=cli)
    out = r.stdout + r.stderr
    assert r.returncode == 2 and "Traceback" not in out and out.count("bad-holdings") >= 4, out
    r = run_verifier(b, exported["key_file"], "--holdings", str(tmp_path / "none.jsonl"), cli=cli)
    assert r.returncode == 2 and "does not exist" in r.stdout + r.stderr


# ---- holdings: parcel-vintages as well as serials --------------------------------------------------------

def _blocks(bundle: Path) -> list[dict]:
    return [json.loads(x) for x in (bundle / "records/credit_blocks.jsonl").read_text().splitlines()]


def test_holdings_catch_the_same_parcel_vintage_at_other_serials(exported, b):
    shift = 10 ** 6
    held = [{**r, "unitBlockStart": r["unitBlockStart"] + shift, "unitBlockEnd": r["unitBlockEnd"] + shift,
             "issuanceId": "OTHER-STORE-1"} for r in _blocks(b)]
    probs = verify(b, exported["key"], held)
    assert "serial-overlap-held" not in checks(probs)
    pv = [p for p in probs if p[0] == "parcel-vintage-held"]
    assert len(pv) == 1 and "OTHER-STORE-1" in pv[0][2] and "5 parcel-vintage" in pv[0][2], probs
    # another vintage, or other parcels, at other serials: no double counting
    assert verify(b, exported["key"], [{**h, "vintageYear": 2022} for h in held]) == []
    assert verify(b, exported["key"], [{**h, "parcels": ["Q1"]} for h in held]) == []
    # another region's parcel of the same id is another parcel
    assert verify(b, exported["key"], [{**h, "regionAdcode": "510100"} for h in held]) == []


def test_holdings_from_a_second_store_through_the_cli(exported, b, tmp_path, monkeypatch):
    """A second registry issues the same parcels for the same vintage (its serials start elsewhere)."""
    from eco_value.exchange.bundle import export_bundle
    from eco_value.exchange.registry import issue
    from eco_value.store import Store

    monkeypatch.setenv("ECO_VALUE_KEY_DIR", str(exported["key_file"].parent / "keys"))
    store = Store(f"sqlite:///{tmp_path / 'second.sqlite'}")
    issue(store, make_fake_run(store, [900.0, 800.0], prefix="Z"), 2023)          # moves the serial counter on
    d = issue(store, make_fake_run(store, [100.0, 55.5, 30.2, -12.0, 7.9, 260.0]), 2023)
    export_bundle(store, d["issuance_id"], tmp_path / "second")
    held = tmp_path / "held.jsonl"
    held.write_text((tmp_path / "second/records/credit_blocks.jsonl").read_text())
    serials_a = {(r["unitBlockStart"], r["unitBlockEnd"]) for r in _blocks(b)}
    assert not serials_a & {(r["unitBlockStart"], r["unitBlockEnd"]) for r in _blocks(tmp_path / "second")}
    for cli in (False, True):
        r = run_verifier(b, exported["key_file"], "--holdings", str(held), cli=cli)
        assert r.returncode == 2 and "parcel-vintage-held" in r.stdout + r.stderr, r.stdout + r.stderr


def test_a_parcel_vintage_in_two_issuances_of_one_bundle(exported, b):
    rel = "records/issuances.jsonl"
    rec = json.loads((b / rel).read_text())
    data = (json.dumps(rec) + "\n" + json.dumps({**rec, "issuanceId": rec["issuanceId"] + "-again"}) + "\n").encode()
    (b / rel).write_bytes(data)
    resign(b, exported["sk"], lambda m: (list_file(m, rel, data), m["record_counts"].__setitem__("issuance", 2)))
    assert "parcel-vintage-twice" in checks(verify(b, exported["key"]))


# ---- the fast schema check gives jsonschema's verdict -----------------------------------------------------

_json = st.recursive(st.none() | st.booleans() | st.integers(-3, 3000) | st.floats(-2, 2, allow_nan=False)
                     | st.sampled_from(["", "held", "buffer", "2023-01-01", "2023-13-01", "510183", "x" * 64, "a" * 64,
                                        "removal - nature", "credit_block/v1", "ECV1-510183-FC1-2023-000000000001-000000000250-12"]),
                     lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(["gross", "parcelId", "z"]), c, max_size=3),
                     max_leaves=6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fast_schema_verdict_equals_jsonschema(exported, data):
    import jsonschema

    kind = data.draw(st.sampled_from(["credit_block", "issuance"]))
    rec = json.loads((exported["bundle"] / f"records/{kind}s.jsonl").read_text().splitlines()[0])
    schema = json.loads((V.own_schema_dir() / V.SCHEMA_FILES[kind]).read_text())
    full = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    target = rec
    if kind == "issuance" and data.draw(st.booleans()):
        target = rec["parcelLines"][0]                        # mutate inside an array of objects
    for _ in range(data.draw(st.integers(0, 3))):
        op = data.draw(st.sampled_from(["set", "delete", "add"]))
        if op == "set" and target:
            target[data.draw(st.sampled_from(sorted(target)))] = data.draw(_json)
        elif op == "delete" and target:
            del target[data.draw(st.sampled_from(sorted(target)))]
        else:
            target[data.draw(st.sampled_from(["extra", "beneficiary", "otherProgrammes"]))] = data.draw(_json)
    fast = V._Validator(full)
    assert fast.valid(rec) == full.is_valid(rec), rec
    assert fast.valid(rec) == full.is_valid(rec)              # and again, from the cache


def test_fast_schema_verdict_on_every_field(exported):
    import jsonschema

    values = [None, True, 0, 1, 1.0, -1, 2.5, 10 ** 6, "", "x", "2023-01-01", "2023-02-30", [], [""], ["P1"], [1], {}, {"a": 1}]
    for kind in ("credit_block", "issuance", "gep_statement"):
        lines = (exported["bundle"] / f"records/{kind}s.jsonl").read_text().splitlines()
        if not lines:
            continue
        schema = json.loads((V.own_schema_dir() / V.SCHEMA_FILES[kind]).read_text())
        full = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
        fast = V._Validator(full)
        base = json.loads(lines[0])
        targets = [(base, base)] + ([(base, base["parcelLines"][0])] if kind == "issuance" else [])
        n_invalid = 0
        for rec, target in targets:
            for k in sorted(target):
                old = target[k]
                for v in values:
                    target[k] = v
                    assert fast.valid(rec) == full.is_valid(rec), (kind, k, v)
                    n_invalid += not full.is_valid(rec)
                target[k] = old
        assert n_invalid > 100 and fast.valid(base) and full.is_valid(base)
