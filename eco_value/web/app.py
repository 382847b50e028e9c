"""The console's routes. Every page calls the library functions the CLI calls:

========================  ==============================================  =========================
page / endpoint           library call                                    CLI twin
========================  ==============================================  =========================
/runs, /api/runs          ``Store.runs``                                   ``runs --json``
/runs/{id}, /api/runs/id  ``Store.run`` (+ summary JSON)                   ``show RUN --json``
/runs/compare             ``store.queries.diff_runs``                      ``diff A B --json``
/api/runs/{id}/explain    ``audit.explain``                                ``explain RUN --parcel``
/api/runs/{id}/parcel     ``Store`` zones row (holder, tenure 林权)          ``export-table zones``
/api/runs/{id}/value-unit ``policy.value_unit``                            ``value-unit``
/api/runs/{id}/issue      ``exchange.registry.issue``                      ``issue``
/exchange/verify          ``exchange.verify.verify``                       ``verify``
/exchange/apply-status    ``read_status_file`` + ``registry.apply_status`` ``apply-status``
/exchange (event log)     ``exchange.registry.audit_log``                  ``audit log``
/projects/{id}            ``projects.project_summary``, eligibility lines  ``project show``
/api/projects/id/elig…    ``projects.eligibility_lines``                   ``explain --project --parcel``
/api/projects/id/preview  ``exchange.credits.plan`` (writes nothing)       totals of ``issue --monitoring``
/api/projects/id/issue    ``exchange.credits.issue_project``               ``issue P --monitoring``
/issuances/id/bundle.zip  ``exchange.bundle.export_bundle`` (zipped)       ``export``
/jobs, /api/jobs          ``pipeline.run_valuation`` in a child process    ``run``
========================  ==============================================  =========================
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import jinja2
import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import (FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response,
                               StreamingResponse)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from ..errors import EcoValueError
from . import credits as C
from . import layers as L
from .auth import ACTIONS_FILE_NAME, PERMISSIONS, ROLES, ActionLog, Session, Sessions, check_password, read_users
from .jobs import Jobs
from .uploads import DEFAULT_MAX_MEMBERS, DEFAULT_MAX_UNZIPPED_BYTES, DEFAULT_MAX_UPLOAD_BYTES, BodyLimit, UploadError, safe_unzip

HERE = Path(__file__).parent
COOKIE = "ecov_session"
LOGIN_COOKIE = "ecov_login"
STATUS_SUFFIXES = (".csv", ".json", ".jsonl")
EVENTS_SHOWN = 50
BLOCKS_SHOWN = 200
# the verifier's problem codes, grouped into the checks it names ("signature, hashes, schemas, serials,
# vintages and totals"); a code the verifier adds later is shown under "other"
CHECKS = (
    ("signature", "signature by the trusted issuer key",
     {"missing-manifest", "no-trusted-key", "bad-signature", "bad-manifest", "bad-public-key", "unknown-format", "verifier-install"}),
    ("hashes", "every file's SHA-256 as in the manifest; no unlisted files",
     {"missing-file", "hash-mismatch", "unlisted-file", "size-mismatch", "bad-path", "duplicate-path", "not-regular-file",
      "too-many-files", "unreadable", "missing-bundle"}),
    ("schemas", "records valid against the verifier's own schemas; CSV = JSON Lines; record counts",
     {"schema-differs", "missing-records", "bad-record", "schema-invalid", "csv-jsonl-differ", "record-count",
      "issuance", "project"}),
    ("serials", "serial ranges, counts, check digits, fields, no overlaps",
     {"serial-range", "serial-count", "serial-check", "serial-fields", "serial-overlap", "serial-overlap-held",
      "parcel-vintage-twice", "parcel-vintage-held", "bad-holdings"}),
    ("vintages", "vintage inside the monitoring period; buffer units in the buffer pool", {"vintage", "buffer-holder"}),
    ("totals", "issuance totals and deductions recomputed; manifest totals", {"totals", "deductions", "manifest-totals"}),
)
CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


@dataclass
class WebConfig:
    db: str | None
    users_file: Path
    actions_file: Path | None = None
    trusted_key_hex: str | None = None
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_unzipped_bytes: int = DEFAULT_MAX_UNZIPPED_BYTES
    max_members: int = DEFAULT_MAX_MEMBERS
    secure_cookie: bool = False
    temp_dir: Path | None = None
    catalogs_dir: Path | None = None      # the only folder whose catalogs the console may run


class _LoginRequired(Exception):
    pass


class _Forbidden(Exception):
    def __init__(self, msg: str):
        self.msg = msg


def _jsonable(o):
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, default=_jsonable)


def show_payload(store, run_id: str) -> dict:
    """What ``eco-value show RUN --json`` prints."""
    r = store.run(run_id)
    return {"run_id": r.id, "status": r.status, "error": r.error, "summary": json.loads(r.summary_json or "{}")}


LUCC_ZH = {"forest_remaining_forest": "林地保持林地", "afforestation": "造林", "deforestation": "毁林",
           "harvest": "采伐", "other": "其他"}
TENURE_FIELDS = ("tenure_certificate", "tenure_holder", "use_right_start", "use_right_end", "tenure_area_mu")


def township_rows(store, run_id: str) -> list[dict]:
    """The run's townships with their GEP and its 95 % Monte Carlo interval (table ``gep_intervals``; no interval:
    the township's GEP from ``service_results``), ordered by GEP, largest first."""
    zones = store.table("zones", run_id, "township")
    if zones.empty:
        return []
    ivs = store.table("gep_intervals", run_id, "township")
    ivs = {r.zone_id: r for r in ivs.itertuples()} if not ivs.empty else {}
    svc = store.table("services", run_id, "township")
    gep = svc.groupby("zone_id")["value_cny"].sum().to_dict() if not svc.empty else {}
    rows = []
    for z in zones.itertuples():
        iv = ivs.get(z.zone_id)
        rows.append({"zone_id": z.zone_id, "name": z.name, "area_ha": float(z.area_ha),
                     "gep_cny": float(iv.gep_cny) if iv is not None else float(gep.get(z.zone_id, 0.0)),
                     "ci95_low_cny": float(iv.ci95_low_cny) if iv is not None else None,
                     "ci95_high_cny": float(iv.ci95_high_cny) if iv is not None else None})
    return sorted(rows, key=lambda r: (-r["gep_cny"], r["zone_id"]))


