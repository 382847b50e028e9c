"""Outputs never delete what they did not create (issue 12).

Every command that takes ``--out`` writes into a fresh temporary sibling and renames it into place;
an existing non-empty folder (or an existing file) is refused unless ``--overwrite``, and even then
never one that is or holds the current folder, the catalog, its inputs or the database. A run's
status says what was committed; previous outputs are replaced only by complete new ones; leftovers of
a killed process are recognised and cleaned by the next command; one migration at a time.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import make_fake_run
from eco_value.inputs.pilot import generate_pilot

RES_M = 300.0


# -- helpers ---------------------------------------------------------------------------------------
def ev(capsys, monkeypatch, *args):
    """Run the ``eco-value`` command line in this process; returns (exit code, stdout, stderr)."""
    from eco_value import cli

    monkeypatch.setattr(sys, "argv", ["eco-value", *map(str, args)])
    monkeypatch.setattr(cli.err, "width", 100000)
    monkeypatch.setattr(cli.console, "width", 100000)
    code = 0
    try:
        cli.main()
    except SystemExit as e:
        code = e.code
    c = capsys.readouterr()
    return code, c.out, c.err


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path → SHA-256 of every file below ``folder`` (hidden ones included)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name or ".old-" in p.name)


def user_folder(path: Path, n: int = 2) -> dict[str, str]:
    path.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (path / f"notes{i}.txt").write_text(f"the user's own file {i}\n")
    (path / "sub").mkdir(exist_ok=True)
    (path / "sub" / "data.csv").write_text("a,b\n1,2\n")
    return snapshot(path)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A 300 m pilot and one run of it through the command line (in this process), with ``--overwrite``
    onto a folder of the user's files: the success path of a replacement."""
    import contextlib
    import io

    from eco_value import cli

    base = tmp_path_factory.mktemp("safe")
    cat = generate_pilot("qionglai", base / "pilot", resolution_m=RES_M, seed=5)
    (base / "db").mkdir()
    db = f"sqlite:///{base / 'db' / 'store.sqlite'}"
    out = base / "out"
    user_folder(out)
    argv, buf = sys.argv, io.StringIO()
    sys.argv = ["eco-value", "run", str(cat), "--db", db, "--out", str(out), "--overwrite", "--mc-draws", "20", "--json"]
    try:
        with contextlib.redirect_stdout(buf), pytest.raises(SystemExit) as ex:
            cli.main()
    finally:
        sys.argv = argv
    assert ex.value.code == 0
    j = json.loads(buf.getvalue())
    return {"base": base, "cat": cat, "db": db, "run_id": j["run_id"], "out": out, "json": j}


@pytest.fixture
def issued(tmp_path, key_dir):
    from eco_value.exchange.registry import issue
    from eco_value.store import Store

    (tmp_path / "dbdir").mkdir()
    url = f"sqlite:///{tmp_path / 'dbdir' / 'reg.sqlite'}"
    store = Store(url)
    run = make_fake_run(store, [100.0, 55.5, 30.2, 260.0])
    d = issue(store, run, 2023)
    return url, d["issuance_id"]


# -- run ---------------------------------------------------------------------------------------------
def test_run_refuses_a_non_empty_folder_before_computing(small, tmp_path, capsys, monkeypatch):
    out = tmp_path / "mine"
    before = user_folder(out)
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    code, _o, e = ev(capsys, monkeypatch, "run", small["cat"], "--db", db, "--out", out, "--mc-draws", "20")
    assert code == 2, e
    assert "Traceback" not in e and str(out) in e and "not empty" in e and "--overwrite" in e
    assert snapshot(out) == before
    from eco_value.store import Store
    assert Store(db).runs() == []           # refused before a run was started
    assert leftovers(tmp_path) == []


