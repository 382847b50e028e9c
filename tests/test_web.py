"""The web console (issue 18): pages equal the CLI's numbers, roles, CSRF, upload caps, safe unzip,
loopback binding; and a real-browser walk through runs, map, explain, land unit and the exchange desk."""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import socket
import sqlite3
import stat
import threading
import time
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from eco_value.web.app import WebConfig, create_app  # noqa: E402
from eco_value.web.auth import add_user  # noqa: E402
from eco_value.web.uploads import BodyLimit, UploadError, safe_unzip  # noqa: E402

PASSWORDS = {"vera": ("viewer", "viewer-pass-123"), "bo": ("bureau", "bureau-pass-123"), "ole": ("operator", "operator-pass-123")}
CHROMIUM = "/usr/bin/chromium"
PERIOD = "2020-01-01..2023-12-31"
RUN_ISSUANCE_PARCELS = 8
CREDIT_TABLES = ("status_events", "credit_blocks", "parcel_vintages", "issuance_lines", "issuance_verifications", "issuances",
                 "eligibility_lines", "project_parcels", "projects")


def _zip_dir(folder: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                z.write(p, f"bundle/{p.relative_to(folder).as_posix()}")
    return out


def _project_table(store, run, out: Path) -> dict:
    """A parcel table of afforested parcels (one declared 经济林: refused) and five forest-remaining-forest ones (refused)."""
    from shapely import from_wkb
    from sqlmodel import select

    from eco_value.inputs.history import parcel_land_history
    from eco_value.store.models import Zone

    with store.session() as s:
        zones = s.exec(select(Zone).where(Zone.run_id == run.id, Zone.kind == "parcel")).all()
    hist = parcel_land_history(run.catalog_path, [(z.zone_id, from_wkb(z.geometry_wkb)) for z in zones])["parcels"]
    aff = sorted(p for p, h in hist.items() if h["afforested_m2"] > 0 and h["afforested_forest_m2"][2016] == 0)
    frf = sorted(p for p, h in hist.items() if h["afforested_m2"] == 0 and h["forest_m2"][2020] > 0)[:5]
    with open(out, "w", encoding="utf-8", newline="") as f:
        f.write("parcel_id,林权证号,林种\n")
        for p in aff + frf:
            f.write(f"{p},川(2019)邛崃市不动产权第{p[-5:]}号,{'经济林' if p == aff[0] else '防护林'}\n")
    return {"economic": aff[0], "afforested": aff[1:], "forest_remaining": frf}


@pytest.fixture(scope="session")
def web_env(pilot_run, pilot_dir, tmp_path_factory):
    """One console for every test: a copy of the shared 90 m pilot run's store (the console's writes stay in it) with a
    run-level issuance (a good and a tampered bundle of it), an afforestation project, three users, a catalogs folder."""
    from argon2 import PasswordHasher

    from eco_value.exchange.bundle import export_bundle
    from eco_value.exchange.keys import generate, public_key_hex
    from eco_value.exchange.projects import create_project
    from eco_value.exchange.registry import issue
    from eco_value.store import Store
    from eco_value.web import auth

    src_store, res = pilot_run
    root = tmp_path_factory.mktemp("web")
    mp = pytest.MonkeyPatch()
    keys = tmp_path_factory.getbasetemp() / "keys"          # the folder tests/test_credits.py uses too
    mp.setenv("ECO_VALUE_KEY_DIR", str(keys))
    if not (keys / "issuer_ed25519.key").exists():
        generate()
    # argon2id as in production, with test-sized cost: a login costs milliseconds, not a second, on a loaded machine
    mp.setattr(auth, "_hasher", lambda: PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1))
    src = sqlite3.connect(src_store.url.removeprefix("sqlite:///"))
    dst = sqlite3.connect(root / "web.sqlite")
    src.backup(dst)
    for t in CREDIT_TABLES:
        dst.execute(f"DELETE FROM {t}")
    dst.commit()
    src.close()
    dst.close()
    url = f"sqlite:///{root / 'web.sqlite'}"
    store = Store(url)
    run = store.run(res.run_id)
    sinks = store.table("carbon", res.run_id).query("zone_kind == 'parcel'").sort_values("net_sink_tco2e_per_yr")
    d = issue(store, res.run_id, 2023, list(sinks["zone_id"].iloc[-RUN_ISSUANCE_PARCELS:]))   # a few: issue, export, verify stay quick
    export_bundle(store, d["issuance_id"], root / "bundle")
    good = _zip_dir(root / "bundle", root / "good.zip")
    shutil.copytree(root / "bundle", root / "tampered")
    blocks = root / "tampered" / "records" / "credit_blocks.csv"
    blocks.write_text(blocks.read_text(encoding="utf-8").replace(",held,", ",retired,", 1), encoding="utf-8")
    tampered = _zip_dir(root / "tampered", root / "tampered.zip")
    parcels = _project_table(store, run, root / "parcels.csv")
    create_project(store, project_id="QLAFF", name="邛崃 造林碳汇", developer="邛崃市林业局", methodology="ccer-14-001-v01",
                   start="2020-01-01", run_id=run.id, parcel_table=root / "parcels.csv")
    users = root / "users.json"
    for name, (role, pw) in PASSWORDS.items():
        add_user(users, name, role, pw)
    key = root / "issuer.pub"
    key.write_text(public_key_hex() + "\n")
    catalogs = root / "catalogs"
    shutil.copytree(pilot_dir, catalogs / "qionglai", ignore=shutil.ignore_patterns("results"))
    (root / "uploads").mkdir()
    cfg = WebConfig(db=url, users_file=users, actions_file=root / "actions.jsonl", trusted_key_hex=public_key_hex(),
                    temp_dir=root / "uploads", catalogs_dir=catalogs)
    app = create_app(cfg)
    yield {"root": root, "url": url, "store": store, "run_id": res.run_id, "issuance": d, "good": good, "parcels": parcels,
           "tampered": tampered, "users": users, "key": public_key_hex(), "key_file": key, "app": app,
           "actions": root / "actions.jsonl", "uploads": root / "uploads", "clients": {}}
    app.inner.state.jobs.shutdown()
    mp.undo()