TENURE_SHOWN = 200   # parcels listed on the run page (the rest: `eco-value` tables / the store)


def tenure_rows(store, run_id: str) -> tuple[list[dict], int]:
    """The parcels holding a tenure (林权) record, ordered by id: (the first TENURE_SHOWN, how many in all)."""
    z = store.table("zones", run_id, "parcel")
    if z.empty or "tenure_certificate" not in z.columns:
        return [], 0
    has = (z["tenure_certificate"].fillna("") != "") | (z["tenure_holder"].fillna("") != "") | \
        z["tenure_area_mu"].notna()
    z = z[has].sort_values("zone_id")
    rows = [{"zone_id": r.zone_id, "township_id": r.parent_id, "holder_id": r.holder_id,
             **{k: getattr(r, k) for k in TENURE_FIELDS}} for r in z.head(TENURE_SHOWN).itertuples()]
    for r in rows:
        mu = r["tenure_area_mu"]
        r["tenure_area_mu"] = None if mu is None or math.isnan(mu) else float(mu)
    return rows, len(z)


def parcel_record(store, run_id: str, parcel: str) -> dict:
    """A parcel's row of the store's zones table (no geometry): holder, township, area and tenure (林权) columns;
    ``tenure`` None when the parcel holds no tenure record."""
    from sqlmodel import select

    from ..errors import StoreError
    from ..store.models import Zone

    with store.session() as s:
        z = s.exec(select(Zone).where(Zone.run_id == run_id, Zone.kind == "parcel", Zone.zone_id == parcel)).first()
    if z is None:
        raise StoreError(f"run {run_id} has no parcel {parcel!r}")
    t = {k: getattr(z, k) for k in TENURE_FIELDS}
    has = any(v not in ("", None) for v in t.values())
    return {"parcel": z.zone_id, "township_id": z.parent_id, "holder_id": z.holder_id, "holder_type": z.holder_type,
            "other_programme": z.other_programme, "area_ha": z.area_ha, "tenure": t if has else None}

def runs_payload(store) -> list[dict]:
    """What ``eco-value runs --json`` prints."""
    return [{"run_id": r.id, "status": r.status, "region": r.region, "period": [r.period_start, r.period_end],
             "rules": r.ruleset_name, "started": r.started, "error": r.error} for r in store.runs()]