def test_run_never_replaces_the_catalog_its_inputs_the_database_or_the_current_folder(small, tmp_path, capsys, monkeypatch):
    import shutil

    pilot = tmp_path / "pilot"
    shutil.copytree(small["cat"].parent, pilot, ignore=shutil.ignore_patterns("results", "out"))
    # one input kept outside the catalog folder, named by an absolute path
    shared = tmp_path / "shared"
    shared.mkdir()
    os.replace(pilot / "dem.tif", shared / "dem.tif")
    cat = pilot / "catalog.toml"
    cat.write_text(cat.read_text().replace('path = "dem.tif"', f'path = "{shared / "dem.tif"}"'))
    (tmp_path / "dbdir").mkdir()
    db = f"sqlite:///{tmp_path / 'dbdir' / 'x.sqlite'}"
    work = tmp_path / "work" / "here"
    user_folder(work)
    monkeypatch.chdir(work)
    snaps = {p: snapshot(p) for p in (pilot, shared, work)}
    cases = [(pilot, "catalog"), (tmp_path, "catalog"), (shared, "dem.tif"), (tmp_path / "dbdir", "database"),
             (Path("."), "current folder"), (Path(".."), "current folder"), (work, "current folder")]
    for out, word in cases:
        code, _o, e = ev(capsys, monkeypatch, "run", cat, "--db", db, "--out", out, "--overwrite", "--mc-draws", "20")
        assert code == 2, (out, e)
        assert word in e and "Traceback" not in e, (out, e)
    for p, s in snaps.items():
        assert snapshot(p) == s
    # without --overwrite `--out .` is refused as well (the folder is not empty, and it is the current folder)
    code, _o, e = ev(capsys, monkeypatch, "run", cat, "--db", db, "--out", ".", "--mc-draws", "20")
    assert code == 2 and snapshot(work) == snaps[work]


def test_run_overwrite_replaces_a_previous_output_only_when_the_new_one_is_complete(small):
    out, j = small["out"], small["json"]
    names = {p.name for p in out.iterdir()}
    assert "notes0.txt" not in names and "sub" not in names
    assert {"report.html", "zones.gpkg", "gep_cny_per_km2.tif"} <= names
    assert all(Path(v).exists() and Path(v).parent in (out, out.parent) for v in j["outputs"].values())
    assert leftovers(small["base"]) == [] and not any(p.name.startswith(".") for p in out.iterdir())
    from eco_value.store import Store
    r = Store(small["db"]).run(j["run_id"])
    assert r.status == "complete" and json.loads(r.summary_json)["outputs_status"] == "written"


def test_ctrl_c_while_writing_the_report_keeps_the_committed_run_complete_and_the_old_outputs(small, tmp_path, monkeypatch):
    import eco_value.outputs.report as report_mod
    from eco_value.pipeline import RunOptions, run_valuation
    from eco_value.store import Store

    out = tmp_path / "res"
    before = user_folder(out)

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(report_mod, "write_report", interrupted)
    store = Store(f"sqlite:///{tmp_path / 'k.sqlite'}")
    with pytest.raises(KeyboardInterrupt):
        run_valuation(small["cat"], store, RunOptions(out_dir=out, mc_draws=20, overwrite=True))
    (r,) = store.runs()
    assert r.status == "complete"                       # its rows were committed
    assert store.count_rows(r.id)["services"] > 0
    assert json.loads(r.summary_json)["outputs_status"].startswith("not written")
    assert snapshot(out) == before                      # previous outputs untouched
    assert leftovers(tmp_path) == []
    # the same run asked again is computed again (to write its files), not shown as a stored run

    class Computed(Exception):
        pass

    def computing(*a, **k):
        raise Computed

    import eco_value.pipeline as pipeline
    monkeypatch.setattr(pipeline, "compute_valuation", computing)
    with pytest.raises(Computed):
        run_valuation(small["cat"], store, RunOptions(out_dir=out, mc_draws=20, overwrite=True))


def test_a_complete_run_whose_process_died_before_its_files_were_in_place_is_marked(tmp_path):
    import socket

    from eco_value.store import Store
    from eco_value.store.models import Run

    store = Store(f"sqlite:///{tmp_path / 'm.sqlite'}")
    rid = make_fake_run(store, [1.0])
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with store.session() as s:
        r = s.get(Run, rid)
        r.summary_json = json.dumps({"outputs_status": "pending"}, sort_keys=True)
        r.pid, r.host = int(gone.stdout), socket.gethostname()
        s.add(r)
        s.commit()
    assert store.mark_interrupted() == 1
    r = store.run(rid)
    assert r.status == "complete" and json.loads(r.summary_json)["outputs_status"].startswith("not written: interrupted")