def _client(env, tmp_path, **kw) -> TestClient:
    """A console of its own (a different configuration)."""
    cfg = WebConfig(db=env["url"], users_file=env["users"], actions_file=tmp_path / "actions.jsonl",
                    trusted_key_hex=env["key"], temp_dir=tmp_path / "uploads", **kw)
    (tmp_path / "uploads").mkdir(exist_ok=True)
    return TestClient(create_app(cfg))


def _login(c: TestClient, name: str) -> str:
    r = c.get("/login")
    tok = re.search(r'name="csrf" value="([^"]+)"', r.text).group(1)
    r = c.post("/login", data={"csrf": tok, "user": name, "password": PASSWORDS[name][1], "next": "/runs"})
    assert r.status_code == 200 and r.url.path == "/runs", r.text[:500]
    return re.search(r'<meta name="csrf-token" content="([^"]+)"', r.text).group(1)


def _as(env, name: str) -> tuple[TestClient, str]:
    """The shared console, logged in as ``name`` (one login per user per test session) and that session's CSRF token."""
    if name not in env["clients"]:
        c = TestClient(env["app"])
        env["clients"][name] = (c, _login(c, name))
    return env["clients"][name]


def _log(env) -> list[dict]:
    return [json.loads(x) for x in env["actions"].read_text(encoding="utf-8").splitlines()]


def _held_block(store) -> tuple[int, int]:
    from sqlmodel import select

    from eco_value.store.models import CreditBlock
    with store.session() as s:
        b = s.exec(select(CreditBlock).where(CreditBlock.status == "held").order_by(CreditBlock.first)).first()
    return b.first, b.last


def _events(store) -> int:
    from eco_value.exchange.registry import audit_log
    return audit_log(store)["events"]


def _cli_json(capsys, argv) -> dict:
    from eco_value.cli import main
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    return json.loads(capsys.readouterr().out)


def _lookup(d, field: str):
    for part in field.split("."):
        d = d[int(part)] if isinstance(d, list) else d[part]
    return d


# -- pages show the CLI's numbers --------------------------------------------------------------------
def test_run_page_numbers_equal_show_json(web_env, tmp_path, capsys):
    rid = web_env["run_id"]
    shown = _cli_json(capsys, ["show", rid, "--db", web_env["url"], "--json"])
    assert TestClient(web_env["app"]).get(f"/runs/{rid}").url.path == "/login"     # nothing without logging in
    c, _ = _as(web_env, "vera")
    assert c.get(f"/api/runs/{rid}").json() == json.loads(json.dumps(shown))
    html = c.get(f"/runs/{rid}").text
    found = re.findall(r'data-field="([^"]+)" data-value="([^"]*)"', html)
    fields = {f for f, _ in found}
    s = shown["summary"]
    must = {"gep.total_cny", "gep.cny_per_km2", "carbon.net_sink_tco2e_per_yr", "carbon.ci95_tco2e_per_yr.0",
            "carbon.ci95_tco2e_per_yr.1", "carbon.stock_tc", "extent.forest_coverage_pct"}
    must |= {f"gep.by_service.{k}.value_cny" for k in s["gep"]["by_service"]}
    assert must <= fields, must - fields
    for f, v in found:
        assert float(v) == float(_lookup(s, f)), f
    # the displayed text is that exact number rounded: GEP in 亿元 with 2 decimals
    shown_total = re.search(r'data-field="gep.total_cny" data-value="[^"]*">([^<]*)</span> 亿元', html).group(1)
    assert shown_total == f"{s['gep']['total_cny'] / 1e8:,.2f}"
    assert "41 %" in html and "42 %" in html                     # the coverage targets
    runs = _cli_json(capsys, ["runs", "--db", web_env["url"], "--json"])
    assert c.get("/api/runs").json() == json.loads(json.dumps(runs, default=str))