def group_problems(problems: list[tuple[str, str]]) -> list[dict]:
    """The verifier's (code, message) list as one row per check: ok or the failing codes and messages."""
    rows, seen = [], set()
    for key, what, codes in CHECKS:
        mine = [(c, m) for c, m in problems if c in codes]
        seen |= codes
        rows.append({"check": key, "what": what, "ok": not mine, "problems": [{"code": c, "message": m} for c, m in mine]})
    other = [(c, m) for c, m in problems if c not in seen]
    if other:
        rows.append({"check": "other", "what": "further checks of the verifier", "ok": False,
                     "problems": [{"code": c, "message": m} for c, m in other]})
    return rows


def _fmt_num(v, digits: int = 0) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:,.{digits}f}"


def create_app(cfg: WebConfig):
    """The ASGI application (a FastAPI app wrapped in the upload cap); ``.inner`` is the FastAPI app."""
    from ..store import Store
    from ..store.db import display_url, mask_secrets, url_secrets

    store = Store(cfg.db)
    secrets_ = url_secrets(store.url)
    sessions = Sessions()
    actions = ActionLog(cfg.actions_file or Path(cfg.users_file).parent / ACTIONS_FILE_NAME)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["exact"] = lambda v: repr(float(v)) if v is not None else ""
    env.filters["num"] = _fmt_num
    env.filters["yi"] = lambda v: _fmt_num(v / 1e8, 2) if v is not None else "–"
    env.filters["wan"] = lambda v: _fmt_num(v / 1e4, 1) if v is not None else "–"
    templates = Jinja2Templates(env=env)
    jobs = Jobs(store, cfg.db, cfg.catalogs_dir, mask=lambda m: mask_secrets(str(m), secrets_))

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        jobs.shutdown()          # a run still going when the server stops is cancelled (and marked failed)

    app = FastAPI(title="eco-value console", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.state.store, app.state.sessions, app.state.actions, app.state.cfg = store, sessions, actions, cfg
    app.state.jobs = jobs

    def masked(msg: str) -> str:
        return mask_secrets(str(msg), secrets_)

    def is_api(request: Request) -> bool:
        return request.url.path.startswith(("/api/", "/tiles/"))

    @app.middleware("http")
    async def headers(request: Request, call_next):
        resp = await call_next(request)
        resp.headers["Content-Security-Policy"] = CSP
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Referrer-Policy"] = "no-referrer"
        if not request.url.path.startswith("/static/"):
            resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.exception_handler(_LoginRequired)
    async def _login(request: Request, exc):
        if is_api(request) or request.method != "GET":
            return JSONResponse({"error": "log in first"}, status_code=401)
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)

    @app.exception_handler(_Forbidden)
    async def _forbidden(request: Request, exc: _Forbidden):
        if is_api(request):
            return JSONResponse({"error": exc.msg}, status_code=403)
        return page(request, "error.html", {"title": "refused", "message": exc.msg}, status=403)

    @app.exception_handler(EcoValueError)
    async def _user_error(request: Request, exc: EcoValueError):
        msg = masked(str(exc))
        if is_api(request):
            return JSONResponse({"error": msg}, status_code=400)
        return page(request, "error.html", {"title": "error", "message": msg}, status=400)

    def current(request: Request) -> Session | None:
        return sessions.get(request.cookies.get(COOKIE))

    def need(request: Request, action: str) -> Session:
        s = current(request)
        if s is None:
            raise _LoginRequired()
        if not s.may(action):
            raise _Forbidden(f"user {s.user} ({s.role}) may not {action}; ask for the "
                             f"{' or '.join(r for r in ROLES if action in PERMISSIONS[r])} role")
        return s

    def check_csrf(request: Request, s: Session, token: str | None = None) -> None:
        got = token if token is not None else request.headers.get("x-csrf-token", "")
        if not got or not secrets.compare_digest(str(got), s.csrf):
            raise _Forbidden("the form's CSRF token is missing or stale; reload the page and try again")

    def page(request: Request, name: str, ctx: dict, status: int = 200):
        s = current(request)
        base = {"user": s, "csrf": s.csrf if s else "", "db": display_url(store.url), "title": ctx.get("title", "eco-value")}
        return templates.TemplateResponse(request, name, base | ctx, status_code=status)

    def json_response(obj, status: int = 200):
        return Response(_dumps(obj), media_type="application/json", status_code=status)

    def summary_of(run_id: str) -> tuple[dict, dict]:
        d = show_payload(store, run_id)
        return d, d["summary"]

    # -- login --------------------------------------------------------------------------------------
    @app.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request, next: str = "/runs"):
        tok = secrets.token_urlsafe(24)
        resp = page(request, "login.html", {"title": "log in", "next": next, "login_csrf": tok, "message": ""})
        resp.set_cookie(LOGIN_COOKIE, tok, httponly=True, samesite="strict", secure=cfg.secure_cookie)
        return resp

    @app.post("/login")
    async def login(request: Request):
        form = await request.form()
        tok = request.cookies.get(LOGIN_COOKIE, "")
        if not tok or not secrets.compare_digest(tok, str(form.get("csrf", ""))):
            raise _Forbidden("the login form's CSRF token is missing or stale; reload the page and try again")
        name, pw = str(form.get("user", "")), str(form.get("password", ""))
        role = check_password(read_users(cfg.users_file), name, pw)
        nxt = str(form.get("next", "/runs"))
        if not nxt.startswith("/") or nxt.startswith("//"):
            nxt = "/runs"
        if role is None:
            new = secrets.token_urlsafe(24)
            resp = page(request, "login.html", {"title": "log in", "next": nxt, "login_csrf": new,
                                                "message": "unknown user or wrong password"}, status=401)
            resp.set_cookie(LOGIN_COOKIE, new, httponly=True, samesite="strict", secure=cfg.secure_cookie)
            return resp
        token, _ = sessions.new(name, role)
        resp = RedirectResponse(nxt, status_code=303)
        resp.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=cfg.secure_cookie)
        resp.delete_cookie(LOGIN_COOKIE)
        return resp

    @app.post("/logout")
    async def logout(request: Request):
        s = need(request, "read")
        form = await request.form()
        check_csrf(request, s, str(form.get("csrf", "")))
        sessions.drop(request.cookies.get(COOKIE))
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(COOKIE)
        return resp

    # -- runs ---------------------------------------------------------------------------------------
    @app.get("/")
    async def root():
        return RedirectResponse("/runs", status_code=303)

    @app.get("/api/runs")
    def api_runs(request: Request):
        need(request, "read")
        return json_response(runs_payload(store))

    @app.get("/api/runs/{run_id}")
    def api_run(request: Request, run_id: str):
        need(request, "read")
        return json_response(show_payload(store, run_id))

    @app.get("/runs", response_class=HTMLResponse)
    def runs_page(request: Request, q: str = ""):
        need(request, "read")
        rows = []
        for r in store.runs():
            s = json.loads(r.summary_json or "{}")
            hay = f"{r.id} {r.region} {r.status} {r.ruleset_name} {r.period_start}-{r.period_end}".lower()
            if q and q.lower() not in hay:
                continue
            rows.append({"run": r, "gep": (s.get("gep") or {}).get("total_cny"),
                         "sink": (s.get("carbon") or {}).get("net_sink_tco2e_per_yr")})
        return page(request, "runs.html", {"title": "runs", "rows": rows, "q": q})

    @app.get("/runs/compare", response_class=HTMLResponse)
    def compare_page(request: Request, a: str, b: str):
        from ..store.queries import diff_runs

        need(request, "read")
        return page(request, "compare.html", {"title": "compare runs", "d": diff_runs(store, a, b), "a": a, "b": b})

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    def run_page(request: Request, run_id: str):
        from ..outputs.report import FOREST_TARGETS_PCT

        s = need(request, "read")
        d, summ = summary_of(run_id)
        services = sorted(((summ.get("gep") or {}).get("by_service") or {}).items(), key=lambda kv: -kv[1]["value_cny"])
        intervals = any(k.startswith("ci95") for _, v in services for k in v)
        missing = [(k, v) for k, v in services if (v.get("nodata_px") or 0) > 0]
        townships = township_rows(store, run_id) if d["status"] == "complete" else []
        tenure, n_tenure = tenure_rows(store, run_id) if d["status"] == "complete" else ([], 0)
        return page(request, "run.html", {"title": f"run {d['run_id'][:8]}", "d": d, "s": summ, "services": services,
                                          "intervals": intervals, "targets": FOREST_TARGETS_PCT, "may_issue": s.may("issue"),
                                          "missing": missing, "townships": townships, "lucc_zh": LUCC_ZH,
                                          "tenure": tenure, "n_tenure": n_tenure})

    # -- map ----------------------------------------------------------------------------------------
    @app.get("/runs/{run_id}/map", response_class=HTMLResponse)
    def map_page(request: Request, run_id: str):
        need(request, "read")
        d, summ = summary_of(run_id)
        return page(request, "map.html", {"title": f"map {d['run_id'][:8]}", "d": d, "s": summ})

    @app.get("/api/runs/{run_id}/layers")
    def api_layers(request: Request, run_id: str):
        need(request, "read")
        _, summ = summary_of(run_id)
        return json_response(L.layer_index(summ))

    @app.get("/tiles/{run_id}/{layer}/{z}/{x}/{y}.png")
    def tile(request: Request, run_id: str, layer: str, z: int, x: int, y: int):
        need(request, "read")
        _, summ = summary_of(run_id)
        lays = L.run_layers(summ)
        if layer not in lays:
            return PlainTextResponse(f"run {run_id} has no layer {layer!r}", status_code=404)
        png = L.render_tile(lays[layer], z, x, y)
        return Response(png if png is not None else L.empty_tile(), media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/api/runs/{run_id}/zones/{kind}.geojson")
    def zones(request: Request, run_id: str, kind: str):
        need(request, "read")
        _, summ = summary_of(run_id)
        return Response(L.zones_geojson(summ, kind), media_type="application/geo+json")

    @app.get("/api/runs/{run_id}/explain")
    def api_explain(request: Request, run_id: str, parcel: str):
        from ..audit import explain

        need(request, "read")
        return json_response(explain(store, run_id, parcel=parcel))

    @app.get("/api/runs/{run_id}/parcel")
    def api_parcel(request: Request, run_id: str, parcel: str):
        need(request, "read")
        return json_response(parcel_record(store, run_id, parcel))

    @app.post("/api/runs/{run_id}/value-unit")
    async def api_value_unit(request: Request, run_id: str):
        from ..policy import value_unit

        s = need(request, "value-unit")
        check_csrf(request, s)
        try:
            body = json.loads(await request.body())
            geom = body["geometry"]
            assert isinstance(geom, dict) and geom.get("type") in ("Polygon", "MultiPolygon")
        except (ValueError, KeyError, TypeError, AssertionError):
            raise UploadError("value-unit needs JSON {\"geometry\": a GeoJSON Polygon or MultiPolygon in longitude/latitude}") from None
        years, rate = body.get("years"), body.get("discount_rate")
        tmp = Path(tempfile.mkdtemp(prefix="eco-value-unit-", dir=cfg.temp_dir))
        try:
            p = tmp / "unit.geojson"
            p.write_text(json.dumps({"type": "FeatureCollection", "features": [
                {"type": "Feature", "properties": {"name": "drawn unit"}, "geometry": geom}]}), encoding="utf-8")
            d = value_unit(store, run_id, p, None, years, rate)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        actions.write(s, "value-unit", run_id=d["run_id"], policy_result_id=d["policy_result_id"], area_ha=d["area_ha"])
        return json_response(d)

    @app.post("/api/runs/{run_id}/issue")
    async def api_issue(request: Request, run_id: str):
        from ..exchange.registry import issue

        s = need(request, "issue")
        check_csrf(request, s)
        try:
            body = json.loads(await request.body())
            vintage = int(body["vintage"])
        except (ValueError, KeyError, TypeError):
            raise UploadError("issue needs JSON {\"vintage\": YEAR, \"project\": ID}") from None
        d = issue(store, run_id, vintage, body.get("parcels"), str(body.get("project", "FC1")), bool(body.get("include_declared")))
        actions.write(s, "issue", run_id=run_id, issuance_id=d["issuance_id"], net_issued_tco2e=d["net_issued_tco2e"], head=d["head"])
        return json_response(d)

    # -- exchange -----------------------------------------------------------------------------------
    def exchange_ctx() -> dict:
        from sqlmodel import select

        from ..exchange.registry import audit_log
        from ..store.models import CreditBlock, Issuance, StatusEvent

        with store.session() as ses:
            blocks = ses.exec(select(CreditBlock).order_by(CreditBlock.first)).all()
            issuances = ses.exec(select(Issuance).order_by(Issuance.created.desc())).all()
            events = ses.exec(select(StatusEvent).order_by(StatusEvent.id.desc()).limit(EVENTS_SHOWN)).all()
        hold: dict[tuple, int] = {}
        totals: dict[tuple, list] = {}
        for b in blocks:
            n = b.last - b.first + 1
            k = (b.holder_id, b.status, b.vintage)
            hold[k] = hold.get(k, 0) + n
            t = totals.setdefault((b.status, b.vintage), [0, set()])
            t[0] += n
            t[1].add(b.holder_id)
        return {"holdings": [{"holder_id": k[0], "status": k[1], "vintage": k[2], "units": v}
                             for k, v in sorted(hold.items())][:BLOCKS_SHOWN], "n_holdings": len(hold),
                "totals": [{"status": k[0], "vintage": k[1], "units": v[0], "holders": len(v[1])} for k, v in sorted(totals.items())],
                "blocks": blocks[:BLOCKS_SHOWN], "n_blocks": len(blocks), "issuances": issuances, "events": events,
                "audit": audit_log(store)}

    @app.get("/exchange", response_class=HTMLResponse)
    def exchange_page(request: Request):
        s = need(request, "read")
        return page(request, "exchange.html", {"title": "exchange", **exchange_ctx(), "may_verify": s.may("verify"),
                                               "may_apply": s.may("apply-status"), "result": None})

    async def _save_upload(form, field: str, tmp: Path, suffixes: tuple[str, ...]) -> tuple[Path, str]:
        up = form.get(field)
        if up is None or not hasattr(up, "read"):
            raise UploadError(f"choose a file to upload (form field '{field}')")
        name = Path(str(up.filename or "upload")).name
        suffix = Path(name).suffix.lower()
        if suffix not in suffixes:
            raise UploadError(f"{name}: expected a {' or '.join(suffixes)} file, not '{suffix or 'no suffix'}'")
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)[-100:] or f"upload{suffix}"
        p = tmp / safe
        total = 0
        with open(p, "wb") as f:
            while chunk := await up.read(1024 * 1024):
                total += len(chunk)
                if total > cfg.max_upload_bytes:
                    raise UploadError(f"{name}: larger than {cfg.max_upload_bytes:,} bytes")
                f.write(chunk)
        return p, name

    @app.post("/exchange/verify", response_class=HTMLResponse)
    async def exchange_verify(request: Request):
        from ..exchange.verify import verify

        s = need(request, "verify")       # before the body is read
        form = await request.form()
        check_csrf(request, s, str(form.get("csrf", "")))
        key = str(form.get("public_key", "") or "").strip() or cfg.trusted_key_hex
        tmp = Path(tempfile.mkdtemp(prefix="eco-value-bundle-", dir=cfg.temp_dir))
        try:
            p, name = await _save_upload(form, "bundle", tmp, (".zip",))
            dest = tmp / "unpacked"
            dest.mkdir()
            root = safe_unzip(p, dest, cfg.max_members, cfg.max_unzipped_bytes, label=name)
            problems = [(p.check, f"{p.path}: {p.message}".replace(str(root), name)) for p in verify(root, key, None)]
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        actions.write(s, "verify", bundle=name, ok=not problems, codes=sorted({c for c, _ in problems}))
        result = {"kind": "verify", "name": name, "ok": not problems, "checks": group_problems(problems),
                  "key_given": bool(key)}
        return page(request, "exchange.html", {"title": "exchange", **exchange_ctx(), "may_verify": s.may("verify"),
                                               "may_apply": s.may("apply-status"), "result": result})

    @app.post("/exchange/apply-status", response_class=HTMLResponse)
    async def exchange_apply(request: Request):
        from ..exchange.registry import apply_status, read_status_file

        s = need(request, "apply-status")   # before the body is read
        form = await request.form()
        check_csrf(request, s, str(form.get("csrf", "")))
        tmp = Path(tempfile.mkdtemp(prefix="eco-value-status-", dir=cfg.temp_dir))
        try:
            p, name = await _save_upload(form, "status_file", tmp, STATUS_SUFFIXES)
            try:
                changes = read_status_file(p)
                d = apply_status(store, changes, actor=f"web:{s.user}", source=name)
            except EcoValueError as exc:
                actions.write(s, "apply-status refused", file=name)
                msg = masked(str(exc)).replace(str(p), name)
                result = {"kind": "apply", "name": name, "ok": False, "message": msg}
            else:
                actions.write(s, "apply-status", file=name, applied=d["applied"], head=d["head"])
                result = {"kind": "apply", "name": name, "ok": True, "applied": d["applied"], "changes": d["changes"],
                          "head": d["head"]}
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return page(request, "exchange.html", {"title": "exchange", **exchange_ctx(), "may_verify": s.may("verify"),
                                               "may_apply": s.may("apply-status"), "result": result},
                    status=200 if result["ok"] else 400)

    @app.get("/api/exchange/audit")
    def api_audit(request: Request):
        from ..exchange.registry import audit_log

        need(request, "read")
        return json_response(audit_log(store))

    # -- credits (bureau) ---------------------------------------------------------------------------
    async def _body(request: Request) -> tuple[dict, bool]:
        """A JSON body (API: CSRF in the X-CSRF-Token header) or a form (page: CSRF in the form)."""
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                body = json.loads(await request.body())
                assert isinstance(body, dict)
            except (ValueError, AssertionError):
                raise UploadError("expected a JSON object in the request body") from None
            return body, True
        return {k: str(v) for k, v in (await request.form()).items()}, False

    def _vintage(v) -> int | None:
        if v in (None, ""):
            return None
        try:
            return int(v)
        except (TypeError, ValueError):
            raise UploadError(f"vintage {v!r} is not a year; give e.g. 2021, or leave it empty for every vintage") from None

    @app.get("/api/projects")
    def api_projects(request: Request):
        need(request, "read")
        return json_response(C.projects_list(store))

    @app.get("/projects", response_class=HTMLResponse)
    def projects_page(request: Request):
        s = need(request, "read")
        return page(request, "projects.html", {"title": "credits", "projects": C.projects_list(store), "may_issue": s.may("issue")})

    @app.get("/api/projects/{project_id}")
    def api_project(request: Request, project_id: str):
        from ..exchange.projects import project_summary

        need(request, "read")
        return json_response({"project": project_summary(store, project_id), "parcels": C.parcels_payload(store, project_id),
                              "issuances": C.project_issuances(store, project_id)})

    @app.get("/api/projects/{project_id}/eligibility")
    def api_eligibility(request: Request, project_id: str, parcel: str):
        need(request, "read")
        return json_response(C.eligibility_payload(store, project_id, parcel))

    @app.get("/api/projects/{project_id}/preview")
    def api_preview(request: Request, project_id: str, monitoring: str, vintage: str = ""):
        need(request, "read")
        return json_response(C.preview(store, project_id, monitoring, _vintage(vintage)))

    def project_ctx(s: Session, project_id: str, **extra) -> dict:
        from ..exchange.projects import project_summary

        pr = project_summary(store, project_id)
        parcels = C.parcels_payload(store, project_id)
        return {"title": f"project {project_id}", "pr": pr, "parcels": parcels, "issuances": C.project_issuances(store, project_id),
                "may_issue": s.may("issue"), "preview": None, "monitoring": "", "vintage": "", "issued": None,
                "message": ""} | extra

    @app.get("/projects/{project_id}", response_class=HTMLResponse)
    def project_page(request: Request, project_id: str, monitoring: str = "", vintage: str = ""):
        s = need(request, "read")
        ctx = project_ctx(s, project_id, monitoring=monitoring, vintage=vintage)
        if monitoring:
            try:
                ctx["preview"] = C.preview(store, project_id, monitoring, _vintage(vintage))
            except EcoValueError as exc:
                ctx["message"] = masked(str(exc))
        return page(request, "project.html", ctx, status=400 if ctx["message"] else 200)

    @app.post("/api/projects/{project_id}/issue")
    @app.post("/projects/{project_id}/issue")
    async def project_issue(request: Request, project_id: str):
        from ..exchange.credits import issue_project

        s = need(request, "issue")
        body, api = await _body(request)
        check_csrf(request, s, None if api else body.get("csrf", ""))
        monitoring = str(body.get("monitoring", "") or "")
        if not monitoring:
            raise UploadError("give the monitoring period START..END (ISO dates), e.g. 2020-01-01..2023-12-31")
        try:
            d = issue_project(store, project_id, monitoring, _vintage(body.get("vintage")),
                              str(body.get("verification_body", "") or ""), str(body.get("verification_approach", "") or ""),
                              str(body.get("verification_date", "") or ""), actor=f"web:{s.user}")
        except EcoValueError as exc:
            actions.write(s, "issue refused", project_id=project_id, monitoring=monitoring, error=masked(str(exc)))
            raise
        actions.write(s, "issue", project_id=project_id, monitoring=d["monitoring"], status=d["status"],
                      issuance_ids=[i["issuance_id"] for i in d["issuances"]],
                      net_issued_tco2e=d["totals"]["net_issued_tco2e"], head=d["head"])
        if api:
            return json_response(d)
        return page(request, "project.html", project_ctx(s, project_id, issued=d, monitoring=d["monitoring"]))

    @app.post("/issuances/{issuance_id}/bundle.zip")
    async def bundle_zip(request: Request, issuance_id: str):
        """The signed bundle (``eco-value export``) as a zip; the folder is written in a temp dir and removed."""
        import zipfile

        from starlette.background import BackgroundTask

        from ..exchange.bundle import export_bundle

        s = need(request, "issue")
        form = {} if request.headers.get("x-csrf-token") else await request.form()
        check_csrf(request, s, str(form["csrf"]) if "csrf" in form else None)
        tmp = Path(tempfile.mkdtemp(prefix="eco-value-export-", dir=cfg.temp_dir))
        try:
            d = export_bundle(store, issuance_id, tmp / "bundle")
            folder = Path(d["bundle"])
            name = f"bundle-{d.get('issuance_id', issuance_id)[:8]}"
            zpath = tmp / f"{name}.zip"
            with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as z:
                for p in sorted(folder.rglob("*")):
                    if p.is_file():
                        z.write(p, f"{name}/{p.relative_to(folder).as_posix()}")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        actions.write(s, "export", issuance_id=issuance_id, bundle=zpath.name, record_counts=d.get("record_counts"))
        return FileResponse(zpath, media_type="application/zip", filename=zpath.name,
                            background=BackgroundTask(shutil.rmtree, tmp, ignore_errors=True))

    # -- runs started from the console ----------------------------------------------------------------
    @app.get("/api/catalogs")
    def api_catalogs(request: Request):
        from .jobs import list_catalogs

        need(request, "run")
        return json_response({"catalogs": list_catalogs(cfg.catalogs_dir)})

    @app.get("/jobs", response_class=HTMLResponse)
    def jobs_page(request: Request):
        from .jobs import list_catalogs

        s = need(request, "read")
        cats = list_catalogs(cfg.catalogs_dir) if s.may("run") else []
        return page(request, "jobs.html", {"title": "start a run", "catalogs": cats, "jobs": [j.public() for j in jobs.all()],
                                           "may_run": s.may("run"), "configured": cfg.catalogs_dir is not None})

    @app.get("/api/jobs")
    def api_jobs(request: Request):
        need(request, "read")
        return json_response([j.public() for j in jobs.all()])

    @app.post("/api/jobs")
    async def api_start_job(request: Request):
        s = need(request, "run")
        check_csrf(request, s)
        body, _ = await _body(request)
        draws = body.get("mc_draws")
        try:
            draws = int(draws) if draws not in (None, "") else None
            assert draws is None or draws > 0
        except (TypeError, ValueError, AssertionError):
            raise UploadError(f"mc_draws {draws!r} is not a positive whole number") from None
        j = jobs.start(str(body.get("catalog", "")), s.user, draws, bool(body.get("force")))
        actions.write(s, "run", job_id=j.id, catalog=j.catalog, mc_draws=draws, force=bool(body.get("force")))
        return json_response(j.public(), status=202)

    @app.get("/api/jobs/{job_id}")
    def api_job(request: Request, job_id: str):
        need(request, "read")
        return json_response(jobs.get(job_id).public())

    @app.post("/api/jobs/{job_id}/cancel")
    def api_cancel_job(request: Request, job_id: str):
        s = need(request, "run")
        check_csrf(request, s)
        j = jobs.cancel(job_id)
        actions.write(s, "cancel run", job_id=j.id, catalog=j.catalog, stage=j.stage)
        return json_response(j.public())

    @app.get("/api/jobs/{job_id}/events")
    async def api_job_events(request: Request, job_id: str):
        """Server-sent events: every progress step of the job, then one 'finished' event."""
        import asyncio

        need(request, "read")
        j = jobs.get(job_id)

        async def stream():
            i = 0
            while True:
                evs = j.events[i:]
                for ev in evs:
                    i += 1
                    yield f"event: {ev['kind']}\ndata: {_dumps(ev)}\n\n"
                    if ev["kind"] == "finished":
                        return
                if await request.is_disconnected():
                    return
                await asyncio.sleep(0.2)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"})

    outer = BodyLimit(app, cfg.max_upload_bytes)
    outer.inner = app
    return outer


def load_users_or_refuse(path: Path) -> dict:
    users = read_users(path)
    if not users:
        raise EcoValueError(f"no console users in {path}; add one first: "
                            "`eco-value serve --add-user NAME --role operator` (roles: viewer, bureau, operator)")
    return users
