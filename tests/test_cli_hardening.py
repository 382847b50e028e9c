"""CLI hardening (issue 12): secrets never printed, usage errors exit 2, messages shown literally."""

from __future__ import annotations

import pytest

from eco_value import cli
from eco_value.store.db import display_url, mask_secrets, url_secrets

PASSWORD = "S3cretPW"
PG_DOWN = f"postgresql://alice:{PASSWORD}@127.0.0.1:1/eco"          # nothing listens on port 1
PG_UP = f"postgresql+psycopg://alice:{PASSWORD}@db.example:5432/eco"  # answered by a SQLite store (below)


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """``eco-value ARGS`` in this process (fast): exit code, stdout, stderr."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as ex:
        cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    code = ex.value.code
    return (0 if code is None else code), out, err


# every command that takes --db, with arguments that name things the store does not have
def _commands(tmp):
    (tmp / "status.csv").write_text("first,last,status,beneficiary\n1,2,retired,Chengdu Metro\n", encoding="utf-8")
    (tmp / "demo" / "qionglai").mkdir(parents=True, exist_ok=True)
    (tmp / "demo" / "qionglai" / "catalog.toml").write_text("not a catalog", encoding="utf-8")
    return {
        "run": ["run", tmp / "missing" / "catalog.toml"],
        "demo": ["demo", "--out", tmp / "demo"],
        "runs": ["runs"],
        "show": ["show", "nosuchrun"],
        "diff": ["diff", "nosuchrun", "nosuchrun2"],
        "export-table": ["export-table", "services", "nosuchrun", "--out", tmp / "t.csv"],
        "report": ["report", "nosuchrun", "--out", tmp / "r.html"],
        "explain": ["explain", "nosuchrun", "--parcel", "P1"],
        "rerun": ["rerun", "nosuchrun"],
        "issue": ["issue", "nosuchrun", "--vintage", "2022"],
        "export": ["export", "nosuchissuance", "--out", tmp / "bundle"],
        "apply-status": ["apply-status", tmp / "status.csv"],
        "audit log": ["audit", "log"],
        "value-unit": ["value-unit", "nosuchrun", "--polygon", tmp / "p.geojson"],
        "damage": ["damage", "nosuchrun", "--after-lulc", tmp / "a.tif", "--polygon", tmp / "p.geojson"],
        "allocate": ["allocate", "nosuchrun", "--total", "10", "--unit", "t"],
        "project create": ["project", "create", "--id", "QL1", "--name", "n", "--developer", "d", "--methodology",
                           "ccer-14-001-v01", "--start", "2020-01-01", "--run", "nosuchrun", "--parcels", tmp / "parcels.csv"],
        "project show": ["project", "show", "NOSUCH"],
        "sensitivity": ["sensitivity", "nosuchrun"],
        "compare": ["compare", "nosuchrun", "nosuchrun2"],
        "project package": ["project", "package", "NOSUCH", "--out", tmp / "pkg"],
        "serve": ["serve", "--users", tmp / "nousers.json", "--port", "1"],   # refuses before binding: no users
        "issuance verify": ["issuance", "verify", "nosuchissuance", "--verification-body", "b", "--verification-approach", "a",
                            "--verification-date", "2024-01-01"],
    }


COMMANDS = [
    "run", "demo", "runs", "show", "diff", "export-table", "report", "explain", "rerun", "issue", "export",
    "apply-status", "audit log", "value-unit", "damage", "allocate", "project create", "project show", "issuance verify",
    "sensitivity", "compare", "project package", "serve"]


def test_the_sweep_covers_every_command_that_takes_db():
    import typer.main

    group = typer.main.get_command(cli.app)
    found = set()

    def walk(g, prefix=""):
        for name, c in g.commands.items():
            if hasattr(c, "commands"):
                walk(c, f"{prefix}{name} ")
            elif any(p.name == "db" for p in c.params):
                found.add(prefix + name)
    walk(group)
    assert found == set(COMMANDS)


@pytest.fixture
def pg_answered_by_sqlite(monkeypatch, tmp_path):
    """A password-protected PostgreSQL URL whose store is an (empty, migrated) SQLite file."""
    import eco_value.store as store_mod
    from eco_value.store.db import get_engine

    real = store_mod.get_engine
    lite = get_engine(f"sqlite:///{tmp_path / 'behind-pg.sqlite'}")
    monkeypatch.setattr(store_mod, "get_engine", lambda url, *a, **k: lite if url.startswith("postgresql") else real(url, *a, **k))
    return PG_UP


@pytest.mark.parametrize("command", COMMANDS)
def test_missing_ids_never_print_the_password(command, pg_answered_by_sqlite, tmp_path, capsys):
    args = _commands(tmp_path)[command]
    code, out, err = run_cli(capsys, *args, "--db", pg_answered_by_sqlite)
    assert PASSWORD not in out + err
    assert "internal error" not in err and "Traceback" not in err
    if command in ("runs", "audit log"):
        assert code == 0
    else:
        assert code == 2, err
    if command == "show":
        assert "no run 'nosuchrun' in postgresql+psycopg://alice:***@db.example:5432/eco" in err


@pytest.mark.parametrize("command", COMMANDS)
def test_unreachable_server_is_a_clear_error_without_the_password(command, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ECO_VALUE_DB", raising=False)
    args = _commands(tmp_path)[command]
    code, out, err = run_cli(capsys, *args, "--db", PG_DOWN)
    assert PASSWORD not in out + err
    assert code == 2, err
    assert "cannot open the database postgresql+psycopg://alice:***@127.0.0.1:1/eco" in err
    assert "Fix:" in err and "internal error" not in err


def test_password_from_the_environment_is_not_printed_either(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ECO_VALUE_DB", PG_DOWN)
    code, out, err = run_cli(capsys, "show", "nosuchrun")
    assert code == 2 and PASSWORD not in out + err and "alice:***@" in err


def test_last_resort_filter_masks_a_password_in_any_error(monkeypatch, tmp_path, capsys):
    """Even an unexpected error that quotes the URL or a libpq conninfo does not show the password."""
    from eco_value.store import Store

    def boom(self):
        raise RuntimeError(f"driver said: {PG_UP} / host=db user=alice password={PASSWORD} / bare {PASSWORD}")
    monkeypatch.setattr(Store, "runs", boom)
    code, out, err = run_cli(capsys, "runs", "--db", f"sqlite:///{tmp_path / 's.sqlite'}")
    assert code == 1 and "internal error" in err and PASSWORD in f"{PG_UP}"  # (the URL does carry it)
    assert "alice:***@db.example" in err and "password=***" in err
    monkeypatch.setenv("ECO_VALUE_DB", PG_UP)    # a password the user gave is masked wherever it appears
    code, out, err = run_cli(capsys, "runs", "--db", f"sqlite:///{tmp_path / 's.sqlite'}")
    assert PASSWORD not in out + err and "bare ***" in err


@pytest.mark.parametrize("url, shown", [
    (PG_UP, "postgresql+psycopg://alice:***@db.example:5432/eco"),
    ("postgresql://bob:p%40ss%2Fw0rd@h/db", "postgresql://bob:***@h/db"),
    ("sqlite:////tmp/x.sqlite", "sqlite:////tmp/x.sqlite"),
    ("not a url alice:pw@", "not a url alice:pw@"),
])
def test_display_url_masks_only_the_password(url, shown):
    assert display_url(url) == shown


def test_mask_secrets_catches_encoded_and_raw_forms():
    url = "postgresql://bob:p%40ss%2Fw0rd@h/db"
    secrets = url_secrets(url)
    assert "p@ss/w0rd" in secrets and "p%40ss%2Fw0rd" in secrets
    text = f"failed for {url} (password 'p@ss/w0rd'; dsn password=p%40ss%2Fw0rd)"
    masked = mask_secrets(text, secrets)
    assert "w0rd" not in masked and masked.count("***") == 3


@pytest.mark.parametrize("args, message", [
    (["show"], "Missing argument 'run_id'"),
    (["show", "x", "--bogus"], "No such option: --bogus"),
    (["nosuch"], "No such command 'nosuch'"),
    (["allocate", "x", "--total", "abc", "--unit", "t"], "Invalid value for '--total'"),
    (["damage", "x", "--after-lulc", "a.tif", "--polygon", "p.gpkg", "--recovery-years", "ten"],
     "Invalid value for '--recovery-years'"),
])
def test_usage_errors_exit_2_with_clicks_message(args, message, capsys):
    code, out, err = run_cli(capsys, *args)
    assert code == 2, err
    assert message in err and "Usage: eco-value" in err
    assert "internal error" not in err


def test_bracketed_text_in_an_error_is_printed_literally(tmp_path, capsys):
    code, out, err = run_cli(capsys, "carbon-stock", "--lulc", tmp_path / "no.tif", "--pools", tmp_path / "no.csv")
    assert code == 2
    assert f"[missing-file] {tmp_path / 'no.csv'} (layer 'pools')" in err


def test_carbon_stock_runs_before_typer_with_one_option_table(tmp_path, capsys):
    """carbon-stock is parsed by argparse from CARBON_STOCK_OPTIONS (start-up without typer); the typer
    command only lists it and forwards (e.g. after --debug): same help, same errors, exit 2."""
    code, out, err = run_cli(capsys, "carbon-stock", "--help")
    assert code == 0
    for flag, *_ in cli.CARBON_STOCK_OPTIONS:
        assert flag in out
    for args in (["carbon-stock", "--lulc", "a.tif"], ["--debug", "carbon-stock", "--lulc", "a.tif"]):
        code, out, err = run_cli(capsys, *args)
        assert code == 2 and "Usage: eco-value carbon-stock" in err and "required: --pools" in err, (args, err)
    code, out, err = run_cli(capsys, "--debug", "carbon-stock", "--lulc", tmp_path / "no.tif", "--pools", tmp_path / "no.csv")
    assert code == 2 and "[missing-file]" in err
    code, out, err = run_cli(capsys, "carbon-stock", "--lulc", "a.tif", "--pools", "p.csv", "--price", "abc")
    assert code == 2 and "invalid float value: 'abc'" in err
    code, out, err = run_cli(capsys, "--help")
    assert "carbon-stock" in out and cli.CARBON_STOCK_HELP[:40] in " ".join(out.split())