def test_run_page_shows_township_intervals_harvest_and_hides_clean_missing_data(web_env, tmp_path):
    """The townships' GEP with its 95 % interval as stored (gep_intervals), the harvest row of the carbon account, no
    missing-data block for the clean pilot (shown, with the counts, once a service has nodata), tenure when present."""
    rid, store = web_env["run_id"], web_env["store"]
    c, _ = _as(web_env, "vera")
    html = c.get(f"/runs/{rid}").text
    ivs = store.table("gep_intervals", rid, "township").set_index("zone_id")
    towns = store.table("zones", rid, "township").set_index("zone_id")
    assert len(ivs) == len(towns) > 1
    table = re.search(r'<table id="townships">(.*?)</table>', html, re.DOTALL).group(1)
    rows = dict(re.findall(r'<tr data-zone="([^"]+)">(.*?)</tr>', table, re.DOTALL))
    assert set(rows) == set(towns.index)
    for zid, iv in ivs.iterrows():
        assert iv.ci95_low_cny < iv.gep_cny < iv.ci95_high_cny
        row = rows[zid]
        assert towns.loc[zid, "name"] in row
        shown = {k: (float(v), txt) for k, v, txt in re.findall(r'data-col="([^"]+)" data-value="([^"]*)">([^<]*)<', row)}
        for col in ("gep_cny", "ci95_low_cny", "ci95_high_cny"):
            assert shown[col] == (float(iv[col]), f"{iv[col] / 1e8:,.2f}"), (zid, col)
    # the townships add up to the county's GEP (the township table is the store's, not a second computation)
    assert math.isclose(ivs["gep_cny"].sum(), c.get(f"/api/runs/{rid}").json()["summary"]["gep"]["total_cny"], rel_tol=1e-9)
    # largest GEP first
    order = list(rows)
    assert order == sorted(order, key=lambda z: -ivs.loc[z, "gep_cny"])

    # harvest is a row of the carbon account by land-use change, with the stored county value
    s = c.get(f"/api/runs/{rid}").json()["summary"]
    harvest = re.search(r'<tr id="lucc-harvest"><td>harvest 采伐 \(t CO₂e/yr; ([^ ]*) ha\)</td><td class="n">(.*?)</td></tr>',
                        html).groups()
    assert harvest[0] == f"{s['carbon']['by_lucc_area_ha']['harvest']:,.0f}"
    assert f'data-value="{float(s["carbon"]["by_lucc_tco2e_per_yr"]["harvest"])!r}"' in harvest[1]
    county = store.table("carbon", rid, "county").iloc[0]
    assert s["carbon"]["by_lucc_tco2e_per_yr"]["harvest"] == county.harvest_tco2e_per_yr

    # the clean pilot: every service's nodata count is zero, so no missing-data block and no tenure block
    nd = store.table("services", rid, "county")
    assert (nd["nodata_px"] == 0).all() and len(nd) == len(s["gep"]["by_service"])
    assert 'id="missing-data"' not in html and "Missing data" not in html
    assert 'id="tenure"' not in html

    # a copy of the store where one service has nodata and one parcel a tenure record: both blocks appear
    db = tmp_path / "copy.sqlite"
    src = sqlite3.connect(web_env["url"].removeprefix("sqlite:///"))
    dst = sqlite3.connect(db)
    src.backup(dst)
    src.close()
    summ = json.loads(dst.execute("SELECT summary_json FROM runs WHERE id = ?", (rid,)).fetchone()[0])
    summ["gep"]["by_service"]["water_conservation"].update(nodata_px=1234.0, nodata_ha=999.75)
    dst.execute("UPDATE runs SET summary_json = ? WHERE id = ?", (json.dumps(summ, ensure_ascii=False), rid))
    pid = dst.execute("SELECT zone_id FROM zones WHERE run_id = ? AND kind = 'parcel' ORDER BY zone_id LIMIT 1",
                      (rid,)).fetchone()[0]
    dst.execute("UPDATE zones SET tenure_certificate = ?, tenure_holder = ?, use_right_start = ?, use_right_end = ?, "
                "tenure_area_mu = ? WHERE run_id = ? AND kind = 'parcel' AND zone_id = ?",
                ("川(2019)邛崃市不动产权第00001号", "<b>张三</b>", "2019-01-01", "2068-12-31", 196.5, rid, pid))
    dst.commit()
    dst.close()
    (tmp_path / "uploads").mkdir()
    c2 = TestClient(create_app(WebConfig(db=f"sqlite:///{db}", users_file=web_env["users"],
                                         actions_file=tmp_path / "actions.jsonl", trusted_key_hex=web_env["key"],
                                         temp_dir=tmp_path / "uploads")))
    _login(c2, "vera")
    html2 = c2.get(f"/runs/{rid}").text
    block = re.search(r'<section id="missing-data">(.*?)</section>', html2, re.DOTALL).group(1)
    assert "1 service(s)" in block and "water conservation" in block
    assert re.search(r'data-field="gep.by_service.water_conservation.nodata_px" data-value="1234.0">1,234<', block)
    assert re.search(r'data-field="gep.by_service.water_conservation.nodata_ha" data-value="999.75">999.75<', block)
    tenure = re.search(r'<section id="tenure">(.*?)</section>', html2, re.DOTALL).group(1)
    assert "1 parcel(s) hold a tenure record" in tenure
    row = re.search(rf'<tr data-zone="{re.escape(pid)}">(.*?)</tr>', tenure, re.DOTALL).group(1)
    for text in ("川(2019)邛崃市不动产权第00001号", "2019-01-01", "2068-12-31", "196.50", "&lt;b&gt;张三&lt;/b&gt;"):
        assert text in row, text
    assert "<b>张三</b>" not in html2                                   # autoescaped
    # the map's parcel panel reads the same record: tenure of the store's zones row, None without a record
    got = c2.get(f"/api/runs/{rid}/parcel", params={"parcel": pid}).json()
    assert got["tenure"] == {"tenure_certificate": "川(2019)邛崃市不动产权第00001号", "tenure_holder": "<b>张三</b>",
                             "use_right_start": "2019-01-01", "use_right_end": "2068-12-31", "tenure_area_mu": 196.5}
    zone = store.table("zones", rid, "parcel").set_index("zone_id").loc[pid]
    clean = c.get(f"/api/runs/{rid}/parcel", params={"parcel": pid}).json()
    assert clean["tenure"] is None and clean["holder_id"] == zone.holder_id and clean["township_id"] == zone.parent_id
    assert clean["area_ha"] == zone.area_ha > 0
    r = c.get(f"/api/runs/{rid}/parcel", params={"parcel": "no-such-parcel"})
    assert r.status_code >= 400 and "no-such-parcel" in r.json()["error"]