def test_ctrl_c_before_the_commit_fails_the_run_and_keeps_the_old_outputs(small, tmp_path, monkeypatch):
    import eco_value.pipeline as pipeline
    from eco_value.pipeline import RunOptions, run_valuation
    from eco_value.store import Store

    out = tmp_path / "res"
    before = user_folder(out)
    store = Store(f"sqlite:///{tmp_path / 'k.sqlite'}")
    seen = {}

    def interrupted(cat, rules, opts, say, run_id, raster_dir, inputs):
        seen["dir"] = raster_dir
        (raster_dir / "half.tif").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "compute_valuation", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_valuation(small["cat"], store, RunOptions(out_dir=out, mc_draws=20, overwrite=True))
    (r,) = store.runs()
    assert r.status == "failed" and "KeyboardInterrupt" in r.error
    assert store.count_rows(r.id)["services"] == 0
    assert seen["dir"].parent == tmp_path and ".res.partial-" in seen["dir"].name
    assert snapshot(out) == before and leftovers(tmp_path) == []


def test_sigkill_mid_run_leaves_the_previous_output_and_the_next_command_cleans_up(small, tmp_path, capsys, monkeypatch):
    out = tmp_path / "res"
    before = user_folder(out)
    db = f"sqlite:///{tmp_path / 'kill.sqlite'}"
    cmd = [sys.executable, "-m", "eco_value.cli", "run", str(small["cat"]), "--db", db, "--out", str(out),
           "--mc-draws", "20"]
    p = subprocess.Popen(cmd + ["--overwrite"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    try:
        while time.time() < deadline and p.poll() is None:
            parts = [q for q in tmp_path.iterdir() if ".partial-" in q.name]
            if parts and any(parts[0].glob("*.tif")):
                break
            time.sleep(0.02)
        assert p.poll() is None, "the run ended before it could be killed mid-write"
        p.send_signal(signal.SIGKILL)
    finally:
        p.wait()
    assert leftovers(tmp_path), "the killed run had a temporary folder"
    assert snapshot(out) == before
    code, _o, e = ev(capsys, monkeypatch, *cmd[3:])     # the next command (refused: no --overwrite)
    assert code == 2 and "not empty" in e, e
    assert leftovers(tmp_path) == []
    assert snapshot(out) == before
    from eco_value.store import Store
    assert [x.status for x in Store(db).runs()] == ["failed"]


# -- export --------------------------------------------------------------------------------------------
def test_export_refuses_user_folders_the_current_folder_and_the_database_folder(issued, tmp_path, capsys, monkeypatch):
    url, iid = issued
    mine = tmp_path / "mine"
    before = user_folder(mine)
    code, _o, e = ev(capsys, monkeypatch, "export", iid, "--out", mine, "--db", url)
    assert code == 2 and "not empty" in e and snapshot(mine) == before
    work = tmp_path / "work"
    wsnap = user_folder(work)
    monkeypatch.chdir(work)
    for out in (".", work, tmp_path):    # tmp_path holds the database as well
        code, _o, e = ev(capsys, monkeypatch, "export", iid, "--out", out, "--db", url, "--overwrite")
        assert code == 2 and ("current folder" in e or out == tmp_path) and "Traceback" not in e, e
    assert snapshot(work) == wsnap
    code, _o, e = ev(capsys, monkeypatch, "export", iid, "--out", tmp_path / "dbdir", "--db", url, "--overwrite")
    assert code == 2 and "database" in e and (tmp_path / "dbdir" / "reg.sqlite").exists()
    assert leftovers(tmp_path) == [] and leftovers(work) == []


def test_export_overwrite_replaces_a_bundle_with_a_complete_one(issued, tmp_path, capsys, monkeypatch):
    from eco_value.exchange.keys import public_key_hex
    from eco_value.exchange.verify import verify

    url, iid = issued
    b = tmp_path / "bundle"
    assert ev(capsys, monkeypatch, "export", iid, "--out", b, "--db", url)[0] == 0
    code, _o, e = ev(capsys, monkeypatch, "export", iid, "--out", b, "--db", url)
    assert code == 2 and "--overwrite" in e
    (b / "stray.txt").write_text("x")
    assert ev(capsys, monkeypatch, "export", iid, "--out", b, "--db", url, "--overwrite")[0] == 0
    assert not (b / "stray.txt").exists() and verify(b, public_key_hex()) == []
    assert leftovers(tmp_path) == []


def test_sigkill_mid_export_is_cleaned_by_the_next_export(issued, tmp_path, capsys, monkeypatch):
    url, iid = issued
    b = tmp_path / "b"
    assert ev(capsys, monkeypatch, "export", iid, "--out", b, "--db", url)[0] == 0
    before = snapshot(b)
    script = ("import os, signal, sys\n"
              "import eco_value.exchange.bundle as m\n"
              "m.signing_key = lambda: os.kill(os.getpid(), signal.SIGKILL)\n"   # dies after the records are written
              "from eco_value.cli import main\n"
              f"sys.argv = ['eco-value', 'export', {iid!r}, '--out', {str(b)!r}, '--db', {url!r}, '--overwrite']\n"
              "main()\n")
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert leftovers(tmp_path) and snapshot(b) == before
    code, _o, e = ev(capsys, monkeypatch, "export", iid, "--out", tmp_path / "c", "--db", url)
    assert code == 0, e
    assert leftovers(tmp_path) == [] and snapshot(b) == before


# -- every other command with --out ---------------------------------------------------------------------
def test_file_outputs_refuse_existing_files_unless_overwrite_and_never_the_database(small, tmp_path, capsys, monkeypatch, key_dir):
    db, rid = small["db"], small["run_id"]
    db_file = Path(db.removeprefix("sqlite:///"))
    db_before = hashlib.sha256(db_file.read_bytes()).hexdigest()
    commands = {   # command → what it must never replace, even with --overwrite (besides folders)
        "report": (["report", rid, "--db", db], [(db_file, "database"), (small["cat"], "catalog")]),
        "export-table": (["export-table", "carbon", rid, "--db", db], [(db_file, "database"), (small["cat"], "catalog")]),
        "export-table runs": (["export-table", "runs", "--db", db], [(db_file, "database")]),
        "methods": (["methods"], []),
        "keys export": (["keys", "export"], [(key_dir / "issuer_ed25519.key", "signing key")]),
    }
    for name, (args, never) in commands.items():
        f = tmp_path / f"{name.replace(' ', '_')}.out"
        f.write_text("the user's own file\n")
        code, _o, e = ev(capsys, monkeypatch, *args, "--out", f)
        assert code == 2 and "exists" in e and "--overwrite" in e, (name, e)
        assert f.read_text() == "the user's own file\n", name
        code, _o, e = ev(capsys, monkeypatch, *args, "--out", f, "--overwrite")
        assert code == 0, (name, e)
        assert f.read_text() != "the user's own file\n", name
        for bad, word in never + [(tmp_path, "folder")]:
            code, _o, e = ev(capsys, monkeypatch, *args, "--out", bad, "--overwrite")
            assert code == 2 and word in e and "Traceback" not in e, (name, bad, e)
    assert hashlib.sha256(db_file.read_bytes()).hexdigest() == db_before
    assert small["cat"].exists()
    assert leftovers(tmp_path) == [] and leftovers(db_file.parent) == []


def test_pilot_data_refuses_a_non_empty_folder_and_the_current_folder(tmp_path, capsys, monkeypatch):
    mine = tmp_path / "mine"
    before = user_folder(mine)
    code, _o, e = ev(capsys, monkeypatch, "pilot-data", "dayi", "--out", mine, "--resolution", "300")
    assert code == 2 and "not empty" in e and snapshot(mine) == before
    monkeypatch.chdir(mine)
    code, _o, e = ev(capsys, monkeypatch, "pilot-data", "dayi", "--out", ".", "--resolution", "300", "--overwrite")
    assert code == 2 and "current folder" in e and snapshot(mine) == before
    monkeypatch.chdir(tmp_path)
    code, _o, e = ev(capsys, monkeypatch, "pilot-data", "dayi", "--out", mine, "--resolution", "300", "--overwrite")
    assert code == 0, e
    assert (mine / "catalog.toml").exists() and not (mine / "notes0.txt").exists()
    assert leftovers(tmp_path) == [] and not any(p.name.startswith(".") for p in mine.iterdir())


# -- the helper itself -----------------------------------------------------------------------------------
def test_two_writers_of_the_same_output_use_their_own_temporary_folders(tmp_path):
    from eco_value.safe_write import safe_output

    out = tmp_path / "o"
    a, b = safe_output(out, overwrite=True), safe_output(out, overwrite=True)
    with a.staging() as ta, b.staging() as tb:
        assert ta != tb and ta.parent == tb.parent == tmp_path
        (ta / "who").write_text("a")
        (tb / "who").write_text("b")
    assert (out / "who").read_text() == "a"        # b published first (inner context), a replaced it
    assert leftovers(tmp_path) == []


def test_a_failed_write_leaves_nothing_and_a_late_conflict_is_refused(tmp_path):
    from eco_value.safe_write import OutputError, safe_output

    out = tmp_path / "o"
    with pytest.raises(RuntimeError):
        with safe_output(out).staging() as t:
            (t / "x").write_text("half")
            raise RuntimeError("boom")
    assert not out.exists() and leftovers(tmp_path) == []
    s = safe_output(out)                              # checked: absent
    with pytest.raises(OutputError, match="meanwhile"):
        with s.staging() as t:
            (t / "x").write_text("new")
            user_folder(out)                         # another process created it in between
    assert (out / "notes0.txt").exists() and not (out / "x").exists() and leftovers(tmp_path) == []


def test_leftovers_of_a_live_process_are_kept_and_of_a_dead_one_removed(tmp_path):
    from eco_value.safe_write import safe_output

    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        dead_pid = int(dead.stdout)
        (tmp_path / f".b.partial-{dead_pid}-abc123").mkdir()
        (tmp_path / f".r.html.partial-{dead_pid}-zz").mkdir()
        (tmp_path / f".b.partial-{p.pid}-live12").mkdir()
        (tmp_path / f".b.partial-{os.getpid()}-self12").mkdir()
        (tmp_path / ".b.partial-notapid").mkdir()      # not ours: never touched
        safe_output(tmp_path / "new")
        assert leftovers(tmp_path) == sorted([f".b.partial-{p.pid}-live12", f".b.partial-{os.getpid()}-self12",
                                              ".b.partial-notapid"])
    finally:
        p.kill()
        p.wait()


# -- one migration at a time ------------------------------------------------------------------------------
def test_two_processes_creating_a_new_database_do_not_race_in_the_migration(db_url):
    url = db_url                         # a fresh SQLite file, or an emptied PostgreSQL schema
    script = ("import sys\n"
              "import eco_value.store, alembic.command, sqlmodel\n"
              "print('ready', flush=True); sys.stdin.readline()\n"
              f"eco_value.store.Store({url!r}).runs()\n")
    procs = [subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        assert p.stdout.readline() == "ready\n"
    for p in procs:                      # both start migrating the same fresh file at once
        p.stdin.write("go\n")
        p.stdin.flush()
    errs = [(p.wait(), p.stderr.read()) for p in procs]
    assert all(rc == 0 for rc, _ in errs), [e[-400:] for _, e in errs]


def test_overwrite_without_an_atomic_exchange_and_an_interrupted_replacement_is_undone(tmp_path, monkeypatch):
    import eco_value.safe_write as sw

    out = tmp_path / "o"
    user_folder(out)
    exchanged = {}
    real = sw._exchange
    monkeypatch.setattr(sw, "_exchange", lambda a, b: exchanged.setdefault("ok", real(a, b)))
    with sw.safe_output(out, overwrite=True).staging() as t:
        (t / "new").write_text("1")
    assert sorted(p.name for p in out.iterdir()) == ["new"] and leftovers(tmp_path) == []
    if sys.platform.startswith("linux"):
        assert exchanged["ok"] is True               # the previous output was swapped out atomically
    monkeypatch.setattr(sw, "_exchange", lambda a, b: False)   # file systems without renameat2
    with sw.safe_output(out, overwrite=True).staging() as t:
        (t / "newer").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["newer"] and leftovers(tmp_path) == []
    # killed between its two renames: the previous output sits aside and the name is free
    gone = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout)
    aside = tmp_path / f".o.old-{gone}-x1"
    aside.mkdir()
    os.rename(out, aside / "o")
    with pytest.raises(sw.OutputError, match="not empty"):
        sw.safe_output(out)                          # the next output puts it back first, then refuses
    assert (out / "newer").read_text() == "2" and leftovers(tmp_path) == []