def test_explain_and_value_unit_are_the_library_results(web_env, tmp_path):
    from eco_value.audit import explain
    from eco_value.policy import value_unit

    rid, store = web_env["run_id"], web_env["store"]
    c, csrf = _as(web_env, "vera")
    gj = c.get(f"/api/runs/{rid}/zones/parcels.geojson").json()
    feat = max(gj["features"], key=lambda f: f["properties"]["net_sink_tco2e_per_yr"])      # a parcel with forest
    pid = feat["properties"]["zone_id"]
    got = c.get(f"/api/runs/{rid}/explain", params={"parcel": pid}).json()
    want = json.loads(json.dumps(explain(store, rid, parcel=pid), default=float))
    # compared as JSON text: the chain may hold NaN (not equal to itself), which must come out as NaN too
    assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True)
    assert got["carbon"]["terms"] and got["carbon"]["terms"][0]["parameters"][0]["source"]
    # a rectangle around that parcel's first vertex, in longitude/latitude as the map sends it
    x, y = feat["geometry"]["coordinates"][0][0][0] if feat["geometry"]["type"] == "MultiPolygon" else \
        feat["geometry"]["coordinates"][0][0]
    ring = [[x - .01, y - .01], [x + .01, y - .01], [x + .01, y + .01], [x - .01, y + .01], [x - .01, y - .01]]
    geom = {"type": "Polygon", "coordinates": [ring]}
    assert c.post(f"/api/runs/{rid}/value-unit", json={"geometry": geom}).status_code == 403   # no CSRF token
    r = c.post(f"/api/runs/{rid}/value-unit", json={"geometry": geom}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    d = r.json()
    p = tmp_path / "unit.geojson"
    p.write_text(json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": geom}]}))
    direct = value_unit(store, rid, p)
    assert d["gep_total_cny"] == direct["gep_total_cny"] and d["area_ha"] == direct["area_ha"] > 0
    log = _log(web_env)
    assert log[-1]["user"] == "vera" and log[-1]["action"] == "value-unit" and log[-1]["time"].endswith("+00:00")
    r = c.post(f"/api/runs/{rid}/value-unit", json={"geometry": {"type": "Point", "coordinates": [1, 2]}},
               headers={"X-CSRF-Token": csrf})
    assert r.status_code == 400 and "Polygon" in r.json()["error"]


def test_map_tiles_and_legends(web_env, tmp_path):
    from rio_tiler.io import Reader

    rid = web_env["run_id"]
    c, _ = _as(web_env, "vera")
    lays = {x["key"]: x for x in c.get(f"/api/runs/{rid}/layers").json()}
    assert {"gep", "carbon_stock", "carbon_sink", "water_conservation"} <= set(lays)
    assert lays["gep"]["unit"] == "CNY/km²/yr" and lays["carbon_sink"]["unit"] == "t CO₂e/ha/yr"
    assert lays["carbon_sink"]["min"] == -lays["carbon_sink"]["max"]          # diverging scale centred on 0
    f = Path(json.loads(web_env["store"].run(rid).summary_json)["outputs"]["rasters"]) / "gep_cny_per_km2.tif"
    with Reader(str(f)) as r:
        b = r.get_geographic_bounds(r.tms.rasterio_geographic_crs)
        t = r.tms.tile((b[0] + b[2]) / 2, (b[1] + b[3]) / 2, 11)
    png = c.get(f"/tiles/{rid}/gep/{t.z}/{t.x}/{t.y}.png")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n" and len(png.content) > 500
    assert c.get(f"/tiles/{rid}/..%2F..%2Fetc/{t.z}/{t.x}/{t.y}.png").status_code == 404
    assert c.get(f"/tiles/{rid}/nope/{t.z}/{t.x}/{t.y}.png").status_code == 404


# -- roles, CSRF, logging ---------------------------------------------------------------------------
def test_viewer_gets_403_on_issue_and_apply_status(web_env, tmp_path):
    rid, store = web_env["run_id"], web_env["store"]
    before = _events(store)
    first, _ = _held_block(store)
    status = (f"first,last,status,beneficiary\n{first},{first},retired,Chengdu Metro\n").encode()
    for name in ("vera", "bo"):                       # viewer and bureau may not apply status
        c, csrf = _as(web_env, name)
        r = c.post("/exchange/apply-status", data={"csrf": csrf}, files={"status_file": ("s.csv", status, "text/csv")})
        assert r.status_code == 403 and "may not apply-status" in r.text
    for name in ("vera", "ole"):                      # viewer and operator may not issue, export or start runs
        c, csrf = _as(web_env, name)
        r = c.post(f"/api/runs/{rid}/issue", json={"vintage": 2022}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 403 and "may not issue" in r.json()["error"]
        r = c.post("/api/projects/QLAFF/issue", json={"monitoring": PERIOD}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 403 and "may not issue" in r.json()["error"]
        r = c.post(f"/issuances/{web_env['issuance']['issuance_id']}/bundle.zip", headers={"X-CSRF-Token": csrf})
        assert r.status_code == 403
        r = c.post("/api/jobs", json={"catalog": "qionglai/catalog.toml"}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 403 and "may not run" in r.json()["error"]
    c, _ = _as(web_env, "vera")
    r = c.post("/exchange/verify", data={"csrf": "x"}, files={"bundle": ("b.zip", web_env["good"].read_bytes())})
    assert r.status_code == 403
    assert _events(store) == before and _held_block(store)[0] == first


def test_operator_needs_the_csrf_token_and_writes_are_logged(web_env, tmp_path):
    store = web_env["store"]
    first, _ = _held_block(store)
    status = (f"first,last,status,beneficiary\n{first},{first},retired,Chengdu Metro\n").encode()
    c, csrf = _as(web_env, "ole")
    before = _events(store)
    r = c.post("/exchange/apply-status", data={"csrf": "stale"}, files={"status_file": ("s.csv", status, "text/csv")})
    assert r.status_code == 403 and _events(store) == before
    r = c.post("/exchange/apply-status", data={"csrf": csrf}, files={"status_file": ("ret.csv", status, "text/csv")})
    assert r.status_code == 200 and "APPLIED" in r.text and _events(store) == before + 1
    assert "chain OK" in r.text
    log = _log(web_env)
    assert log[-1]["user"] == "ole" and log[-1]["action"] == "apply-status" and log[-1]["applied"] == 1
    # the same refusal as the CLI: a retired serial cannot be retired again; nothing applied
    r = c.post("/exchange/apply-status", data={"csrf": csrf}, files={"status_file": ("again.csv", status, "text/csv")})
    assert r.status_code == 400 and "REFUSED" in r.text and "again.csv" in r.text
    assert "are retired (final) and cannot become retired" in r.text and _events(store) == before + 1
    r = c.post("/exchange/apply-status", data={"csrf": csrf}, files={"status_file": ("s.txt", status, "text/plain")})
    assert r.status_code == 400 and "expected a .csv or .json or .jsonl file" in r.text


def test_users_file_holds_hashes_only(web_env):
    text = web_env["users"].read_text()
    assert all(pw not in text for _, pw in PASSWORDS.values())
    users = json.loads(text)["users"]
    assert all(u["hash"].startswith("$argon2id$") for u in users.values())
    assert stat.S_IMODE(web_env["users"].stat().st_mode) == 0o600
    from eco_value.web.auth import AccessError
    with pytest.raises(AccessError, match="at least 10"):
        add_user(web_env["users"], "x", "viewer", "short")
    with pytest.raises(AccessError, match="role 'admin' is unknown"):
        add_user(web_env["users"], "x", "admin", "long-enough-pass")


def test_wrong_password_is_refused(web_env, tmp_path):
    c = TestClient(web_env["app"])
    tok = re.search(r'name="csrf" value="([^"]+)"', c.get("/login").text).group(1)
    r = c.post("/login", data={"csrf": tok, "user": "ole", "password": "viewer-pass-123"})
    assert r.status_code == 401 and "wrong password" in r.text
    assert c.get("/exchange").url.path == "/login"


# -- uploads --------------------------------------------------------------------------------------------
def _evil_zips(tmp: Path) -> dict[str, bytes]:
    out = {}
    for name, member in (("dotdot", "../evil.txt"), ("deep", "bundle/../../evil.txt"), ("absolute", "/tmp/evil-abs.txt")):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("bundle/manifest.json", "{}")
            z.writestr(member, "pwned")
        out[name] = buf.getvalue()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("bundle/manifest.json", "{}")
        info = zipfile.ZipInfo("bundle/link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        z.writestr(info, "/etc/passwd")
    out["symlink"] = buf.getvalue()
    return out


def test_unsafe_zips_are_refused_and_write_nothing(web_env, tmp_path):
    c, csrf = _as(web_env, "ole")
    for kind, data in _evil_zips(tmp_path).items():
        r = c.post("/exchange/verify", data={"csrf": csrf}, files={"bundle": (f"{kind}.zip", data, "application/zip")})
        assert r.status_code == 400, kind
        assert "unsafe member" in r.text and ("symbolic link" if kind == "symlink" else ("..") if kind != "absolute" else "absolute") in r.text
    assert list(web_env["uploads"].iterdir()) == []                 # temp folders removed
    assert not list(web_env["root"].rglob("evil*")) and not Path("/tmp/evil-abs.txt").exists()
    assert not list(web_env["root"].rglob("link"))


def test_zip_bombs_are_refused(tmp_path):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("big.bin", b"\0" * (4 * 1024 * 1024))
    (tmp_path / "d").mkdir()
    with pytest.raises(UploadError, match="unpacks to 4,194,304 bytes, more than the 1,048,576 allowed"):
        safe_unzip(bomb, tmp_path / "d", max_bytes=1024 * 1024)
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as z:
        for i in range(30):
            z.writestr(f"f{i}", "x")
    with pytest.raises(UploadError, match="30 members, more than the 20 allowed"):
        safe_unzip(many, tmp_path / "d", max_members=20)
    assert list((tmp_path / "d").iterdir()) == []


def test_a_2gb_upload_is_refused_before_the_body_is_read():
    import asyncio

    called, sent = [], []

    async def app(scope, receive, send):
        called.append(1)

    async def receive():
        raise AssertionError("the body must not be read")

    async def send(msg):
        sent.append(msg)

    scope = {"type": "http", "method": "POST", "path": "/exchange/verify",
             "headers": [(b"content-length", str(2 * 1024 ** 3).encode())]}
    asyncio.run(BodyLimit(app, 64 * 1024 * 1024)(scope, receive, send))
    assert not called and sent[0]["status"] == 413 and b"2,147,483,648 bytes" in sent[1]["body"]


def test_a_body_past_the_cap_is_stopped_while_streaming(web_env, tmp_path):
    c = _client(web_env, tmp_path, max_upload_bytes=1024 * 1024)
    csrf = _login(c, "ole")
    chunks = iter([b"x" * 65536] * 64)                        # 4 MB, no Content-Length (chunked)
    r = c.post("/exchange/verify", content=chunks, headers={"Content-Type": "multipart/form-data; boundary=zz",
                                                             "X-CSRF-Token": csrf})
    assert r.status_code == 413 and "passed 1,048,576 bytes" in r.text


def test_verify_names_the_failing_check(web_env, tmp_path):
    c, csrf = _as(web_env, "ole")
    r = c.post("/exchange/verify", data={"csrf": csrf}, files={"bundle": ("good.zip", web_env["good"].read_bytes())})
    assert r.status_code == 200 and '<span id="verdict">VERIFIED</span>' in r.text
    assert r.text.count('class="good" data-check=') == 6
    r = c.post("/exchange/verify", data={"csrf": csrf}, files={"bundle": ("bad.zip", web_env["tampered"].read_bytes())})
    assert '<span id="verdict">FAILED</span>' in r.text
    row = re.search(r'<tr class="bad" data-check="hashes">.*?</tr>', r.text, re.S).group(0)
    assert re.search(r"<code>(size|hash)-mismatch</code> records/credit_blocks.csv", row), row
    assert str(web_env["uploads"]) not in r.text and "eco-value-bundle-" not in r.text     # temp paths are not shown
    from eco_value.exchange.verify import verify
    assert [(p.check, p.path) for p in verify(web_env["root"] / "tampered", web_env["key"])] == [
        ("size-mismatch", "records/credit_blocks.csv")]


# -- credits (bureau) ----------------------------------------------------------------------------------
def _issuance_counts(store) -> tuple[int, int, int]:
    from sqlmodel import func, select

    from eco_value.store.models import CreditBlock, Issuance, IssuanceLine
    with store.session() as s:
        return tuple(s.exec(select(func.count()).select_from(m)).one() for m in (Issuance, IssuanceLine, CreditBlock))


def test_credits_page_shows_parcels_with_their_eligibility_reasons(web_env, capsys):
    c, _ = _as(web_env, "vera")
    parcels = web_env["parcels"]
    d = c.get("/api/projects/QLAFF").json()
    by = {p["parcel_id"]: p for p in d["parcels"]}
    assert d["project"]["eligible"] == sum(p["eligible"] for p in d["parcels"]) > 5
    assert d["project"]["parcels"] == len(by) == 1 + len(parcels["afforested"]) + len(parcels["forest_remaining"])
    refused = {p for p, x in by.items() if not x["eligible"]}
    assert {parcels["economic"], *parcels["forest_remaining"]} <= refused
    assert all(x["failed"] and all(ln["reason"] for ln in x["failed"]) for p, x in by.items() if p in refused)
    assert [x["rule"] for x in by[parcels["economic"]]["failed"]] == ["forest_category"]
    html = c.get("/projects/QLAFF").text
    row = re.search(rf'<tr data-parcel="{parcels["economic"]}" class="bad">.*?</tr>', html, re.S).group(0)
    assert "FAIL" in row and "林种 &#39;经济林&#39; is excluded" in row
    frf = re.search(rf'<tr data-parcel="{parcels["forest_remaining"][0]}" class="bad">.*?</tr>', html, re.S).group(0)
    assert "land_history" in frf and "forest remaining forest:" in frf
    # a parcel's lines are what `explain --project P --parcel X --json` prints
    for pid in (parcels["economic"], parcels["afforested"][0]):
        cli = _cli_json(capsys, ["explain", "QLAFF", "--project", "QLAFF", "--parcel", pid, "--db", web_env["url"], "--json"])
        assert c.get("/api/projects/QLAFF/eligibility", params={"parcel": pid}).json() == json.loads(json.dumps(cli))
    r = c.get("/api/projects/QLAFF/eligibility", params={"parcel": "nope"})
    assert r.status_code == 400 and r.json()["error"] == "parcel 'nope' is not in project 'QLAFF'"
    assert "QLAFF" in c.get("/projects").text


def test_credits_preview_writes_nothing_and_equals_what_issuing_gives(web_env, capsys):
    store = web_env["store"]
    c, _ = _as(web_env, "vera")
    before, events = _issuance_counts(store), _events(store)
    pv = c.get("/api/projects/QLAFF/preview", params={"monitoring": PERIOD}).json()
    assert _issuance_counts(store) == before and _events(store) == events          # a preview writes nothing
    assert [v["vintage"] for v in pv["vintages"]] == [2020, 2021, 2022, 2023] and pv["methodology"] == "CCER-14-001-V01"
    t = pv["totals"]
    assert t["net_issued_tco2e"] > 0 and t["uncertainty_deduction_tco2e"] >= 0
    closed = sum(t[k] for k in ("net_issued_tco2e", "buffer_tco2e", "baseline_tco2e", "leakage_tco2e",
                                "uncertainty_deduction_tco2e", "remainder_tco2e"))
    assert math.isclose(closed, t["gross_removals_tco2e"], rel_tol=1e-9)                # every deduction is shown
    html = c.get("/projects/QLAFF", params={"monitoring": PERIOD}).text
    shown = dict(re.findall(r'data-field="(totals\.[a-z_0-9]+)" data-value="([^"]*)"', html))
    assert {f"totals.{k}": float(v) for k, v in t.items()} == {k: float(v) for k, v in shown.items()}
    assert "issue-form" not in html                                                     # a viewer sees no issue button
    bad = c.get("/api/projects/QLAFF/preview", params={"monitoring": PERIOD, "vintage": "2024"})
    assert bad.status_code == 400 and "vintage 2024 is outside the monitoring period 2020-01-01..2023-12-31" in bad.json()["error"]
    # the numbers equal the CLI's JSON of the issuance itself: vintage 2021 by `eco-value issue --monitoring --json`
    v2021 = c.get("/api/projects/QLAFF/preview", params={"monitoring": PERIOD, "vintage": "2021"}).json()
    cli = _cli_json(capsys, ["issue", "QLAFF", "--monitoring", PERIOD, "--vintage", "2021", "--db", web_env["url"], "--json",
                             "--verification-body", "CQC", "--verification-approach", "desk review",
                             "--verification-date", "2024-03-01"])
    assert cli["totals"] == v2021["totals"] and v2021["vintages"][0] == pv["vintages"][1]
    iss = cli["issuances"][0]
    assert {k: iss[k] for k in v2021["totals"]} | {"parcels": iss["parcels"], "vintage": iss["vintage"]} == v2021["vintages"][0]


def test_bureau_issues_logged_and_downloads_the_signed_bundle(web_env):
    store = web_env["store"]
    bo, csrf = _as(web_env, "bo")
    pv = bo.get("/api/projects/QLAFF/preview", params={"monitoring": PERIOD, "vintage": "2020"}).json()
    before = _issuance_counts(store)
    body = {"monitoring": PERIOD, "vintage": 2020, "verification_body": "CQC", "verification_approach": "desk review and site visit",
            "verification_date": "2024-03-01"}
    assert bo.post("/api/projects/QLAFF/issue", json=body).status_code == 403                  # no CSRF token
    assert bo.post("/api/projects/QLAFF/issue", json=body, headers={"X-CSRF-Token": "stale"}).status_code == 403
    assert _issuance_counts(store) == before
    r = bo.post("/api/projects/QLAFF/issue", json=body, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["status"] == "held" and d["totals"] == pv["totals"]
    log = _log(web_env)[-1]
    assert log["user"] == "bo" and log["action"] == "issue" and log["issuance_ids"] == [d["issuances"][0]["issuance_id"]]
    assert log["net_issued_tco2e"] == pv["totals"]["net_issued_tco2e"]
    again = bo.post("/api/projects/QLAFF/issue", json=body, headers={"X-CSRF-Token": csrf})
    assert again.status_code == 400 and "already" in again.json()["error"] and _log(web_env)[-1]["action"] == "issue refused"
    iid = d["issuances"][0]["issuance_id"]
    assert bo.post(f"/issuances/{iid}/bundle.zip", data={"csrf": "stale"}).status_code == 403
    z = bo.post(f"/issuances/{iid}/bundle.zip", data={"csrf": csrf})
    assert z.status_code == 200 and z.headers["content-type"] == "application/zip", z.text
    assert z.headers["content-disposition"] == f'attachment; filename="bundle-{iid[:8]}.zip"'
    with zipfile.ZipFile(io.BytesIO(z.content)) as zf:
        names = zf.namelist()
        manifest = json.loads(zf.read(f"bundle-{iid[:8]}/manifest.json"))
    assert f"bundle-{iid[:8]}/manifest.sig" in names and manifest["bundle_format"] == "eco-value-bundle/2"
    assert _log(web_env)[-1]["action"] == "export" and list(web_env["uploads"].iterdir()) == []
    # the operator's desk verifies the downloaded zip
    ole, ocsrf = _as(web_env, "ole")
    r = ole.post("/exchange/verify", data={"csrf": ocsrf}, files={"bundle": ("dl.zip", z.content)})
    assert '<span id="verdict">VERIFIED</span>' in r.text, re.findall(r'<tr class="bad".*?</tr>', r.text, re.S)
    # the issuance form of the page issues too (vintage 2022, no verification: units pending, cannot be exported)
    r = bo.post("/projects/QLAFF/issue", data={"csrf": csrf, "monitoring": PERIOD, "vintage": "2022"})
    assert r.status_code == 200 and '<span id="verdict">ISSUED</span>' in r.text and "units pending" in r.text
    pending = [i for i in bo.get("/api/projects/QLAFF").json()["issuances"] if i["vintage"] == 2022][0]["issuance_id"]
    r = bo.post(f"/issuances/{pending}/bundle.zip", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 400 and "pending" in r.text and list(web_env["uploads"].iterdir()) == []


# -- runs started from the console -------------------------------------------------------------------------
def _sse(c: TestClient, job_id: str, stop=None) -> list[dict]:
    """The job's server-sent events until 'finished' (or until ``stop(event)`` is true)."""
    out, kind = [], None
    with c.stream("GET", f"/api/jobs/{job_id}/events") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("event: "):
                kind = line[len("event: "):]
            elif line.startswith("data: "):
                ev = json.loads(line[len("data: "):])
                assert ev["kind"] == kind
                out.append(ev)
                if kind == "finished" or (stop and stop(ev)):
                    break
    return out


def test_only_catalogs_under_the_catalogs_folder_can_be_run(web_env, tmp_path):
    bo, csrf = _as(web_env, "bo")
    assert bo.get("/api/catalogs").json() == {"catalogs": ["qionglai/catalog.toml"]}
    elsewhere = tmp_path / "catalog.toml"
    elsewhere.write_text("x")
    for name in (str(elsewhere), "../catalog.toml", "qionglai/../../web.sqlite", "qionglai/rasters", ""):
        r = bo.post("/api/jobs", json={"catalog": name}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 400 and "is not one of the 1 catalog(s) under the console's catalogs folder" in r.json()["error"], name
    assert bo.post("/api/jobs", json={"catalog": "qionglai/catalog.toml"}).status_code == 403          # no CSRF token
    assert bo.get("/api/jobs").json() == []
    other = _client(web_env, tmp_path)                                  # a console started without --catalogs
    ocsrf = _login(other, "bo")
    r = other.post("/api/jobs", json={"catalog": "qionglai/catalog.toml"}, headers={"X-CSRF-Token": ocsrf})
    assert r.status_code == 400 and "eco-value serve --catalogs DIR" in r.json()["error"]


def test_a_run_streams_its_progress_and_a_cancelled_run_stores_nothing_half_written(web_env, monkeypatch):
    from sqlmodel import select

    from eco_value.store.models import Run

    store = web_env["store"]
    bo, csrf = _as(web_env, "bo")
    # identical inputs and options as the stored run: the pipeline validates, hashes and finds it
    r = bo.post("/api/jobs", json={"catalog": "qionglai/catalog.toml", "mc_draws": 500}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 202, r.text
    evs = _sse(bo, r.json()["job_id"])
    stages = [e["stage"] for e in evs if e["kind"] == "progress"]
    assert stages[:2] == ["validate inputs", "hash inputs"] and evs[0]["kind"] == "started"
    assert evs[-1]["status"] == "complete" and evs[-1]["run_id"] == web_env["run_id"] and evs[-1]["reused"] is True
    assert _log(web_env)[-1]["action"] == "run" and _log(web_env)[-1]["user"] == "bo"

    def runs():
        with store.session() as s:
            return {x.id: (x.status, x.error) for x in s.exec(select(Run)).all()}
    before = runs()
    # --force computes again: cancel it once the run is in the store as 'running' (the child pauses 60 s
    # there, so the cancel never loses a race with a fast machine)
    monkeypatch.setenv("ECO_VALUE_JOB_STAGE_PAUSE_S", "60")
    r = bo.post("/api/jobs", json={"catalog": "qionglai/catalog.toml", "force": True}, headers={"X-CSRF-Token": csrf})
    jid = r.json()["job_id"]
    started = _sse(bo, jid, stop=lambda e: e["kind"] == "progress" and e["stage"] not in ("validate inputs", "hash inputs"))
    assert started[-1]["status"] == "running", started
    new = {k: v for k, v in runs().items() if k not in before}
    assert [v[0] for v in new.values()] == ["running"]
    r = bo.post(f"/api/jobs/{jid}/cancel", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert web_env["app"].inner.state.jobs.get(jid).proc.exitcode is not None               # the process is gone
    after = runs()
    assert {k: v for k, v in after.items() if k in before} == before                         # nothing else touched
    (status, error), = [v for k, v in after.items() if k not in before]
    assert status == "failed" and error.startswith(("KeyboardInterrupt", "interrupted")), error   # failed, never complete
    results = web_env["root"] / "catalogs" / "qionglai" / "results"
    pid = web_env["app"].inner.state.jobs.get(jid).proc.pid
    left = [p.name for p in results.iterdir() if f".partial-{pid}-" in p.name] if results.exists() else []
    assert not left, left                                                                     # no partial output of this run left
    assert _sse(bo, jid)[-1]["status"] == "cancelled"
    again = bo.post(f"/api/jobs/{jid}/cancel", headers={"X-CSRF-Token": csrf})
    assert again.status_code == 400 and "cancelled already" in again.json()["error"]
    assert _log(web_env)[-1]["action"] == "cancel run"
    assert jid in bo.get("/jobs").text


# -- binding -----------------------------------------------------------------------------------------
def test_serve_binds_to_loopback_unless_public(web_env, monkeypatch):
    import uvicorn

    from eco_value.cli import main
    from eco_value.web.server import check_bind_host

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw | {"app": app}))
    base = ["serve", "--db", web_env["url"], "--users", str(web_env["users"])]
    with pytest.raises(SystemExit) as e:
        main(base)
    assert e.value.code == 0 and calls[-1]["host"] == "127.0.0.1" and calls[-1]["port"] == 8700
    for host in ("0.0.0.0", "192.168.1.20", "::", "example.org"):
        with pytest.raises(SystemExit) as e:
            main(base + ["--host", host])
        assert e.value.code == 2 and len(calls) == 1, host
    with pytest.raises(SystemExit):
        main(base + ["--host", "0.0.0.0", "--public"])
    assert calls[-1]["host"] == "0.0.0.0"
    with pytest.raises(SystemExit) as e:                                   # --catalogs must be a folder
        main(base + ["--catalogs", str(web_env["root"] / "no-such-folder")])
    assert e.value.code == 2 and len(calls) == 2
    with pytest.raises(SystemExit) as e:
        main(base + ["--catalogs", str(web_env["root"] / "catalogs")])
    assert e.value.code == 0 and len(calls) == 3
    assert calls[-1]["app"].inner.state.cfg.catalogs_dir == web_env["root"] / "catalogs"
    assert check_bind_host("::1", False) == "::1" and check_bind_host("localhost", False) == "localhost"
    with pytest.raises(SystemExit) as e:
        main(["serve", "--db", web_env["url"], "--users", str(web_env["root"] / "nobody.json")])
    assert e.value.code == 2 and len(calls) == 3                           # no users: refused, not started


# -- a real browser ------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_browser_walkthrough(web_env, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"NO CHROMIUM at {CHROMIUM}: `apt-get install -y chromium` (the .ci/run script installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")
    import uvicorn

    shots = tmp_path / "screenshots"
    shots.mkdir()
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(web_env["app"], host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    rid = web_env["run_id"]
    first, _ = _held_block(web_env["store"])
    retire = tmp_path / "retire.csv"
    retire.write_text(f"first,last,status,beneficiary\n{first},{first},retired,Chengdu Metro\n", encoding="utf-8")
    errors = []
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{base}/runs")
            page.fill("#user", "ole")
            page.fill("#password", PASSWORDS["ole"][1])
            page.click("#login")
            page.wait_for_selector("#runs")
            page.screenshot(path=str(shots / "1-runs.png"))
            page.click(f"a[href='/runs/{rid}']")
            page.wait_for_selector("#services")
            total = page.get_attribute("span[data-field='gep.total_cny']", "data-value")
            assert float(total) == json.loads(web_env["store"].run(rid).summary_json)["gep"]["total_cny"]
            page.screenshot(path=str(shots / "2-run.png"), full_page=True)
            page.click("#open-map")
            page.wait_for_selector("#map[data-ready='1']", timeout=20000)
            page.select_option("#layer", "carbon_sink")
            page.wait_for_selector("#legend[data-layer='carbon_sink']")
            assert "t CO₂e/ha/yr" in page.inner_text("#legend")
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(shots / "3-map-sink.png"))
            # click the middle of a parcel: zoom onto a point inside it first
            gj = json.loads(page.evaluate(f"fetch('/api/runs/{rid}/zones/parcels.geojson').then(r => r.text())"))
            import shapely
            big = sorted(gj["features"], key=lambda f: f["properties"]["area_ha"])[len(gj["features"]) // 2:]
            feat = max(big, key=lambda f: f["properties"]["net_sink_tco2e_per_yr"])   # a large parcel with a sink
            pt = shapely.geometry.shape(feat["geometry"]).representative_point()
            # (returns nothing: serialising the map object back to Python took a minute)
            page.evaluate(f"() => {{ window.ecoValueMap.setView([{pt.y}, {pt.x}], 15, {{animate: false}}); }}")
            box = page.locator("#map").bounding_box()
            page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.wait_for_selector("#explain", timeout=30000)
            assert page.inner_text("#parcel-id") == feat["properties"]["zone_id"]
            chain = page.inner_text("#explain")
            assert "t C/yr" in chain and "CNY/m³" in chain and "[" in chain        # equations, parameters with sources
            assert page.inner_text("#explain-sink") == page.inner_text("#stored-sink")
            page.screenshot(path=str(shots / "4-explain.png"))
            page.click("#draw-rect")
            page.mouse.click(box["x"] + box["width"] / 2 - 120, box["y"] + box["height"] / 2 - 90)
            page.mouse.click(box["x"] + box["width"] / 2 + 120, box["y"] + box["height"] / 2 + 90)
            page.wait_for_selector("#unit-result", timeout=30000)
            assert float(page.inner_text("#unit-area").replace(",", "")) > 0
            assert float(page.inner_text("#unit-gep").replace(",", "")) > 0
            page.screenshot(path=str(shots / "5-unit.png"))
            page.goto(f"{base}/projects/QLAFF?monitoring={PERIOD}")
            page.wait_for_selector("#preview-table")
            page.screenshot(path=str(shots / "5b-credits.png"), full_page=True)
            page.goto(f"{base}/exchange")
            page.set_input_files("#bundle-file", str(web_env["good"]))
            page.click("#verify")
            page.wait_for_selector("#verdict")
            assert page.inner_text("#verdict") == "VERIFIED"
            page.screenshot(path=str(shots / "6-verified.png"), full_page=True)
            page.set_input_files("#bundle-file", str(web_env["tampered"]))
            page.click("#verify")
            page.wait_for_selector("#verdict")
            assert page.inner_text("#verdict") == "FAILED"
            assert "records/credit_blocks.csv" in page.inner_text("tr[data-check='hashes']")
            page.screenshot(path=str(shots / "7-tampered.png"), full_page=True)
            page.set_input_files("#status-file", str(retire))
            page.click("#apply")
            page.wait_for_selector("#verdict")
            assert page.inner_text("#verdict") == "APPLIED"
            assert "chain OK" in page.inner_text("#chain") and "Chengdu Metro" in page.inner_text("#events")
            page.screenshot(path=str(shots / "8-retired.png"), full_page=True)
            # the bureau starts a run on a catalog of the --catalogs folder and follows it (server-sent events)
            bureau = browser.new_page(viewport={"width": 1400, "height": 900})
            bureau.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            bureau.on("pageerror", lambda e: errors.append(str(e)))
            bureau.goto(f"{base}/jobs")
            bureau.fill("#user", "bo")
            bureau.fill("#password", PASSWORDS["bo"][1])
            bureau.click("#login")
            bureau.wait_for_selector("#job-form")
            bureau.fill("#mc-draws", "500")
            bureau.click("#start")
            bureau.wait_for_selector("#job-run", timeout=60000)
            assert bureau.get_attribute("#job-run", "href") == f"/runs/{rid}" and bureau.inner_text("#job-status") == "complete"
            bureau.screenshot(path=str(shots / "9-run-started.png"))
            browser.close()
    finally:
        server.should_exit = True
        th.join(timeout=10)
    print(f"\nweb console screenshots: {shots}")
    # the apply-status refusal of a wrong file returns 400; nothing else may log an error
    assert errors == [], errors
